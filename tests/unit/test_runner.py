"""The evaluator end to end on scripted models: calibration, held-out runs, baselines, report."""

import json
from pathlib import Path

import pytest

from duetto.calibrate import Target
from duetto.config import parse_config
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.eval.report import write_report
from duetto.eval.runner import EvalPlan, evaluate
from duetto.eval.workload import WorkItem
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring.verifiers import LogprobVerifier
from duetto.strategies import Cascade
from duetto.testing.scripted import ScriptedModel


def items(n: int = 40) -> list[WorkItem]:
    out = []
    for i in range(n):
        hard = i % 4 == 0  # a quarter of the items are hard
        task = "math" if hard else "intent"
        out.append(
            WorkItem(
                id=f"q{i}",
                request=ChatRequest.of(f"question {i}", task=task),
                reference=f"a{i}",
                task=task,
                scorer="exact",
                tags=("hard",) if hard else ("easy",),
            )
        )
    return out


def slm_answer(req: ChatRequest) -> str:
    i = int(req.last_user.split()[-1])
    return "wrong" if i % 4 == 0 else f"a{i}"


def llm_answer(req: ChatRequest) -> str:
    return f"a{int(req.last_user.split()[-1])}"


def confidence(req: ChatRequest, text: str) -> float:
    return -3.0 if text == "wrong" else -0.05  # the SLM "knows" when it is unsure


async def test_evaluate_calibrates_cascade_and_reports(tmp_path: Path) -> None:
    slm = ScriptedModel("slm", slm_answer, logprob=confidence)
    llm = ScriptedModel(
        ModelCard("llm", "remote", False, price_in_per_mtok=1.0, price_out_per_mtok=2.0), llm_answer
    )
    casc = Cascade("cascade", [slm, llm], LogprobVerifier())
    plan = EvalPlan(
        slm=slm, llm=llm, strategies={"cascade": casc}, targets={"cascade": Target("quality", 0.95)}
    )
    report = await evaluate(plan, items())
    b = report["baselines"]
    assert b["slm_only"]["quality"]["mean"] < b["llm_only"]["quality"]["mean"] == 1.0
    assert b["oracle"]["quality"]["mean"] == 1.0
    assert b["oracle"]["cost_usd"] < b["llm_only"]["cost_usd"]
    (c,) = report["strategies"]
    assert c["quality"]["mean"] == 1.0  # escalates exactly the unsure (wrong) answers
    assert 0.1 < c["llm_call_share"] < 0.45
    assert c["cost_usd"] < b["llm_only"]["cost_usd"]
    assert report["calibration"]["cascade"]["calib_n"] == report["workload"]["calibration_n"] > 0
    assert report["recommendation"]["strategy"] == "cascade"
    rand = b["random"]
    assert abs(rand["llm_call_share"] - c["llm_call_share"]) < 0.06
    report.update(title="t", created="now", models=[], notes=[])
    report["workload"]["name"] = "unit"
    write_report(report, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    for entry in [*data["strategies"], *data["baselines"].values()]:
        for key in (
            "name",
            "mode",
            "quality",
            "llm_call_share",
            "cost_usd",
            "latency_ms",
            "remote_bytes",
            "energy_j",
            "privacy_leaks",
        ):
            assert key in entry, key
    assert (tmp_path / "pareto.png").stat().st_size > 1000


CFG = {
    "models": {
        "slm": {"backend": "fake", "script": "x"},
        "llm": {"backend": "fake", "script": "y", "card": {"location": "remote"}},
    },
    "target": "quality=0.9",
    "strategies": {
        "casc": {"mode": "cascade", "models": ["slm", "llm"], "verifier": {"kind": "logprob"}},
        "route": {"mode": "route", "models": ["slm", "llm"], "scorer": {"kind": "task_prior"}},
        "pipe": {
            "mode": "pipeline",
            "stages": [{"model": "slm", "role": "normalise"}, {"model": "llm", "role": "answer"}],
        },
        "red": {"mode": "assist", "kind": "redact", "answerer": "llm"},
        "hint": {"mode": "assist", "kind": "hints", "teacher": "llm", "student": "slm"},
        "vote": {"mode": "fuse", "method": "vote", "models": ["slm", "llm", "casc"]},
    },
}


async def test_engine_builds_every_mode_from_config() -> None:
    async with Engine(parse_config(CFG)) as engine:
        assert set(engine.targets()) == {"casc", "route"}
        modes = {getattr(s, "mode", None) for s in engine.strategies.values()}
        assert modes == {"cascade", "route", "pipeline", "assist", "fuse"}
        resp = await engine.get("pipe").complete(ChatRequest.of("hello"))
        assert resp.text == "y" and len(resp.trace.children) == 2
        red = await engine.get("red").complete(ChatRequest.of("mail me at ann@example.com"))
        assert red.usage.pii_sent == 0  # redacted before the untrusted model


async def test_engine_reports_bad_option_path() -> None:
    bad = json.loads(json.dumps(CFG))
    bad["strategies"]["casc"]["verifier"] = {"kind": "oracle"}
    with pytest.raises(ConfigError) as e:
        await Engine(parse_config(bad)).start()
    assert "strategies.casc.verifier" in str(e.value)
