"""Cascade: the cheap model answers, a verifier decides, escalation, levels, rules, branches."""

from __future__ import annotations

import math

import pytest

from duetto.errors import ConfigError, UserError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring.verifiers import LogprobVerifier, PlattCalibrator, SelfVerifier
from duetto.strategies.cascade import Cascade
from duetto.testing.scripted import ScriptedModel

SLM = ModelCard(name="slm")
MID = ModelCard(name="mid", location="remote", trusted=False, price_out_per_mtok=1e5)
LLM = ModelCard(
    name="llm", location="remote", trusted=False, price_in_per_mtok=1e5, price_out_per_mtok=1e6
)


def slm_by_prompt(confidences: dict[str, float]) -> ScriptedModel:
    """An SLM whose token log-probability depends on the question (to test both outcomes)."""
    return ScriptedModel(
        SLM, "slm says 4", logprob=lambda req, _text: math.log(confidences[req.last_user])
    )


class Recorder:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.seen: list[tuple[bool, float, float | None]] = []

    def observe(self, escalated: bool, cost_usd: float, quality: float | None = None) -> None:
        self.seen.append((escalated, cost_usd, quality))


async def test_accepts_confident_drafts_and_escalates_the_rest() -> None:
    slm = slm_by_prompt({"easy": 0.9, "hard": 0.2})
    llm = ScriptedModel(LLM, "llm says 4")
    c = Cascade("c", [slm, llm], LogprobVerifier(), threshold=0.5)
    easy = await c.complete(ChatRequest.of("easy"))
    assert easy.text == "slm says 4" and easy.trace.decision == "accepted"
    assert easy.trace.score == pytest.approx(0.9) and easy.trace.threshold == 0.5
    assert easy.usage.remote_calls == 0 and easy.usage.cost_usd == 0 and not llm.calls
    hard = await c.complete(ChatRequest.of("hard"))
    assert hard.text == "llm says 4" and hard.trace.decision == "escalated"
    assert hard.trace.extra["answered_by"] == "llm" and hard.trace.extra["level"] == 1
    level0, final = hard.trace.children
    assert level0.decision == "escalated" and level0.role == "draft"
    assert level0.score == pytest.approx(0.2) and level0.threshold == 0.5
    assert level0.children[0].name == "slm" and final.name == "llm" and final.role == "answer"
    # The draft's cost and the LLM's are both counted.
    assert hard.usage.calls == 2 and hard.usage.cost_usd == pytest.approx(LLM.cost(1, 3))
    assert llm.calls[0].messages == ChatRequest.of("hard").messages  # no draft passed by default


async def test_verifier_calls_are_in_the_trace_and_usage() -> None:
    slm = ScriptedModel(SLM, "slm says 4")
    checker = ScriptedModel(ModelCard(name="checker", price_out_per_mtok=1e6), "B", logprob=-0.05)
    llm = ScriptedModel(LLM, "llm says 4")
    c = Cascade("c", [slm, llm], SelfVerifier(checker), threshold=0.5)
    r = await c.complete(ChatRequest.of("q"))
    assert r.trace.decision == "escalated" and r.trace.score == pytest.approx(1 - math.exp(-0.05))
    assert [s.name for s in r.trace.children[0].children] == ["slm", "checker"]
    assert r.usage.calls == 3
    assert r.usage.cost_usd == pytest.approx(1.0 + LLM.cost(1, 3))  # the checker's 1 token + llm


async def test_pass_draft_gives_the_strong_model_a_hint() -> None:
    slm = slm_by_prompt({"hard": 0.1})
    llm = ScriptedModel(LLM, "fixed")
    c = Cascade("c", [slm, llm], LogprobVerifier(), threshold=0.5, pass_draft=True)
    await c.complete(ChatRequest.of("hard"))
    sent = llm.calls[0]
    assert sent.messages[0].role == "system" and "slm says 4" in sent.messages[0].content
    assert sent.last_user == "hard"


async def test_calibrator_maps_raw_scores_before_the_threshold() -> None:
    slm = slm_by_prompt({"q": 0.9})
    llm = ScriptedModel(LLM, "llm")
    # A calibrator that says raw 0.9 is only 1/(1+e^(0.9*-10+8)) ≈ 0.27 likely correct.
    cal = PlattCalibrator(a=10.0, b=-10.0)
    c = Cascade("c", [slm, llm], LogprobVerifier(), threshold=0.5, calibrator=cal)
    r = await c.complete(ChatRequest.of("q"))
    assert r.trace.decision == "escalated" and r.trace.score == pytest.approx(cal(0.9))
    assert r.trace.children[0].extra["raw_score"] == pytest.approx(0.9)


async def test_multi_level_cascade_with_thresholds_per_level() -> None:
    slm = slm_by_prompt({"q": 0.3})
    mid = ScriptedModel(MID, "mid says", logprob=math.log(0.6))
    llm = ScriptedModel(LLM, "llm says")
    r = await Cascade("c", [slm, mid, llm], LogprobVerifier(), threshold=[0.5, 0.5]).complete(
        ChatRequest.of("q")
    )
    assert r.text == "mid says" and r.trace.extra["level"] == 1 and not llm.calls
    assert r.trace.extra["scores"] == pytest.approx([0.3, 0.6])
    r2 = await Cascade("c", [slm, mid, llm], LogprobVerifier(), threshold=[0.5, 0.7]).complete(
        ChatRequest.of("q")
    )
    assert r2.text == "llm says" and r2.trace.extra["answered_by"] == "llm"
    assert [c.decision for c in r2.trace.children[:2]] == ["escalated", "escalated"]
    assert r2.usage.calls == 3
    with pytest.raises(ConfigError):
        Cascade("c", [slm, mid, llm], LogprobVerifier(), threshold=[0.5])


