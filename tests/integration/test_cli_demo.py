"""`duetto demo` end to end on the shipped traffic with its models scripted (no weights): the
report it finishes (duetto.cli._report) and the calibration it saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import duetto.config
from duetto.cli.demo import HINT_MAX_TOKENS, run_demo
from duetto.scoring import pii

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_finishes_its_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = duetto.config.load_default_config

    def scripted() -> duetto.config.Config:
        cfg = embedded()
        for m in cfg.models.values():
            m.backend, m.script = "fake", "ok"
        cfg.privacy.detector = "regex"  # the dependency-free rules: no spaCy model to load
        return cfg

    monkeypatch.setattr(duetto.config, "load_default_config", scripted)
    monkeypatch.setattr(pii, "_detector", pii._detector)  # the demo installs its own
    out = tmp_path / "demo"
    run_demo(out, None, 3, None, None, None, "quality=0.95")
    report = json.loads((out / "report.json").read_text())
    assert report["title"] == "duetto demo: staged rollout on real traffic"
    assert report["workload"]["name"] == "duetto/data/traffic (shipped sample)"
    assert len(report["models"]) == 2 and set(report["cache"]) == set(scripted().models)
    notes = report["notes"]
    assert any(f"task hints {HINT_MAX_TOKENS}" in n for n in notes)
    assert notes[-2:] == [
        "energy figures are estimates (see each model card's source)",
        "PII counted and redacted with the regex detector",
    ]
    assert Path(report["fitted_path"]) == out / "calibration.json"
    assert json.loads((out / "calibration.json").read_text())["strategies"]
    assert (out / "report.html").is_file()
