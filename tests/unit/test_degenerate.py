"""Degenerate output (issue 14): rejected by every cascade verifier whatever its score; short
valid answers are never taken for degenerate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from duetto.answers import degenerate
from duetto.messages import ChatRequest

# The shapes SmolLM2-135M produces when it loops (greedy decoding until max_tokens).
LOOPING = {
    "sentence loop": "The answer is 12. " * 9,
    "intent loop": "card_arrival card_arrival card_arrival card_arrival card_arrival "
    "card_arrival card_arrival card_arrival card_arrival",
    "phrase loop": "To solve this problem, we need to find the number of apples. "
    + "Then we need to find the number of apples and the number of oranges and " * 6,
    "line loop": "Step 1: read the question.\n"
    + "Step 2: I am sorry, I cannot help with that.\n" * 5,
    "char loop": "The total is 1" + "0" * 60,
    "laughing": "hahahahahahahahahahahahahahahahahaha",
    "runaway list": "1. Apples\n2. Oranges\n" + "3. Bananas and more bananas\n" * 4,
    # real runaway outputs (gsm8k example_model_solutions, cut at the token limit)
    "digit run": "So the answer is 0.18181818181818181818181818181818181818181818181818181818",
    "equation loop": "Adding x to both sides, we get 33 + x = 2x + x\n"
    "Subtracting x from both sides, we get 33 = 2x\n"
    "Dividing both sides by 2, we get 33 / 2 = 2x / 2\n" * 4,
    "repeated words": "The customer wants to know the the the the the the the the the balance",
}

NORMAL = [
    "42",
    "card_arrival",
    "oos",
    "B",
    "The answer is 72.",
    "Natalia sold 48 clips in April and 48 / 2 = 24 clips in May, 72 clips in all. #### 72",
    "Yes.",
    '{"intent": "transfer", "amount": 20}',
    "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |",
    "Summary\n-------------------------------\nAll tests pass.",
    "def f(x):\n    if x:\n        return 1\n    return 0\n",
    "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]",
    "Janet has 16 eggs. She eats 3 and bakes with 4, so 16 - 3 - 4 = 9 eggs remain. "
    "She sells them at $2 each: 9 * 2 = $18. The answer is 18.",
    "To reset your PIN, open the app, go to Cards, choose the card, then tap 'Change PIN'. "
    "You will need your current PIN. If you forgot it, contact support and we will send a "
    "new one to your registered address within five working days.",
    "No, no, no: the transfer is pending, not failed.",
    "3.3333333333333335",
    # a real worked GSM8K answer (gsm8k example_model_solutions) that repeats a line 3 times
    "Buford writes one check per month to pay the electric bill.\n"
    "There are 12 months in a year, so that's 12*1 = <<12*1=12>>12 checks per year.\n"
    "He writes one check every month to pay the gas bill.\n"
    "There are 12 months in a year, so that's 12*1 = <<12*1=12>>12 checks per year.\n"
    "He writes one check every month to the church.\n"
    "There are 12 months in a year, so that's 12*1 = <<12*1=12>>12 checks per year.\n"
    "He writes one check quarterly for the pest and lawn service.\n"
    "There are 4 quarters in a year, so that's 4*1 = <<4*1=4>>4 checks per year.\n"
    "Therefore, Buford writes a total of 12+12+12+4 = <<12+12+12+4=40>>40 checks per year.\n"
    "A: 40",
]


@pytest.mark.parametrize("name", sorted(LOOPING))
def test_loops_and_repetition_are_degenerate(name: str) -> None:
    assert degenerate(LOOPING[name]) in ("loop", "repetition"), LOOPING[name]


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_and_white_space(text: str) -> None:
    assert degenerate(text) == "empty"


@pytest.mark.parametrize("text", NORMAL)
def test_valid_answers_pass(text: str) -> None:
    assert degenerate(text) is None


def test_a_long_answer_with_varied_sentences_passes() -> None:
    text = " ".join(f"Item {i} costs {i * 3} dollars and weighs {i + 7} grams." for i in range(40))
    assert degenerate(text) is None


def test_runaway_output_costs_bounded_time() -> None:
    import time

    text = "word " * 100_000
    t0 = time.perf_counter()
    assert degenerate(text) == "loop"
    assert time.perf_counter() - t0 < 1.0


# --- the cascade rejects it, whatever the verifier and the threshold -------------------------

SMOLLM_LOOP = (
    "To find the answer, we need to find the number of apples. "
    "The number of apples is 5. The number of apples is 5. The number of apples is 5. "
    "The number of apples is 5. The number of apples is 5. The number of apples is 5."
)


def _cascade(verifier_kind: str, slm_text: str, threshold: float) -> tuple[Any, Any, Any]:
    from duetto.models.base import ModelCard
    from duetto.scoring.verifier_learned import LearnedVerifier
    from duetto.scoring.verifiers import JudgeVerifier, LogprobVerifier, SelfVerifier
    from duetto.strategies.cascade import Cascade
    from duetto.testing.scripted import ScriptedModel

    slm = ScriptedModel(ModelCard(name="slm"), slm_text, logprob=math.log(0.99))
    llm = ScriptedModel(ModelCard(name="llm", location="remote", trusted=False), "llm says 5")
    judge = ScriptedModel(ModelCard(name="judge"), "Grade: 10")
    verifier: Any = {
        "logprob": lambda: LogprobVerifier(),
        "self": lambda: SelfVerifier(judge),
        "judge": lambda: JudgeVerifier(judge),
        "learned": lambda: LearnedVerifier(),
    }[verifier_kind]()
    return Cascade("c", [slm, llm], verifier, threshold=threshold), llm, judge


@pytest.mark.parametrize("kind", ["logprob", "self", "judge", "learned"])
@pytest.mark.parametrize("threshold", [0.5, 0.0, -math.inf])
async def test_every_verifier_escalates_a_looping_draft(kind: str, threshold: float) -> None:
    cascade, llm, judge = _cascade(kind, SMOLLM_LOOP, threshold)
    out = await cascade.complete(ChatRequest.of("How many apples?"))
    assert out.text == "llm says 5" and out.trace.decision == "escalated"
    level0 = out.trace.children[0]
    assert level0.extra["degenerate"] == "loop" and level0.score == 0.0
    assert not judge.calls  # the verifier is not even asked
    assert len(llm.calls) == 1


@pytest.mark.parametrize("kind", ["logprob", "self", "judge"])
async def test_a_short_valid_draft_is_still_accepted(kind: str) -> None:
    cascade, llm, _ = _cascade(kind, "card_arrival", 0.5)
    out = await cascade.complete(ChatRequest.of("Where is my card?"))
    assert out.text == "card_arrival" and out.trace.decision == "accepted" and not llm.calls
    assert "degenerate" not in out.trace.children[0].extra


async def test_branches_score_a_degenerate_draft_zero() -> None:
    cascade, _, _ = _cascade("logprob", "", 0.5)
    br = await cascade.branches(ChatRequest.of("q"), calibrated=False)
    assert br.score == 0.0 and br.strong.text == "llm says 5"
