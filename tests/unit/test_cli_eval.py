"""`duetto eval` end to end on fake models: the report it finishes (duetto.cli._report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app
from duetto.scoring import pii

CFG = {
    "models": {
        "slm": {"backend": "fake", "script": "x", "card": {"label": "a scripted SLM"}},
        "llm": {"backend": "fake", "script": "y", "card": {"location": "remote"}},
    },
    "target": "quality=0.9",
    "privacy": {"detector": "regex"},  # the dependency-free rules: no spaCy model to load
    "strategies": {
        "route": {"mode": "route", "models": ["slm", "llm"], "scorer": {"kind": "task_prior"}},
    },
}


def test_eval_writes_a_finished_report_and_its_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pii, "_detector", pii._detector)  # eval installs its own: restored after
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(CFG))  # JSON is YAML
    data = tmp_path / "work.jsonl"
    rows = [
        {"id": f"q{i}", "task": "math" if i % 3 == 0 else "intent", "prompt": f"question {i}"}
        | {"reference": "y" if i % 3 == 0 else "x"}
        for i in range(24)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", str(cfg), "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["title"] == "duetto report"
    assert report["workload"]["name"] == str(data)
    assert [m["name"] for m in report["models"]] == ["slm", "llm"]
    assert set(report["cache"]) == {"slm", "llm"}
    assert report["elapsed_s"] >= 0 and report["created"]
    assert report["notes"] == [
        "slm: a scripted SLM",
        "energy figures are estimates (see each model card's source)",
        "PII counted and redacted with the regex detector",
    ]
    assert report["pii_detector"] == "regex"
    fitted = json.loads(Path(report["fitted_path"]).read_text())
    assert Path(report["fitted_path"]) == out / "calibration.json"
    assert "route" in fitted["strategies"] and fitted["version"]["hash"]
    assert "report:" in result.output
