"""benchmarks/staged_rollout.py's phases with scripted models (issue 14), so the benchmark does
not rot: the real gateway on a loopback socket, shadow → gold import → `duetto fit` → promote →
routed → drift, and the JSON schema of the issue. Not timed."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from duetto.cli.main import app as cli_app
from duetto.config import parse_config
from duetto.engine import Engine
from duetto.eval.traffic import load_traffic
from duetto.fitted import stamp
from duetto.gateway import create_app
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel, ModelCard
from duetto.testing.scripted import ScriptedModel
from duetto.testing.server_thread import ServerThread
from gateway_kit import priced_fake_models

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "staged_rollout.py"
CFG: dict[str, Any] = {
    "models": priced_fake_models(),
    "slm": "slm",
    "llm": "llm",
    "target": "quality=0.95",
    "strategies": {
        "cascade-logprob": {
            "mode": "cascade",
            "models": ["slm", "llm"],
            "verifier": {"kind": "logprob"},
        },
    },
}
START = stamp(
    {
        "format": "duetto-fitted/1",
        "target": "quality=0.95",
        "strategies": {
            "cascade-logprob": {
                "threshold": 0.5,
                "calibrator": None,
                "scorer": None,
                "verifier": None,
            }
        },
    },
    made_by="test",
    created=0,
)


def bench() -> Any:
    spec = importlib.util.spec_from_file_location("staged_rollout", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def scripted(items: Sequence[Any]) -> dict[str, ChatModel]:
    """The LLM answers the gold answer; the SLM knows the in-scope intents (confidently) and
    gets out-of-scope queries and math wrong (unsure)."""
    gold = {it.request.last_user: (it.reference or "", it) for it in items}

    def slm(req: ChatRequest) -> str:
        ref, it = gold.get(req.last_user, ("", None))
        if it is not None and it.task == "intent" and ref != "out_of_scope":
            return ref
        return "balance" if it is not None and it.task == "intent" else "The answer is 1"

    def slm_logprob(req: ChatRequest, text: str) -> float:
        ref, _ = gold.get(req.last_user, ("", None))
        return -0.01 if text == ref else -2.5

    def llm(req: ChatRequest) -> str:
        ref, it = gold.get(req.last_user, ("", None))
        return f"The answer is {ref}" if it is not None and it.task == "math" else ref

    return {
        "slm": ScriptedModel(ModelCard(name="slm"), slm, logprob=slm_logprob),
        "llm": ScriptedModel(
            ModelCard(
                name="llm", location="remote", price_in_per_mtok=0.15, price_out_per_mtok=0.6
            ),
            llm,
            logprob=-0.05,
        ),
    }


def test_the_rollout_phases_write_the_issue_schema(tmp_path: Path) -> None:
    mod = bench()
    train = mod.rollout_items(load_traffic("train"))
    test = mod.rollout_items(load_traffic("test"))
    shadow, promoted = train[:60], test[:30]
    drift = mod.drifted(test[30:], 30, mod.DRIFT_MIX)
    models = scripted([*train, *test])
    config = tmp_path / "duetto.yaml"
    config.write_text(yaml.safe_dump(CFG))
    cfg = parse_config(CFG)
    engine = Engine(cfg, fitted=START, wrap=lambda name, _m: models[name])
    db = str(tmp_path / "g.db")
    settings = mod.settings_for(cfg, db, audit_share=1.0, min_labels=10)
    app = create_app(engine, settings.model_copy(update={"detector": "regex"}))
    runner = CliRunner()

    def cli(argv: Sequence[str]) -> tuple[int, str]:
        r = runner.invoke(cli_app, list(argv))
        return r.exit_code, r.output

    seen: list[int] = []
    with ServerThread(app) as server:
        result = mod.run(
            app,
            server,
            db,
            tmp_path,
            shadow,
            promoted,
            drift,
            latency_sample=5,
            target=0.95,
            cli=cli,
            config=config,
            log=lambda _s: None,
            max_tokens=64,
            checkpoint=lambda r: seen.append(len(r["phases"])),
        )
    assert seen == [1, 2, 3]  # a run cut short keeps the phases it finished
    names = [p["name"] for p in result["phases"]]
    assert names == ["shadow", "promoted", "drift"]
    for p in result["phases"]:
        for key in (
            "requests",
            "llm_call_share",
            "cost_usd",
            "llm_only_cost_usd",
            "quality",
            "llm_only_quality",
            "quality_delta_ci",
            "audit_estimate",
            "oos_escalated",
            "user_latency_p50_ms",
            "user_latency_p50_ms_without_loop",
        ):
            assert key in p, key
        assert set(p["quality"]) == {"mean", "ci_low", "ci_high"}
    shadow_p, promoted_p, drift_p = result["phases"]
    assert "requests_to_recover" in drift_p
    assert (
        result["mix"]["drift"]["by_source"]["gsm8k"]
        > result["mix"]["promoted"]["by_source"]["gsm8k"]
    )
    # phase 1: the LLM served everything, its answers are gold; the gold audit went in
    assert shadow_p["llm_call_share"] == 1.0 and shadow_p["quality"]["mean"] == 1.0
    assert '"matched": 60' in shadow_p["notes"][0]
    assert shadow_p["by_stream"]["intent"]["slm_shadow_quality"] == 1.0
    assert shadow_p["by_stream"]["math"]["slm_shadow_quality"] == 0.0
    # phase 2: fitted on the shadow answers and promoted without a restart
    assert result["fit"]["promoted"], result["fit"]
    assert math.isfinite(float(result["fit"]["threshold"]))
    # phase 3: the confident in-scope intents stay local, the rest escalates
    assert promoted_p["llm_call_share"] < 0.5
    assert promoted_p["quality"]["mean"] == 1.0 == promoted_p["llm_only_quality"]
    assert promoted_p["oos_escalated"] == 1.0
    assert promoted_p["audit_estimate"]["mean"] == 1.0
    assert promoted_p["cost_usd"] < promoted_p["llm_only_cost_usd"]
    assert result["checks"]["phase3_non_inferior"] is True
    assert drift_p["llm_call_share"] > promoted_p["llm_call_share"]
    assert len(drift_p["estimates"]) == 30
