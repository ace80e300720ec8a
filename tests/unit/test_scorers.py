from __future__ import annotations

import math

import pytest

from duetto.answers import extract_number, normalise, parse_grade, pick_choice
from duetto.errors import UserError
from duetto.eval.scorers import (
    JudgeScorer,
    score,
    score_async,
    score_contains,
    score_exact,
    score_numeric,
)
from duetto.eval.workload import WorkItem
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.testing.scripted import ScriptedModel


def item(
    scorer: str, reference: str | None, choices: tuple[str, ...] = (), prompt: str = "question?"
) -> WorkItem:
    return WorkItem("t1", ChatRequest.of(prompt), reference, "t", scorer, choices)


MC_PROMPT = "Capital of France?\nA) Lyon\nB) Paris\nC) Nice"
MC = item("choice", "B", ("Lyon", "Paris", "Nice"), MC_PROMPT)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Paris", 1.0),
        ("The answer is Paris.", 1.0),
        ("  PARIS!  ", 1.0),
        ("answer: paris", 1.0),
        ("Paris, France", 0.0),
        ("Lyon", 0.0),
        ("", 0.0),
    ],
)
def test_exact(output: str, expected: float) -> None:
    assert score(item("exact", "Paris"), output) == expected


def test_normalize_and_exact_alternatives() -> None:
    assert normalise("  The answer is:  New-York. ") == "new york"
    assert score_exact("NYC|New York", "new york") == 1.0
    assert score_exact("NYC|New York", "Boston") == 0.0


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("B) Paris", 1.0),
        ("The answer is B", 1.0),
        ("Paris", 1.0),
        ("B", 1.0),
        ("b)", 1.0),
        ("(B)", 1.0),
        ("I think it is B.", 1.0),
        ("Option b", 1.0),
        ("B Paris", 1.0),
        ("paris.", 1.0),
        ("Lyon is wrong; the answer is Paris", 1.0),
        ("Answer: B", 1.0),
        ("A) Lyon", 0.0),
        ("Nice", 0.0),
        ("C", 0.0),
        ("The answer is A", 0.0),
        ("", 0.0),
        ("I am not sure", 0.0),
    ],
)
def test_choice_lettered(output: str, expected: float) -> None:
    assert score(MC, output) == expected


def test_choice_echoed_options_pick_nothing() -> None:
    # A model that lists the options back has not chosen: no luck of the first line.
    assert score(MC, "B) Paris\nA) Lyon\nC) Nice") == 0.0
    assert pick_choice("A) Lyon\nB) Paris", MC.choices) is None
    # ... unless it then says which one.
    assert score(MC, "A) Lyon\nB) Paris\n\nThe answer is B) Paris.") == 1.0
    assert score(MC, "B) Paris\n\nParis is the capital.") == 1.0


def test_choice_text_reference_with_listed_letters() -> None:
    # Reference given as option text; the prompt lists lettered options, so letters count.
    it = item("choice", "Paris", ("Lyon", "Paris", "Nice"), MC_PROMPT)
    assert score(it, "B") == 1.0 and score(it, "A") == 0.0


def test_choice_labels_without_letters() -> None:
    it = item(
        "choice",
        "cancel_order",
        ("billing", "cancel_order", "refund"),
        "Labels: billing, cancel_order, refund. Message: stop my order",
    )
    assert score(it, "cancel order") == 1.0
    assert score(it, "Cancel-Order.") == 1.0
    assert score(it, "billing") == 0.0
    # Without lettered options, a leading capital "A" is an article, not a label.
    assert pick_choice("A refund please", it.choices, letters=False) == 2


def test_choice_prefers_longest_match_and_whole_words() -> None:
    assert pick_choice("very positive", ("positive", "very positive"), letters=False) == 1
    assert pick_choice("unpositive", ("positive", "negative"), letters=False) is None
    assert pick_choice("negative, not positive", ("positive", "negative"), False) == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("#### 1,234", 1234.0),
        ("The answer is $72.", 72.0),
        ("48 + 24 = 72", 72.0),
        ("Answer: 3/4", 0.75),
        ("it fell to -5 degrees", -5.0),
        ("costs $1,000.50", 1000.5),
        ("Answer: 18 apples, because 3 + 15 = 18 and 20 - 2", 18.0),
        ("3, 4 and 5", 5.0),
        ("no number", None),
        ("on 12/05/2024 we paid 7", 7.0),
    ],
)
def test_extract_number(text: str, value: float | None) -> None:
    assert extract_number(text) == value


def test_numeric_tolerance_and_errors() -> None:
    assert score_numeric("72", "72.0000001") == 1.0
    assert score_numeric("72", "72.01") == 0.0
    assert score_numeric("1,200", "Answer: 1200") == 1.0
    assert score_numeric("0", "Answer: 0") == 1.0
    assert score_numeric("5", "no idea") == 0.0
    with pytest.raises(UserError):
        score_numeric("five", "5")


def test_contains_alternatives_case_and_word_boundaries() -> None:
    assert score_contains("New York|NYC", "I live in nyc now") == 1.0
    assert score_contains("Rome", "Romeo and Juliet") == 0.0
    assert score_contains("Rome", "ROME.") == 1.0
    assert score_contains("li.wei@example.com", "Email: li.wei@example.com.") == 1.0
    assert score_contains("555-014-2398", "call 555 014 2398") == 1.0
    assert score_contains("Oslo", "Bergen") == 0.0


def test_none_and_judge_dispatch() -> None:
    assert math.isnan(score(item("none", None), "anything"))
    with pytest.raises(UserError, match="judge"):
        score(item("judge", "x"), "y")


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("Grade: 7", 0.7),
        ("8/10", 0.8),
        ("I'd give it 9 out of 10", 0.9),
        ("10", 1.0),
        ("Score: 12", 1.0),
        ("Yes", 1.0),
        ("No, incorrect.", 0.0),
        ("correct", 1.0),
        ("incorrect", 0.0),
        ("hmm", None),
    ],
)
def test_parse_grade(reply: str, grade: float | None) -> None:
    assert parse_grade(reply) == grade


async def test_judge_scorer_asks_the_model_and_adds_usage() -> None:
    judge_model = ScriptedModel(
        ModelCard("judge", price_in_per_mtok=1.0), ["Grade: 6", "hmm, hard to say", "Yes"]
    )
    judge = JudgeScorer(judge_model)
    it = item("judge", "Paris", prompt="Capital of France?")
    assert await judge.score(it, "Paris, I think") == pytest.approx(0.6)
    assert await judge.score(it, "Lyon") == 0.0
    assert judge.unparsed == 1
    assert await score_async(it, "Paris", judge=judge) == 1.0
    sent = judge_model.calls[0]
    assert "Capital of France?" in sent.last_user and "Paris" in sent.last_user
    assert sent.max_tokens == judge.max_tokens and sent.temperature == 0.0
    assert judge.usage.calls == 3 and judge.usage.cost_usd > 0
    with pytest.raises(UserError):
        await score_async(it, "Paris")
    assert await score_async(MC, "B") == 1.0
