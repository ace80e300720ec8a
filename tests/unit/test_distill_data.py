"""Dataset loaders and samplers of duetto.distill.data, on small files written by the tests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from duetto.distill.data import (
    Example,
    load_banking77,
    load_clinc150,
    load_dataset,
    sample,
    stratified_sample,
)
from duetto.errors import DataError


def write_banking(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(
        'text,category\nwhere is my card?,card_arrival\n"top up, failed",top_up_failed\n'
    )
    (folder / "test.csv").write_text("text,category\ncard not here,card_arrival\n")
    (folder / "categories.json").write_text(json.dumps(["top_up_failed", "card_arrival"]))


def test_banking77_reads_csv_with_quoted_commas(tmp_path: Path) -> None:
    write_banking(tmp_path / "banking77")
    ds = load_dataset("banking77", tmp_path)
    assert ds.labels == ("card_arrival", "top_up_failed")
    assert ds.train[1] == Example("top up, failed", "top_up_failed")
    assert len(ds.test) == 1 and ds.out_of_scope is None


def test_banking77_missing_column_names_the_file(tmp_path: Path) -> None:
    write_banking(tmp_path)
    (tmp_path / "train.csv").write_text("query,label\nx,y\n")
    with pytest.raises(DataError, match=r"train\.csv"):
        load_banking77(tmp_path)


def test_banking77_unknown_label_is_an_error(tmp_path: Path) -> None:
    write_banking(tmp_path)
    (tmp_path / "test.csv").write_text("text,category\nhello,greeting\n")
    with pytest.raises(DataError, match="greeting"):
        load_banking77(tmp_path)


def test_clinc150_adds_out_of_scope_splits(tmp_path: Path) -> None:
    splits = {
        "train": [["say hi in french", "translate"], ["what time is it", "time"]],
        "oos_train": [["how is the dow", "oos"]],
        "test": [["translate cat", "translate"]],
        "oos_test": [["who won the game", "oos"]],
    }
    (tmp_path / "data_full.json").write_text(json.dumps(splits))
    ds = load_clinc150(tmp_path)
    assert ds.labels == ("time", "translate")  # oos is not an intent
    assert ds.out_of_scope == "oos" and ds.all_labels[-1] == "oos"
    assert [e.label for e in ds.test] == ["translate", "oos"]
    assert ds.is_out_of_scope("oos") and not ds.is_out_of_scope("time")
    assert ds.validation == ()  # this file has no validation split: the loop audits on train
    assert ds.gold_labels()["who won the game"] == "oos"


def test_clinc150_reads_its_validation_split(tmp_path: Path) -> None:
    splits = {
        "train": [["say hi in french", "translate"]],
        "oos_train": [["how is the dow", "oos"]],
        "val": [["translate dog", "translate"]],
        "oos_val": [["best pizza near me", "oos"]],
        "test": [["translate cat", "translate"]],
        "oos_test": [["who won the game", "oos"]],
    }
    (tmp_path / "data_full.json").write_text(json.dumps(splits))
    ds = load_clinc150(tmp_path)
    assert [e.label for e in ds.validation] == ["translate", "oos"]
    assert ds.gold_labels()["best pizza near me"] == "oos"


def test_unknown_dataset_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imdb", tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_dataset("clinc150", tmp_path)


def test_samples_are_seeded_and_stratified() -> None:
    items = [Example(f"a{i}", "a") for i in range(60)] + [Example(f"b{i}", "b") for i in range(40)]
    assert sample(items, 10, seed=3) == sample(items, 10, seed=3)
    assert sample(items, 10, seed=3) != sample(items, 10, seed=4)
    picked = stratified_sample(items, 20, seed=1)
    assert len(picked) == 20 and len({e.text for e in picked}) == 20
    assert Counter(e.label for e in picked) == {"a": 12, "b": 8}
    assert len(stratified_sample(items, None)) == 100
