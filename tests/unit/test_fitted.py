"""Calibration fitted by `duetto eval` is saved and re-applied to freshly built strategies."""

import json
from pathlib import Path

import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.eval.runner import EvalPlan, evaluate
from duetto.eval.workload import WorkItem
from duetto.fitted import apply_fitted, export_fitted, load_fitted, save_fitted
from duetto.messages import ChatRequest
from duetto.scoring.verifiers import PlattCalibrator
from duetto.strategies import Cascade, LengthScorer, Route
from duetto.testing.scripted import ScriptedModel


def items(n: int = 40) -> list[WorkItem]:
    """Every third item is math; the fake SLM answers "x", right only on the intent items."""
    out = []
    for i in range(n):
        task = "math" if i % 3 == 0 else "intent"
        ref = "y" if task == "math" else "x"
        req = ChatRequest.of(f"question {i}", task=task)
        out.append(WorkItem(id=f"q{i}", request=req, reference=ref, task=task, scorer="exact"))
    return out


CFG = {
    "models": {
        "slm": {"backend": "fake", "script": "x"},
        "llm": {"backend": "fake", "script": "y", "card": {"location": "remote"}},
    },
    "target": "quality=0.9",
    "strategies": {
        "casc": {
            "mode": "cascade",
            "models": ["slm", "llm"],
            "verifier": {"kind": "logprob"},
            "calibrator": "platt",
        },
        "route": {"mode": "route", "models": ["slm", "llm"], "scorer": {"kind": "task_prior"}},
        "pipe": {
            "mode": "pipeline",
            "stages": [{"model": "slm", "role": "draft"}, {"model": "llm", "role": "answer"}],
        },
    },
}


async def fitted_engine() -> tuple[Engine, dict]:
    engine = Engine(parse_config(CFG))
    await engine.start()
    # the fake SLM is right on "easy" intent items, wrong on "hard" math items
    plan = EvalPlan(
        slm=engine.slm,
        llm=engine.llm,
        strategies=engine.strategies,
        targets=engine.targets(),
    )
    await evaluate(plan, items())
    return engine, export_fitted(engine.strategies, "quality=0.9")


async def test_export_holds_threshold_calibrator_and_prior(tmp_path: Path) -> None:
    engine, state = await fitted_engine()
    await engine.aclose()
    assert set(state["strategies"]) == {"casc", "route"}  # the pipeline has no threshold
    route = state["strategies"]["route"]
    assert route["scorer"]["kind"] == "task_prior"
    assert set(route["scorer"]["priors"]) == {"math", "intent"}
    assert state["strategies"]["casc"]["calibrator"]["kind"] == "platt"
    path = save_fitted(state, tmp_path / "calibration.json")
    assert load_fitted(path) == json.loads(json.dumps(state))


async def test_applied_state_reproduces_decisions() -> None:
    engine, state = await fitted_engine()
    fresh = Engine(parse_config(CFG), fitted=state)
    await fresh.start()
    try:
        assert fresh.targets() == {}  # nothing left to calibrate
        for name in ("casc", "route"):
            a, b = engine.strategies[name], fresh.strategies[name]
            assert a.threshold == b.threshold  # type: ignore[attr-defined]
        prior_a = engine.strategies["route"].scorer  # type: ignore[attr-defined]
        prior_b = fresh.strategies["route"].scorer  # type: ignore[attr-defined]
        req = ChatRequest.of("question 3", task="intent")
        assert prior_a.score(req) == prior_b.score(req) != 0.5
        for task in ("math", "intent"):
            req = ChatRequest.of("question 5", task=task)
            ra = await engine.strategies["route"].complete(req)
            rb = await fresh.strategies["route"].complete(req)
            assert ra.trace.decision == rb.trace.decision
    finally:
        await engine.aclose()
        await fresh.aclose()


async def test_unfitted_route_refuses_to_guess() -> None:
    async with Engine(parse_config(CFG)) as bare:
        with pytest.raises(Exception, match="no threshold"):
            await bare.strategies["route"].complete(ChatRequest.of("q 1", task="intent"))


