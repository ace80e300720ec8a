"""The engine's typed surface (get, from_yaml, started, wrap, the PII counter it gives every
leaf) and the seam's children: what the gateway and the evaluator build on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duetto.config import parse_config
from duetto.engine import Engine, UnknownModel, Wrapper
from duetto.errors import UserError
from duetto.gateway.breaker import BreakerModel, CircuitBreaker, leaves
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel, LeafModel, ModelCard
from duetto.models.cache import CachedModel
from duetto.strategies import (
    Cascade,
    Fallback,
    Fuse,
    LengthScorer,
    Pipeline,
    Route,
    Stage,
    Strategy,
)
from duetto.testing.scripted import ScriptedModel

CFG = {
    "models": {
        "slm": {"backend": "fake", "script": "x"},
        "llm": {"backend": "fake", "script": "y", "card": {"location": "remote"}},
    },
    "strategies": {
        "casc": {
            "mode": "cascade",
            "models": ["slm", "llm"],
            "verifier": {"kind": "logprob"},
            "threshold": 0.5,
        },
        "red": {"mode": "assist", "kind": "redact", "answerer": "llm"},
    },
}
PII = "mail me at ann@example.com or call +1 415-555-0100"


async def test_every_leaf_the_engine_builds_counts_pii_with_its_counter() -> None:
    async with Engine(parse_config(CFG)) as engine:  # default: the detector in use (regex)
        assert (await engine.get("llm").complete(ChatRequest.of(PII))).usage.pii_sent == 2
        assert (await engine.get("slm").complete(ChatRequest.of(PII))).usage.pii_sent == 0
        assert (await engine.get("red").complete(ChatRequest.of(PII))).usage.pii_sent == 0
    seen: list[str] = []

    def counter(text: str) -> int:
        seen.append(text)
        return 7

    async with Engine(parse_config(CFG), pii_counter=counter) as engine:
        assert (await engine.get("llm").complete(ChatRequest.of(PII))).usage.pii_sent == 7
        assert seen == [PII]  # only the untrusted model's request is counted


async def test_typed_lookup() -> None:
    async with Engine(parse_config(CFG)) as engine:
        casc = engine.get("casc", Cascade)
        assert isinstance(casc, Cascade) and casc.threshold == 0.5
        assert engine.get("slm", LeafModel).name == "slm"
        assert engine.get("llm") is engine.models["llm"]
        with pytest.raises(UserError, match="'casc' is a Cascade, not a Route"):
            engine.get("casc", Route)
        with pytest.raises(UnknownModel, match="no model or strategy 'nope'") as e:
            engine.get("nope")
        assert isinstance(e.value, KeyError) and isinstance(e.value, UserError)


async def test_from_yaml_started_and_wrappers_in_order(tmp_path: Path) -> None:
    path = tmp_path / "duetto.yaml"
    path.write_text(json.dumps(CFG))  # JSON is YAML
    calls: list[tuple[str, str]] = []

    def tag(label: str) -> Wrapper:
        def wrap(name: str, model: ChatModel) -> ChatModel:
            calls.append((label, name))
            return BreakerModel(model, CircuitBreaker()) if label == "outer" else model

        return wrap

    engine = Engine.from_yaml(path, wrap=[tag("inner"), tag("outer")], cache=True)
    engine.add_wrapper(tag("last"))
    assert not engine.started
    async with engine:
        assert engine.started
        assert calls == [(w, m) for m in ("slm", "llm") for w in ("inner", "outer", "last")]
        llm = engine.models["llm"]
        assert isinstance(llm, BreakerModel) and isinstance(llm.inner, CachedModel)
        assert engine.get("casc", Cascade).levels[1] is llm  # strategies hold the wrapped model
        with pytest.raises(UserError, match="after start"):
            engine.add_wrapper(tag("late"))
    one = Engine(parse_config(CFG), wrap=tag("single"))
    async with one:
        assert ("single", "llm") in calls


def test_children_and_kind_across_the_seam() -> None:
    slm, llm = ScriptedModel("slm"), ScriptedModel(ModelCard("llm", location="remote"))
    judge = ScriptedModel("judge")
    assert slm.kind == "model" and slm.children == ()
    wrapped = BreakerModel(llm, CircuitBreaker())
    cached = CachedModel(slm)
    assert list(wrapped.children) == [llm] and list(cached.children) == [slm]
    route = Route("r", [cached, wrapped], LengthScorer(), threshold=0.5)
    fuse = Fuse("f", [slm, llm], method="judge", judge=judge)
    pipe = Pipeline("p", [Stage(route, "draft"), Stage(fuse, "answer")])
    fb = Fallback("fb", pipe, slm)
    assert route.kind == pipe.kind == fb.kind == "strategy"
    assert list(route.children) == [cached, wrapped]
    assert list(fuse.children) == [slm, llm, judge]
    assert list(pipe.children) == [route, fuse] and list(fb.children) == [pipe, slm]
    assert all(isinstance(s, Strategy) for s in (route, fuse, pipe, fb))
    # the breaker's walk goes through wrappers and nested strategies, each leaf once
    assert [m.name for m in leaves(fb)] == ["slm", "llm", "judge"]
    assert [m.name for m in leaves(fb, distinct=False)] == [
        "slm",
        "llm",
        "slm",
        "llm",
        "judge",
        "slm",
    ]
