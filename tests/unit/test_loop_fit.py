"""`duetto fit STORE` (issue 14): a calibration fitted from the store's labelled shadow answers,
checked on a held-out part, with the report and the "too little data" verdict."""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from duetto.calibrate import Target
from duetto.cli.main import app
from duetto.config import load_config
from duetto.engine import Engine
from duetto.fitted import check_fitted, version_of
from duetto.loop.fit import MIN_ROWS, Row, evidence, fit_cascade
from duetto.loop.store import Label, LoopStore, Shadow
from duetto.store import TraceRecord, TraceStore
from gateway_kit import priced_fake_models

CONFIG = {
    "models": priced_fake_models(),
    "target": "quality=0.9",
    "strategies": {
        "casc": {"mode": "cascade", "models": ["slm", "llm"], "verifier": {"kind": "logprob"}},
        "fixed": {
            "mode": "route",
            "models": ["slm", "llm"],
            "scorer": {"kind": "length"},
            "threshold": 0.5,
        },
    },
}


def traffic(n: int, seed: int = 0) -> list[tuple[float, float, str]]:
    """(confidence, agreement, SLM text): the SLM agrees with the LLM when it is confident
    (P(agree) rises with confidence); some answers are loops, confident ones included."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        conf = rng.random()
        agree = 1.0 if rng.random() < conf**0.5 else 0.0
        text = "card_arrival" if agree else "transfer_failed"
        if i % 25 == 0:
            conf, agree, text = 0.95, 0.0, "card card card card card card card card card card"
        out.append((conf, agree, text))
    return out


async def fill(db: str, rows: list[tuple[float, float, str]]) -> None:
    traces = await TraceStore(db).start()
    try:
        loop = await LoopStore(traces).start()
        for i, (conf, agree, text) in enumerate(rows):
            tid = f"t{i:04d}"
            request = {"messages": [{"role": "user", "content": f"where is my card? ({i})"}]}
            body = {"request": request, "response": "card_arrival"}
            record = TraceRecord(tid, "llm", "ok", answered_by="llm", created=1000.0 + i, body=body)
            await traces.append(record)
            await loop.add_shadow(Shadow(tid, "slm", text, answer={"confidence": conf}))
            await loop.add_label(
                Label(tid, "slm", "agreement", agree, strategy="llm", kind="shadow")
            )
    finally:
        await traces.close()


def run_fit(tmp_path: Path, n: int, *extra: str) -> tuple[int, Path, str]:
    db = str(tmp_path / "gw.db")
    asyncio.run(fill(db, traffic(n)))
    cfg = tmp_path / "duetto.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "fit"
    result = CliRunner().invoke(app, ["fit", db, "--config", str(cfg), "--out", str(out), *extra])
    return result.exit_code, out, result.output


def test_fit_writes_a_stamped_calibration_and_the_report(tmp_path: Path) -> None:
    code, out, output = run_fit(tmp_path, 400, "--target", "quality=0.8")
    assert code == 0, output
    state = json.loads((out / "calibration.json").read_text())
    cfg = load_config(tmp_path / "duetto.yaml")
    check_fitted(state, cfg.strategies)  # a file the gateway accepts
    assert state["made_by"].startswith("duetto fit") and version_of(state)
    entry = state["strategies"]["casc"]
    assert entry["calibrator"]["kind"] == "isotonic" and math.isfinite(float(entry["threshold"]))
    report = json.loads((out / "report.json").read_text())
    assert report["workload"]["heldout_n"] == 200 and report["workload"]["calibration_n"] == 200
    assert set(report["baselines"]) == {"llm_only", "slm_only", "best_single", "random", "oracle"}
    casc = report["strategies"][0]
    assert casc["quality"]["ci_low"] <= casc["quality"]["mean"] <= casc["quality"]["ci_high"]
    assert 0 < casc["llm_call_share"] < 1 and casc["cost_fraction_of_llm_only"] < 1
    assert "answering" in report["notes"][0] and "locally keeps quality" in report["notes"][0]
    assert (out / "report.html").exists()

    # the fitted calibration serves: the strategies built with it take its threshold
    async def built() -> float | None:
        async with Engine(cfg) as engine:
            return engine.use_calibration(state)["casc"].threshold  # type: ignore[attr-defined,no-any-return]

    assert built is not None and asyncio.run(built()) == pytest.approx(float(entry["threshold"]))


def test_loops_are_never_answered_locally_by_the_fitted_cascade() -> None:
    rows = [
        Row(f"t{i}", float(i), conf, agree, 1.0, 0.0, 1e-4, text.startswith("card card"))
        for i, (conf, agree, text) in enumerate(traffic(400))
    ]
    for r in rows:
        if r.degenerate:
            r.raw = 0.0  # as rows_from_examples does
    result = fit_cascade("casc", rows, Target.parse("quality=0.8"))
    assert result.entry is not None and result.heldout["n"] == 200


def test_too_little_data_says_how_much_more(tmp_path: Path) -> None:
    code, out, output = run_fit(tmp_path, 30)
    assert code == 2
    assert "too little data" in output and f"need at least {MIN_ROWS}" in output
    state = json.loads((out / "calibration.json").read_text())
    assert "casc" not in state["strategies"]  # nothing fitted: nothing to promote


def test_evidence_asks_for_more_data_when_the_interval_straddles_the_floor() -> None:
    q = {"mean": 0.93, "ci_low": 0.86, "ci_high": 0.99}
    verdict = evidence(q, 1.0, Target.parse("quality=0.9"), n_held=100, holdout=0.5)
    assert not verdict["enough"] and verdict["more_needed"] > 0
    # (0.07 / 0.03)^2 * 100 held-out = 545 held out: 445 more, / 0.5 holdout = 890 more
    assert verdict["more_needed"] == pytest.approx(890, abs=2)
    ok = evidence(
        {"mean": 0.95, "ci_low": 0.92, "ci_high": 0.97}, 1.0, Target.parse("quality=0.9"), 100, 0.5
    )
    assert ok["enough"]
    hopeless = evidence(
        {"mean": 0.85, "ci_low": 0.8, "ci_high": 0.9}, 1.0, Target.parse("quality=0.9"), 100, 0.5
    )
    assert not hopeless["enough"] and hopeless["more_needed"] is None
