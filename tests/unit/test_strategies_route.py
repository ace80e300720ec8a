"""Route: decisions before generation, thresholds, N-model cost-aware choice, rules, policy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from duetto.errors import ConfigError, UserError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.strategies.route import (
    LengthScorer,
    Route,
    RouterScorer,
    TaskPriorScorer,
    choose_n,
    choose_two,
)
from duetto.testing.scripted import ScriptedModel

SLM = ModelCard(name="slm")
LLM = ModelCard(
    name="llm", location="remote", trusted=False, price_in_per_mtok=3e5, price_out_per_mtok=6e5
)


def pair() -> tuple[ScriptedModel, ScriptedModel]:
    return ScriptedModel(SLM, "small answer"), ScriptedModel(LLM, "large answer")


class Recorder:
    """A policy stub: a threshold and the outcomes it was told about."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.seen: list[tuple[bool, float, float | None]] = []

    def observe(self, escalated: bool, cost_usd: float, quality: float | None = None) -> None:
        self.seen.append((escalated, cost_usd, quality))


class FixedScorer:
    def __init__(self, value: float | Sequence[float]) -> None:
        self.value = value
        self.seen: list[ChatRequest] = []

    def score(self, request: ChatRequest) -> float | np.ndarray:
        self.seen.append(request)
        return self.value if isinstance(self.value, float) else np.array(self.value)


def test_pure_decisions() -> None:
    assert choose_two(0.5, 0.5) == 0 and choose_two(0.49, 0.5) == 1
    q = np.array([0.6, 0.8, 0.9])
    costs = [0.0, 1.0, 2.0]
    assert choose_n(q, costs, lam=0.0) == 2
    assert choose_n(q, costs, lam=0.05) == 2  # 0.6, 0.75, 0.80
    assert choose_n(q, costs, lam=0.15) == 1  # 0.6, 0.65, 0.60
    assert choose_n(q, costs, lam=0.3) == 0  # 0.6, 0.50, 0.30


async def test_two_model_threshold_decides_and_only_the_chosen_model_runs() -> None:
    slm, llm = pair()
    req = ChatRequest.of("hello")
    easy = await Route("r", [slm, llm], FixedScorer(0.8), threshold=0.5).complete(req)
    assert easy.text == "small answer" and easy.trace.decision == "cheap"
    assert easy.trace.score == 0.8 and easy.trace.threshold == 0.5
    assert easy.trace.extra["chosen"] == "slm" and easy.usage.remote_calls == 0
    hard = await Route("r", [slm, llm], FixedScorer(0.2), threshold=0.5).complete(req)
    assert hard.text == "large answer" and hard.trace.decision == "strong"
    assert len(slm.calls) == 1 and len(llm.calls) == 1
    assert hard.usage.cost_usd == pytest.approx(LLM.cost(1, 2)) and hard.usage.cost_usd > 0
    assert [c.name for c in hard.trace.children] == ["llm"]
    assert hard.trace.mode == "route" and hard.model == "r"


async def test_uncalibrated_route_refuses_clearly() -> None:
    slm, llm = pair()
    with pytest.raises(UserError, match="no threshold"):
        await Route("r", [slm, llm], FixedScorer(0.8)).complete(ChatRequest.of("x"))
    assert not slm.calls and not llm.calls


async def test_policy_threshold_is_read_at_decision_time_and_told_outcomes() -> None:
    slm, llm = pair()
    policy = Recorder(threshold=0.9)
    route = Route("r", [slm, llm], FixedScorer(0.8), threshold=0.1, policy=policy)
    r1 = await route.complete(ChatRequest.of("x"))
    assert r1.trace.decision == "strong" and r1.trace.threshold == 0.9
    policy.threshold = 0.5
    r2 = await route.complete(ChatRequest.of("x"))
    assert r2.trace.decision == "cheap"
    assert [s[0] for s in policy.seen] == [True, False]
    assert policy.seen[0][1] == pytest.approx(r1.usage.cost_usd) and policy.seen[1][1] == 0.0


