"""Intent datasets for distillation: banking77 and clinc150, read from the shared data folder.

Both are label tasks: a short customer/assistant query and one intent name. clinc150 also has
out-of-scope queries (label "oos"): a deployed small model must not answer them; they escalate.
Formats (see each folder's SOURCE.md):
  banking77/{train.csv,test.csv} with columns text,category; categories.json lists 77 intents.
  clinc150/data_full.json maps a split name to [utterance, intent] pairs (train, val, test,
  oos_train, oos_val, oos_test).
A dataset may carry a validation split (clinc150: val + oos_val), disjoint from train and test:
the distillation loop draws its held-out audit sample from it, so that the audit can hold
out-of-scope queries in the share the test traffic has (the training split holds only 0.7%).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from duetto.errors import DataError

DATASETS = ("banking77", "clinc150")
OOS_LABEL = "oos"
# What each dataset's queries are, for a teacher's or student's prompt ("Classify <hint> …").
TASK_HINTS = {
    "banking77": "online-banking customer queries",
    "clinc150": "requests to a virtual assistant",
}


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True, slots=True)
class IntentDataset:
    name: str
    labels: tuple[str, ...]  # the in-scope intents, sorted
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    out_of_scope: str | None = None  # the label of queries that must escalate, if any
    validation: tuple[Example, ...] = ()  # disjoint from train and test; may be empty

    def is_out_of_scope(self, label: str) -> bool:
        return self.out_of_scope is not None and label == self.out_of_scope

    def gold_labels(self) -> dict[str, str]:
        """Every query's gold label, over all splits (what a gold teacher replays)."""
        return {e.text: e.label for e in (*self.train, *self.validation, *self.test)}

    @property
    def all_labels(self) -> tuple[str, ...]:
        """Every answer a teacher may give: the intents, then the out-of-scope label."""
        return (*self.labels, self.out_of_scope) if self.out_of_scope else self.labels


def default_data_dir() -> Path:
    """../shared/datasets relative to the repository root (where the shared data lives)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "datasets"


def load_dataset(name: str, data_dir: str | Path | None = None) -> IntentDataset:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "banking77":
        return load_banking77(root / "banking77")
    if name == "clinc150":
        return load_clinc150(root / "clinc150")
    raise DataError(f"unknown dataset {name!r}", expected=" or ".join(DATASETS))


def _read_csv(path: Path) -> tuple[Example, ...]:
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected="CSV text,category")
    out: list[Example] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise DataError("missing columns", file=str(path), expected="header text,category")
        for line, row in enumerate(reader, start=2):
            text, label = (row.get("text") or "").strip(), (row.get("category") or "").strip()
            if not text or not label:
                raise DataError(f"line {line}: empty text or category", file=str(path))
            out.append(Example(text, label))
    return tuple(out)


def load_banking77(folder: str | Path) -> IntentDataset:
    folder = Path(folder)
    train, test = _read_csv(folder / "train.csv"), _read_csv(folder / "test.csv")
    cats = folder / "categories.json"
    labels = (
        sorted(json.loads(cats.read_text())) if cats.is_file() else sorted({e.label for e in train})
    )
    unknown = {e.label for e in (*train, *test)} - set(labels)
    if unknown:
        raise DataError(f"labels not in categories.json: {sorted(unknown)[:5]}", file=str(cats))
    return IntentDataset("banking77", tuple(labels), train, test)


def load_clinc150(folder: str | Path, variant: str = "data_full.json") -> IntentDataset:
    path = Path(folder) / variant
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected="clinc150 JSON splits")
    try:
        splits = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc}", file=str(path)) from exc

    def pairs(*names: str) -> tuple[Example, ...]:
        out: list[Example] = []
        for split in names:
            if split not in splits:
                raise DataError(f"split {split!r} missing", file=str(path))
            out.extend(Example(str(t), str(lab)) for t, lab in splits[split])
        return tuple(out)

    train, test = pairs("train", "oos_train"), pairs("test", "oos_test")
    # Older files of the dataset have no validation split: the loop then audits on train.
    validation = pairs("val", "oos_val") if {"val", "oos_val"} <= set(splits) else ()
    labels = sorted({e.label for e in train} - {OOS_LABEL})
    return IntentDataset(
        "clinc150", tuple(labels), train, test, out_of_scope=OOS_LABEL, validation=validation
    )


def sample(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """A seeded random sample of n examples in random order (all of them when n is None)."""
    items = list(examples)
    rng = random.Random(seed)
    rng.shuffle(items)
    return items if n is None or n >= len(items) else items[:n]


def stratified_sample(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """n examples keeping each label's share (round-robin over shuffled per-label lists)."""
    if n is None or n >= len(examples):
        return sample(examples, None, seed)
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    for items in by_label.values():
        rng.shuffle(items)
    order = sorted(by_label)
    # Largest-remainder allocation so every label's share is kept as closely as possible.
    total = len(examples)
    quotas = {k: n * len(by_label[k]) / total for k in order}
    counts = {k: int(q) for k, q in quotas.items()}
    rest = n - sum(counts.values())
    for k in sorted(order, key=lambda k: quotas[k] - counts[k], reverse=True)[:rest]:
        counts[k] += 1
    out = [e for k in order for e in by_label[k][: counts[k]]]
    rng.shuffle(out)
    return out
