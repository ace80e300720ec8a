"""duetto.answers: one reading of answers for grading, fusion and verifiers."""

from __future__ import annotations

import math

import pytest

from duetto.answers import (
    estimate_tokens,
    judge_prompt,
    number_key,
    parse_grade,
    prompt_key,
    text_key,
)
from duetto.eval.scorers import score_numeric


def test_estimate_tokens_is_ceil_of_a_quarter_of_the_characters() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert estimate_tokens(9) == 3  # a character count works too (streamed characters)


def test_vote_keys_read_numbers_as_the_grader_does() -> None:
    # The grader takes the number after the last "answer is"; so does the fuse key.
    text = "The answer is 42. That is 6 * 7."
    assert number_key(text) == "42" and score_numeric("42", text) == 1.0
    assert number_key("#### 1,234.0") == "1234" and number_key("half: 1/2") == "0.5"
    assert number_key("1/0") is None and number_key("none") is None
    assert text_key("The answer is: Paris!") == text_key("paris") == "paris"


def test_prompt_key_folds_space_and_case() -> None:
    assert prompt_key("  What IS\n2+2? ") == prompt_key("what is 2+2?") == "what is 2+2?"


@pytest.mark.parametrize(
    ("reply", "top", "grade"),
    [("Grade: 4", 5, 0.8), ("4/5", 5, 0.8), ("7/10", 5, None), ("9", 5, None), ("yes", 5, 1.0)],
)
def test_parse_grade_on_another_scale(reply: str, top: float, grade: float | None) -> None:
    got = parse_grade(reply, top)
    assert got == grade or (grade is not None and got is not None and math.isclose(got, grade))


def test_judge_prompt_with_and_without_reference() -> None:
    assert judge_prompt("Q?", "A") == "Question:\nQ?\n\nAnswer to grade:\nA\n"
    assert "Reference answer:\nR\n\n" in judge_prompt("Q?", "A", "R")