def test_bad_files_are_rejected_with_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_fitted(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not JSON"):
        load_fitted(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="format"):
        apply_fitted({}, {"strategies": {}})
    state = {"format": "duetto-fitted/1", "strategies": {"ghost": {"threshold": 0.5}}}
    with pytest.raises(ConfigError) as e:
        apply_fitted({}, state)
    assert e.value.path == "strategies.ghost"  # type: ignore[attr-defined]


def test_serve_rejects_a_calibration_file_for_another_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from duetto.cli.main import app

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(CFG))  # JSON is YAML
    stale = {"format": "duetto-fitted/1", "strategies": {"gone": {"threshold": 0.4}}}
    (tmp_path / "calibration.json").write_text(json.dumps(stale))
    args = ["serve", str(cfg), "--calibration", str(tmp_path / "calibration.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    out = " ".join(result.output.split())  # rich wraps long lines
    assert "strategies.gone" in out and "does not define" in out


def test_an_escalate_everything_threshold_is_valid_json(tmp_path: Path) -> None:
    def route(threshold: float) -> Route:
        models = [ScriptedModel("slm"), ScriptedModel("llm")]
        return Route("s", models, LengthScorer(), threshold=threshold)

    # calibration found no level that keeps the target: escalate everything
    path = save_fitted(export_fitted({"s": route(float("inf"))}), tmp_path / "c.json")
    assert "Infinity" not in path.read_text()
    fresh = route(0.0)
    apply_fitted({"s": fresh}, load_fitted(path))
    assert fresh.threshold == float("inf")


# The calibration.json that the code before the Tunable protocol (commit 5ac457a) wrote for
# `fitted_engine()` above, verbatim: it must still load into freshly built strategies.
OLD_FILE_TEXT = """{
  "format": "duetto-fitted/1",
  "target": "quality=0.9",
  "strategies": {
    "casc": {
      "threshold": "-inf",
      "calibrator": {
        "kind": "platt",
        "a": 0.0,
        "b": 0.5995596540670669
      },
      "scorer": null,
      "verifier": null
    },
    "route": {
      "threshold": 0.9333333333333333,
      "calibrator": null,
      "scorer": {
        "kind": "task_prior",
        "priors": {
          "math": 0.1111111111111111,
          "intent": 0.9333333333333333
        },
        "default": 0.6363636363636364
      },
      "verifier": null
    }
  }
}
"""
OLD_FILE = json.loads(OLD_FILE_TEXT)


async def test_a_file_written_by_the_previous_code_still_loads(tmp_path: Path) -> None:
    (tmp_path / "calibration.json").write_text(OLD_FILE_TEXT)
    state = load_fitted(tmp_path / "calibration.json")
    async with Engine(parse_config(CFG), fitted=state) as engine:
        casc, route = engine.strategies["casc"], engine.strategies["route"]
        assert isinstance(casc, Cascade) and isinstance(route, Route)
        assert casc.threshold == float("-inf")
        assert isinstance(casc.calibrator, PlattCalibrator)
        assert (casc.calibrator.a, casc.calibrator.b) == (0.0, 0.5995596540670669)
        assert route.threshold == 0.9333333333333333
        assert route.scorer.score(ChatRequest.of("q", task="math")) == 0.1111111111111111
        assert route.scorer.score(ChatRequest.of("q", task="other")) == 0.6363636363636364
        r = await route.complete(ChatRequest.of("q", task="intent"))
        assert r.trace.decision == "cheap"
        # exporting it again, and fitting afresh with this code, write the same file
        assert export_fitted(engine.strategies, "quality=0.9") == OLD_FILE
    fresh, state = await fitted_engine()
    await fresh.aclose()
    # the same fit, to the solver's last digits (one numpy logistic fit replaced the old Newton)
    new = json.loads(save_fitted(state, tmp_path / "new.json").read_text())
    assert _rounded(new) == _rounded(json.loads(OLD_FILE_TEXT))


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_a_fitted_scorer_for_a_fixed_scorer_is_refused() -> None:
    route = Route("r", [ScriptedModel("slm"), ScriptedModel("llm")], LengthScorer())
    bad = {"format": "duetto-fitted/1", "strategies": {"r": OLD_FILE["strategies"]["route"]}}
    with pytest.raises(ConfigError) as e:
        apply_fitted({"r": route}, bad)
    assert e.value.path == "strategies.r"
