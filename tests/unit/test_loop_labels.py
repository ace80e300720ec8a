"""Labels as pure functions: closed-form agreement (duetto.answers), the pairwise judge,
feedback scores, gold files; the live estimate; the controller's decision."""

from __future__ import annotations

import math

import pytest

from duetto.answers import agreement, extract_boxed, extract_number, json_object
from duetto.calibrate import audited_threshold
from duetto.loop.audit import estimate, per_request
from duetto.loop.labels import (
    agreement_label,
    feedback_score,
    gold_score,
    judge_label,
    judge_request,
    parse_gold,
    wants_judge,
)
from duetto.loop.store import Label
from duetto.messages import ChatRequest, ChatResponse
from duetto.trace import Step
from duetto.usage import Usage


def test_boxed_numbers_and_json_objects() -> None:
    assert extract_boxed(r"so \boxed{\frac{1}{2}} hmm \boxed{42}") == "42"
    assert extract_boxed("no box") is None
    assert extract_number(r"we get 3 then 5, so the answer is \boxed{7}.") == 7.0
    assert json_object('Sure:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert json_object('{"intent": "card_arrival", "n": 2}') == {"intent": "card_arrival", "n": 2}
    assert json_object("[1, 2]") is None and json_object("nothing") is None


@pytest.mark.parametrize(
    ("candidate", "reference", "want"),
    [
        ('{"intent": "Card Arrival", "n": 2.0}', '{"intent": "card_arrival", "n": 2}', 1.0),
        ('{"intent": "lost_card", "n": 2}', '{"intent": "card_arrival", "n": 2}', 0.5),
        ("no json here", '{"intent": "x"}', 0.0),
        ("The answer is 18.", "#### 18", 1.0),
        (r"\boxed{17}", "We compute ... #### 18", 0.0),
        ("42", "42", 1.0),
        ("(B) Paris", "B", 1.0),
        ("Answer: C", "B", 0.0),
        ("card_arrival", "Card arrival", 1.0),
        ("lost_or_stolen_card", "card_arrival", 0.0),
        ("The intent is card_arrival.", "card_arrival", 1.0),
        ("It is not about the card arrival at all, it is something else", "card_arrival", 0.0),
        ("anything", "A long open-ended answer about the history of the Roman empire.", None),
    ],
)
def test_agreement_by_the_reference_form(
    candidate: str, reference: str, want: float | None
) -> None:
    assert agreement(candidate, reference) == want


def test_agreement_and_judge_labels() -> None:
    lb = agreement_label("t", "slm", "B", "(B)", strategy="s", kind="shadow", reference_by="llm")
    assert lb is not None and lb.source == "agreement" and lb.score == 1.0
    assert lb.detail == {"reference_by": "llm"}
    open_ended = agreement_label("t", "slm", "x", "a long essay " * 5, strategy="s", kind="audit")
    assert open_ended is None
    # the judge share alone decides (an open-ended pair is not judged beyond it)
    assert wants_judge(0.1, 0.05) and not wants_judge(0.1, 0.5) and not wants_judge(0.0, 0.0)

    req = judge_request(ChatRequest.of("What is 2+2?"), "5", "4")
    assert "Reference answer:\n4" in req.last_user and "Answer to grade:\n5" in req.last_user
    assert "as good as the reference" in req.messages[0].content
    reply = ChatResponse("Grade: 7", "judge", Usage(cost_usd=0.002), Step("judge"))
    graded = judge_label("t", "slm", reply, judge="llm", strategy="s", kind="shadow")
    assert graded is not None and graded.score == pytest.approx(0.7)
    assert graded.cost_usd == 0.002 and graded.source == "judge"
    junk = ChatResponse("I cannot say", "judge", Usage(), Step("judge"))
    assert judge_label("t", "slm", junk, judge="llm", strategy="s", kind="shadow") is None


def test_feedback_scores() -> None:
    assert feedback_score(0.25) == 0.25 and feedback_score(1) == 1.0
    assert feedback_score(True) == 1.0 and feedback_score("down") == 0.0
    assert feedback_score("Up") == 1.0
    for bad in (1.5, -0.1, math.nan, "meh", None, [1]):
        with pytest.raises(ValueError):
            feedback_score(bad)


def test_gold_files() -> None:
    items = parse_gold(
        [
            '{"trace_id": "abc", "answer": "42"}',
            "",
            '{"request": "What is 6*7?", "score": "up"}',
        ]
    )
    assert [(i.trace_id, i.request, i.answer, i.score) for i in items] == [
        ("abc", None, "42", None),
        (None, "What is 6*7?", None, 1.0),
    ]
    for bad, where in [
        ("not json", "line 1"),
        ('{"answer": "x"}', "trace_id"),
        ('{"trace_id": "a"}', "answer"),
        ('{"trace_id": "a", "score": 3}', "within"),
    ]:
        with pytest.raises(ValueError, match=where):
            parse_gold([bad])
    assert gold_score("It is 42.", "42") == 1.0
    assert gold_score("Paris, the capital of France", "the capital of France is Paris") == 0.0
    assert gold_score("it is in Paris France indeed ok", "Paris France") == 1.0


def test_estimate_and_controller_decision() -> None:
    labels = [
        Label("a", "m", "agreement", 1.0),
        Label("a", "m", "judge", 0.0),  # agreement wins where there is one
        Label("b", "m", "judge", 0.4),
        Label("b", "m", "judge", 0.6),
    ]
    assert per_request(labels) == [1.0, 0.5]
    est = estimate([1.0] * 80 + [0.0] * 20, local_share=0.5, target=0.95)
    assert est.audit_mean == pytest.approx(0.8) and est.mean == pytest.approx(0.9)
    assert est.ci_low < est.mean < est.ci_high and est.below_target
    good = estimate([1.0] * 99 + [0.0], local_share=0.5, target=0.9)
    assert not good.below_target
    empty = estimate([], 0.5, 0.9)
    assert empty.n == 0 and empty.to_dict()["mean"] is None and not empty.below_target

    assert audited_threshold(0.5, 0.80, 0.9, 0.05) == pytest.approx(0.55)
    assert audited_threshold(0.5, 0.95, 0.9, 0.05) is None  # meets the target
    assert audited_threshold(0.98, 0.5, 0.9, 0.05) == 1.0  # capped
    assert audited_threshold(1.0, 0.5, 0.9, 0.05) is None
    assert audited_threshold(0.5, math.nan, 0.9, 0.05) is None


def test_loop_config_is_typed_and_checked() -> None:
    from duetto.config import parse_config
    from duetto.errors import ConfigError

    models = {
        "slm": {"backend": "fake", "card": {"name": "slm"}},
        "llm": {"backend": "fake", "card": {"name": "llm", "location": "remote"}},
    }
    ok = parse_config(
        {
            "models": models,
            "gateway": {"shadow": {"llm": {"candidate": "slm", "share": 0.5}}, "audit": {}},
        }
    )
    assert ok.gateway.shadow["llm"].queue == 256 and ok.gateway.audit is not None
    for gateway, path in [
        ({"shadow": {"llm": {"candidate": "nope"}}}, "gateway.shadow.llm.candidate"),
        ({"shadow": {"gpt": {"candidate": "slm"}}}, "gateway.shadow.gpt"),
        ({"audit": {"judge": "nope"}}, "gateway.audit.judge"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config({"models": models, "gateway": gateway})
        assert err.value.path == path
    for bad in ({"shadow": {"llm": {"candidate": "slm", "share": 2}}}, {"audit": {"sahre": 0.1}}):
        with pytest.raises(ConfigError):
            parse_config({"models": models, "gateway": bad})
