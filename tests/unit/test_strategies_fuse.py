"""Fuse: votes over normalised answers, weighted votes, a judge, an aggregator; concurrency."""

from __future__ import annotations

import math
import time

import pytest

from duetto.answers import extract_choice, number_key, text_key
from duetto.errors import ConfigError, UpstreamError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.strategies.fuse import Fuse, vote
from duetto.testing.scripted import ScriptedModel

Q = ChatRequest.of("How many legs does a spider have?")


def m(
    name: str, text: str | list[str], logprob: float | None = None, **kw: object
) -> ScriptedModel:
    return ScriptedModel(ModelCard(name=name, price_out_per_mtok=1e6), text, logprob=logprob, **kw)  # type: ignore[arg-type]


def test_normalisers_and_pure_vote() -> None:
    assert text_key("  Eight. ") == "eight" and text_key(" ") is None
    assert number_key("The answer is 1,234.") == "1234" and number_key("8.0 legs") == "8"
    assert number_key("no digits") is None
    assert extract_choice("(B) because") == "B" and extract_choice("The answer is c") == "C"
    assert extract_choice("Answer: D") == "D" and extract_choice("Because it is") is None
    assert vote(["a", "b", "a"], [1, 1, 1]) == (0, pytest.approx(2 / 3))
    assert vote(["a", "b", "b"], [3, 1, 1])[0] == 0  # weights beat counts
    assert vote(["b", "a"], [1, 1])[0] == 0  # a tie goes to the first
    assert vote([None, None], [1, 1]) == (None, 0.0)


async def test_majority_vote_with_a_normaliser() -> None:
    models = [m("a", "It has 8 legs."), m("b", "8"), m("c", "six legs: 6")]
    f = Fuse("f", models, method="vote", normalise=number_key)
    r = await f.complete(Q)
    assert r.text == "It has 8 legs." and r.trace.decision == "voted"
    assert r.score == pytest.approx(2 / 3) and r.trace.extra["chosen"] == 0
    assert [c.role for c in r.trace.children] == ["candidate"] * 3
    assert r.usage.calls == 3 and r.usage.cost_usd == pytest.approx(4 + 1 + 3)


async def test_weighted_vote_follows_confidence() -> None:
    models = [m("a", "6", logprob=math.log(0.9)), m("b", "8", logprob=math.log(0.3)),
              m("c", "8", logprob=math.log(0.3))]  # fmt: skip
    assert (await Fuse("f", models, method="vote").complete(Q)).text == "8"
    r = await Fuse("f", models, method="weighted").complete(Q)
    assert r.text == "6" and r.score == pytest.approx(0.9 / 1.5)
    w = await Fuse("f", models, method="weighted", weights=[0.1, 1, 1]).complete(Q)
    assert w.text == "8"


async def test_samples_use_seeds_and_temperature() -> None:
    a = m("a", ["8", "8", "6"])
    r = await Fuse("f", [a], samples=3).complete(ChatRequest.of("q", seed=10))
    assert r.text == "8" and r.usage.calls == 3
    assert sorted((c.seed, c.temperature) for c in a.calls) == [(10, 0.0), (11, 0.7), (12, 0.7)]
    with pytest.raises(ConfigError):
        Fuse("f", [a])  # one candidate is not a fusion


async def test_judge_picks_and_falls_back_to_vote() -> None:
    models = [m("a", "six"), m("b", "eight"), m("c", "six")]
    judge = m("judge", "2")
    r = await Fuse("f", models, method="judge", judge=judge).complete(Q)
    assert (
        r.text == "eight" and r.trace.decision == "judged" and r.trace.children[-1].role == "judge"
    )
    assert "[2] eight" in judge.calls[0].last_user and r.usage.calls == 4
    lost = await Fuse("f", models, method="judge", judge=m("judge", "none")).complete(Q)
    assert lost.text == "six" and lost.trace.decision == "fallback"
    with pytest.raises(ConfigError):
        Fuse("f", models, method="judge")


async def test_aggregator_fuses_candidates_and_streams() -> None:
    models = [m("a", "eight"), m("b", "8 legs")]
    agg = m("agg", "A spider has eight legs.")
    f = Fuse("f", models, method="aggregate", aggregator=agg)
    r = await f.complete(Q)
    assert r.text == "A spider has eight legs." and r.trace.decision == "aggregated"
    sent = agg.calls[0]
    assert "[1] eight" in sent.messages[0].content and sent.last_user == Q.last_user
    chunks = [c async for c in f.stream(Q)]
    assert chunks[-1].response is not None and chunks[-1].response.usage.calls == 3
    assert "".join(c.delta for c in chunks) == "A spider has eight legs."


async def test_candidates_run_concurrently_and_failures_are_dropped() -> None:
    slow = [m(f"s{i}", "8", latency_s=0.1) for i in range(4)]
    t0 = time.perf_counter()
    await Fuse("f", slow).complete(Q)
    assert time.perf_counter() - t0 < 0.3  # four 0.1 s calls in parallel, not 0.4 s
    broken = m("x", "6", fail_first=99)
    r = await Fuse("f", [broken, m("b", "8")]).complete(Q)
    assert r.text == "8" and r.trace.extra["failed"] == 1
    with pytest.raises(UpstreamError):
        await Fuse("f", [broken, m("y", "6", fail_first=99)]).complete(Q)
