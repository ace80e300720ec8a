"""Span-level scoring, the two input formats, their errors, and `duetto privacy eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app
from duetto.errors import DataError
from duetto.privacy.evaluate import evaluate, f_beta, load_labelled, score_sample
from duetto.scoring.pii import Entity


def E(t: str, s: int, e: int) -> Entity:
    return Entity(t, s, e, "x" * (e - s))


def test_f_beta_weighs_recall() -> None:
    assert f_beta(1.0, 1.0, 2) == pytest.approx(1.0)
    assert f_beta(0.0, 0.0, 2) == 0.0
    assert f_beta(0.5, 1.0, 2) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))
    assert f_beta(0.5, 1.0, 2) > f_beta(1.0, 0.5, 2)


def test_score_sample_overlap_exact_type_and_chars() -> None:
    gold = [E("PERSON", 0, 10), E("PHONE_NUMBER", 20, 30)]
    pred = [E("PERSON", 5, 10), E("ORGANIZATION", 20, 30), E("PERSON", 40, 45)]
    c = score_sample(gold, pred, "overlap")
    assert (c["PERSON"].support, c["PERSON"].found, c["PERSON"].predicted) == (1, 1, 2)
    assert c["PERSON"].correct == 1
    assert c["PERSON"].covered_chars == 5 and c["PERSON"].gold_chars == 10
    assert c["PHONE_NUMBER"].found == 0 and c["PHONE_NUMBER"].found_any_type == 1
    assert score_sample(gold, pred, "exact")["PERSON"].found == 0


def test_evaluate_reports_micro_and_unlabelled_types(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"text": "mail ana@x.org now", "entities": [{"type": "EMAIL", "value": "ana@x.org"}]},
        {"text": "call 555 123 4567", "spans": [{"type": "PHONE_NUMBER", "start": 5, "end": 17}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    samples = load_labelled(path)
    assert samples[0].spans[0].type == "EMAIL_ADDRESS"  # label map
    report = evaluate(samples, lambda t: [E("EMAIL_ADDRESS", 5, 14), E("IP_ADDRESS", 0, 2)])
    d = report.to_dict()
    assert d["entities"]["EMAIL_ADDRESS"]["recall"] == 1.0
    assert d["entities"]["PHONE_NUMBER"]["recall"] == 0.0
    assert d["micro"]["support"] == 2 and d["micro"]["recall"] == 0.5
    assert d["unlabelled_predictions"] == {"IP_ADDRESS": 2}
    assert set(d["entities"]["EMAIL_ADDRESS"]) >= {"precision", "recall", "f2", "support"}


def test_presidio_research_format_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    row = {
        "full_text": "I am in Paris",
        "spans": [
            {"entity_type": "GPE", "entity_value": "Paris", "start_position": 8, "end_position": 13}
        ],
    }
    path.write_text(json.dumps([row, row, row]))
    samples = load_labelled(path, limit=2)
    assert len(samples) == 2
    assert samples[0].spans == (Entity("LOCATION", 8, 13, "Paris"),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no labelled rows"),
        ("[{]", "invalid JSON"),
        ('{"text": 3}\n', "no string"),
        ('{"text": "abc", "spans": [{"type": "X", "start": 2, "end": 9}]}\n', "outside"),
        ('{"text": "abc", "entities": [{"type": "X", "value": "zz"}]}\n', "does not occur"),
        ('{"text": "abc", "spans": [{"type": "X"}]}\n', "malformed span"),
        ('{"text": "abc"}\nnot json\n', "line 2"),
    ],
)
def test_bad_files_raise_data_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_labelled(path)


def test_cli_eval_writes_json(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps(
            {"text": "ssn 219-09-9999 ok", "entities": [{"type": "US_SSN", "value": "219-09-9999"}]}
        )
        + "\n"
    )
    out = tmp_path / "out.json"
    args = ["privacy", "eval", "--data", str(data), "--json", str(out), "--detector", "regex"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert scores["entities"]["US_SSN"] == pytest.approx(
        {
            "precision": 1.0,
            "recall": 1.0,
            "f2": 1.0,
            "support": 1,
            "predicted": 1,
            "char_recall": 1.0,
            "any_type_recall": 1.0,
            "any_type_precision": 1.0,
        }
    )
    assert scores["micro"]["recall"] == 1.0


def test_cli_eval_bad_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["privacy", "eval", "--data", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output