async def test_n_models_take_argmax_of_quality_minus_cost() -> None:
    a = ScriptedModel(ModelCard(name="a"), "A")
    b = ScriptedModel(ModelCard(name="b", price_in_per_mtok=1.0), "B")
    c = ScriptedModel(ModelCard(name="c", price_in_per_mtok=2.0), "C")
    scorer = FixedScorer([0.6, 0.8, 0.9])
    assert (await Route("r", [a, b, c], scorer).complete(ChatRequest.of("q"))).text == "C"
    r = await Route("r", [a, b, c], scorer, lam=0.15).complete(ChatRequest.of("q"))
    assert r.text == "B" and r.trace.decision == "chosen" and r.trace.score == pytest.approx(0.8)
    assert r.trace.extra["qualities"] == [0.6, 0.8, 0.9]
    cheap = Route("r", [a, b, c], scorer, costs=[0, 0, 10], lam=0.05)
    assert (await cheap.complete(ChatRequest.of("q"))).text == "B"
    with pytest.raises(UserError, match="one predicted quality per model"):
        await Route("r", [a, b, c], FixedScorer(0.5)).complete(ChatRequest.of("q"))
    with pytest.raises(ConfigError):
        Route("r", [a, b, c], scorer, costs=[1.0])


async def test_rules_come_first_and_are_recorded() -> None:
    slm, llm = pair()
    scorer = FixedScorer(0.99)
    route = Route(
        "r", [slm, llm], scorer, threshold=0.5, rules=[{"when": {"task": "math"}, "target": "llm"}]
    )
    r = await route.complete(ChatRequest.of("2+2", task="math"))
    assert r.text == "large answer" and r.trace.decision == "rule"
    assert r.trace.extra["rule_target"] == "llm" and not scorer.seen
    assert (await route.complete(ChatRequest.of("hi"))).trace.decision == "cheap"
    with pytest.raises(ConfigError) as e:
        Route("r", [slm, llm], scorer, rules=[{"when": {"task": "x"}, "target": "gpt"}])
    assert e.value.path == "rules[0].target"


async def test_scorer_sees_the_whole_conversation() -> None:
    class Router:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def score_texts(self, texts: Sequence[str], task: str | None) -> np.ndarray:
            self.texts.extend(texts)
            return np.array([0.7 if task == "faq" else 0.1])

    router = Router()
    slm, llm = pair()
    route = Route("r", [slm, llm], RouterScorer(router), threshold=0.5)
    convo = ChatRequest.from_dicts(
        [
            {"role": "user", "content": "first turn"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": "second turn"},
        ],
        task="faq",
    )
    r = await route.complete(convo)
    assert r.trace.decision == "cheap" and r.trace.score == pytest.approx(0.7)
    assert "first turn" in router.texts[0] and "second turn" in router.texts[0]


def test_length_and_task_prior_scorers() -> None:
    ls = LengthScorer(scale_chars=100)
    short, long = ls.score(ChatRequest.of("x" * 10)), ls.score(ChatRequest.of("x" * 1000))
    assert 0 < long < short < 1
    tp = TaskPriorScorer({"intent": 0.9, "math": 0.2}, default=0.4)
    assert tp.score(ChatRequest.of("q", task="intent")) == 0.9
    assert tp.score(ChatRequest.of("q")) == 0.4
    with pytest.raises(ConfigError):
        TaskPriorScorer({"x": 1.5})


async def test_branches_give_both_outcomes_with_their_own_costs() -> None:
    slm, llm = pair()
    route = Route("r", [slm, llm], FixedScorer(0.3))  # no threshold needed for branches
    b = await route.branches(ChatRequest.of("q"))
    assert b.score == 0.3
    assert b.cheap.text == "small answer" and b.cheap.usage.cost_usd == 0.0
    assert b.strong.text == "large answer" and b.strong.usage.remote_calls == 1
    assert b.cheap.trace.decision == "cheap" and b.strong.trace.decision == "strong"


async def test_stream_passes_the_chosen_models_chunks() -> None:
    slm, llm = pair()
    route = Route("r", [slm, llm], FixedScorer(0.2), threshold=0.5)
    chunks = [c async for c in route.stream(ChatRequest.of("q"))]
    final = chunks[-1].response
    assert final is not None and final.trace.decision == "strong"
    assert "".join(c.delta for c in chunks) == "large answer" == final.text
