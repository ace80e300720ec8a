"""Verifiers (log-probability, self-verification, judge) and calibrators (isotonic, Platt)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from duetto.errors import UserError
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ModelCard
from duetto.scoring.verifiers import (
    IsotonicCalibrator,
    JudgeVerifier,
    LogprobVerifier,
    PlattCalibrator,
    SelfVerifier,
    calibrator_from_state,
    parse_verdict,
)
from duetto.testing.scripted import ScriptedModel

Q = ChatRequest.of("What is 2+2?")


async def answer(logprob: float | None = None, text: str = "4") -> ChatResponse:
    return await ScriptedModel("slm", text, logprob=logprob).complete(Q)


async def test_logprob_verifier() -> None:
    a = await answer(logprob=-0.5, text="four is it")
    assert (await LogprobVerifier().score(Q, a)).score == pytest.approx(math.exp(-0.5))
    v = await LogprobVerifier("mean_logprob").score(Q, a)
    assert v.score == pytest.approx(-0.5) and v.responses == ()
    bare = await answer()
    with pytest.raises(UserError, match="log-probabilities"):
        await LogprobVerifier().score(Q, bare)
    assert (await LogprobVerifier(missing=0.0).score(Q, bare)).score == 0.0


def test_parse_verdict() -> None:
    assert parse_verdict(" A) correct") == "A" and parse_verdict("(B)") == "B"
    assert parse_verdict("The answer is incorrect") == "B"
    assert parse_verdict("correct") == "A" and parse_verdict("maybe") is None


async def test_self_verifier_turns_verdicts_into_probabilities() -> None:
    a = await answer()
    yes = ScriptedModel(ModelCard(name="checker", price_out_per_mtok=1e6), "A", logprob=-0.1)
    score, used = await SelfVerifier(yes).score(Q, a)
    assert score == pytest.approx(math.exp(-0.1)) and len(used) == 1
    assert used[0].usage.cost_usd == pytest.approx(1.0) and used[0].trace.role == "verify"
    prompt = yes.calls[0].last_user
    assert "What is 2+2?" in prompt and "Answer: 4" in prompt and "A) correct" in prompt
    no = ScriptedModel("checker", "B) incorrect", logprob=-0.1)
    assert (await SelfVerifier(no).score(Q, a)).score == pytest.approx(1 - math.exp(-0.1))
    mumble = ScriptedModel("checker", "hmm")
    assert (await SelfVerifier(mumble).score(Q, a)).score == 0.5


async def test_self_verifier_samples_and_few_shot() -> None:
    a = await answer()
    votes = ScriptedModel("checker", ["A", "B", "A", "A"])
    sv = SelfVerifier(votes, few_shot=[("1+1?", "3", False)], samples=4)
    score, used = await sv.score(Q, a)
    assert score == pytest.approx(0.75) and len(used) == 4
    assert sorted(r.seed or 0 for r in votes.calls) == [0, 1, 2, 3]
    assert all(r.temperature > 0 for r in votes.calls)
    assert "Answer: 3" in votes.calls[0].last_user and "Verdict: B" in votes.calls[0].last_user


async def test_judge_verifier() -> None:
    a = await answer()
    score, used = await JudgeVerifier(ScriptedModel("judge", "7")).score(Q, a)
    assert score == pytest.approx(0.7) and used[0].trace.role == "judge"
    assert (await JudgeVerifier(ScriptedModel("judge", "15/10")).score(Q, a)).score == 1.0
    s, u = await JudgeVerifier(ScriptedModel("judge", "good"), default=0.4).score(Q, a)
    assert s == 0.4 and "no grade" in (u[0].trace.note or "")


def test_isotonic_is_monotone_and_fits_rates() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 2000)
    truth = raw**2  # the true P(correct) is convex in the raw score
    correct = rng.uniform(0, 1, 2000) < truth
    cal = IsotonicCalibrator().fit(raw, correct)
    grid = np.linspace(0, 1, 50)
    out = cal.transform(grid)
    assert np.all(np.diff(out) >= -1e-12)
    assert np.max(np.abs(out - grid**2)) < 0.15
    assert 0.0 <= cal(-5.0) <= cal(5.0) <= 1.0
    back = calibrator_from_state(cal.state())
    assert back(0.37) == pytest.approx(cal(0.37))


def test_isotonic_pools_violators() -> None:
    cal = IsotonicCalibrator().fit([1, 2, 3, 4], [0, 1, 0, 1])
    assert cal.y.tolist() == [0.0, 0.5, 0.5, 1.0]


def test_platt_recovers_a_logistic() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 2, 5000)
    correct = rng.uniform(0, 1, 5000) < 1 / (1 + np.exp(-(1.5 * raw - 0.5)))
    cal = PlattCalibrator().fit(raw, correct)
    assert cal.a == pytest.approx(1.5, abs=0.15) and cal.b == pytest.approx(-0.5, abs=0.15)
    back = calibrator_from_state(cal.state())
    assert back(0.3) == pytest.approx(cal(0.3))
    sep = PlattCalibrator().fit([0, 0, 1, 1], [0, 0, 1, 1])  # separable: finite, ordered
    assert 0 < sep(0) < 0.5 < sep(1) < 1


def test_calibrators_refuse_bad_input() -> None:
    with pytest.raises(UserError):
        IsotonicCalibrator()(0.5)
    with pytest.raises(UserError):
        PlattCalibrator().fit([0.1, 0.2], [1])