async def test_uncalibrated_refuses_and_policy_adapts() -> None:
    slm = slm_by_prompt({"q": 0.6})
    llm = ScriptedModel(LLM, "llm")
    with pytest.raises(UserError, match="no threshold"):
        await Cascade("c", [slm, llm], LogprobVerifier()).complete(ChatRequest.of("q"))
    policy = Recorder(0.5)
    c = Cascade("c", [slm, llm], LogprobVerifier(), policy=policy)
    assert (await c.complete(ChatRequest.of("q"))).trace.decision == "accepted"
    policy.threshold = 0.7
    esc = await c.complete(ChatRequest.of("q"))
    assert esc.trace.decision == "escalated" and esc.trace.threshold == 0.7
    assert [s[0] for s in policy.seen] == [False, True]
    assert esc.usage.cost_usd > 0 and policy.seen[1][1] == pytest.approx(esc.usage.cost_usd)


async def test_rules_pin_a_model_without_drafting() -> None:
    slm = slm_by_prompt({})
    llm = ScriptedModel(LLM, "llm")
    rules = [
        {"when": {"has_pii": True}, "target": "slm"},
        {"when": {"task": "math"}, "target": "llm"},
    ]
    c = Cascade("c", [slm, llm], LogprobVerifier(), threshold=0.5, rules=rules)
    r = await c.complete(ChatRequest.of("sum it", task="math"))
    assert r.trace.decision == "rule" and r.text == "llm" and not slm.calls
    pii = ScriptedModel(SLM, "local answer")
    c2 = Cascade(
        "c",
        [pii, llm],
        LogprobVerifier(),
        threshold=0.5,
        rules=[{"when": {"has_pii": True}, "target": "slm"}],
    )
    r2 = await c2.complete(ChatRequest.of("mail me at ann@example.com"))
    assert r2.trace.decision == "rule" and r2.usage.pii_sent == 0 and len(llm.calls) == 1


async def test_branches_give_both_outcomes_sharing_the_draft_cost() -> None:
    slm = slm_by_prompt({"q": 0.4})
    llm = ScriptedModel(LLM, "llm says")
    c = Cascade("c", [slm, llm], LogprobVerifier())  # uncalibrated is fine for branches
    b = await c.branches(ChatRequest.of("q"))
    assert b.score == pytest.approx(0.4)
    assert b.cheap.text == "slm says 4" and b.cheap.usage.calls == 1
    assert b.strong.text == "llm says" and b.strong.usage.calls == 2
    assert b.cheap.trace.children[0].decision == "accepted"
    assert b.strong.trace.children[0].decision == "escalated"
    assert len(slm.calls) == 1 and len(llm.calls) == 1  # the draft was made once
    with pytest.raises(UserError):
        await Cascade("c", [slm, llm, llm], LogprobVerifier()).branches(ChatRequest.of("q"))


async def test_strategies_nest_with_nested_traces_and_summed_usage() -> None:
    from duetto.strategies import Fuse, Pipeline, Stage, Tunable

    slm = slm_by_prompt({"q": 0.1})
    voters = [ScriptedModel(LLM, "8"), ScriptedModel(LLM, "8"), ScriptedModel(LLM, "6")]
    fuse = Fuse("vote", voters)  # a fusion as the cascade's last resort
    cascade = Cascade("c", [slm, fuse], LogprobVerifier(), threshold=0.5)
    assert isinstance(cascade, Tunable)
    formatter = ScriptedModel(SLM, "8.")
    p = Pipeline("p", [Stage(cascade, "solver", pass_as="draft"), Stage(formatter, "formatter")])
    r = await p.complete(ChatRequest.of("q"))
    solver = r.trace.children[0].children[0]
    assert solver.name == "c" and solver.mode == "cascade" and solver.decision == "escalated"
    last_resort = solver.children[-1]
    assert last_resort.mode == "fuse" and last_resort.decision == "voted"
    assert len(last_resort.children) == 3
    assert r.usage.calls == 1 + 3 + 1  # draft, three voters, formatter
    assert r.usage.cost_usd == pytest.approx(3 * LLM.cost(1, 1))
    assert "Draft answer from solver:\n8" in formatter.calls[0].messages[0].content


async def test_unfitted_calibrator_passes_raw_score_through() -> None:
    from duetto.messages import ChatRequest
    from duetto.models.base import ModelCard
    from duetto.scoring.verifiers import IsotonicCalibrator, LogprobVerifier
    from duetto.strategies import Cascade
    from duetto.testing.scripted import ScriptedModel

    slm = ScriptedModel("s", "cheap", logprob=-0.01)
    llm = ScriptedModel(ModelCard("l", "remote", False), "strong")
    c = Cascade("c", [slm, llm], LogprobVerifier(), threshold=0.5, calibrator=IsotonicCalibrator())
    r = await c.complete(ChatRequest.of("q"))
    assert r.text == "cheap" and r.trace.decision == "accepted"
