"""`duetto privacy eval --all`: one detector over every labelled set, one table of sets × tiers.

Per set: the per-type report of `duetto.privacy.evaluate` (typed recall, "redacted as any type"
recall, precision, F2) and its per-tier roll-up; for a negative set, the detections by tier
(false alarms). Each row says whether the rules were tuned on that set.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duetto.privacy.datasets import LabelledSet, labelled_sets
from duetto.privacy.evaluate import evaluate
from duetto.privacy.tiers import TIERS, tier_of
from duetto.scoring.pii import Entity

# The checks of issue 16, as (tier or type, "any_type_recall" floor) and precision per tier.
RECALL_FLOORS: dict[str, float] = {
    "secret": 0.95,
    "identifier": 0.95,
    "EMAIL_ADDRESS": 0.95,
    "PHONE_NUMBER": 0.95,
    "PERSON": 0.90,
    "STREET_ADDRESS": 0.90,
}
# Per tier the set labels, on exhaustively labelled sets (MEDDOCAN); detections of a tier the
# set never labels (e.g. secrets in clinical reports) show in the table as false alarms.
PRECISION_FLOOR = 0.70


def evaluate_all(
    root: Path,
    detector: Callable[[str], list[Entity]],
    only: list[str] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Run `detector` over every set under `root`; JSON-ready results."""
    results: dict[str, Any] = {}
    for spec in labelled_sets(root):
        if only and not any(o in spec.name for o in only):
            continue
        samples = spec.load()[:limit] if limit else spec.load()
        t0 = time.perf_counter()
        if spec.negative:
            entry = _negatives(spec, samples, detector)
        else:
            entry = evaluate(samples, detector).to_dict()
            entry["checks"] = _checks(entry, exhaustive=spec.name.startswith("meddocan"))
        entry.update(tuned=spec.tuned, negative=spec.negative, note=spec.note)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        results[spec.name] = entry
    return results


def _negatives(spec: LabelledSet, samples: list[Any], detector: Any) -> dict[str, Any]:
    by_tier: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    texts_hit = 0
    for s in samples:
        found = detector(s.text)
        texts_hit += bool(found)
        by_type.update(e.type for e in found)
        by_tier.update(tier_of(e.type) for e in found)
    return {
        "samples": len(samples),
        "texts_with_detections": texts_hit,
        "detections_by_tier": {t: by_tier[t] for t in TIERS},
        "detections_by_type": dict(by_type.most_common()),
    }


def _checks(entry: dict[str, Any], exhaustive: bool) -> dict[str, Any]:
    """Which of issue 16's floors this set meets (only for classes it has)."""
    out: dict[str, Any] = {}
    for key, floor in RECALL_FLOORS.items():
        scores = entry["tiers"].get(key) or entry["entities"].get(key)
        if scores and scores["support"]:
            value = scores["any_type_recall"]
            out[f"{key} any-type recall >= {floor}"] = [value, value >= floor]
    if exhaustive:
        for tier, scores in entry["tiers"].items():
            if scores["support"] and scores["predicted"]:  # tiers the set labels
                value = scores["any_type_precision"]
                key = f"{tier} precision >= {PRECISION_FLOOR}"
                out[key] = [value, value >= PRECISION_FLOOR]
    return out


def tier_table(results: dict[str, Any]) -> Any:
    """A rich table: one row per set, per tier "any-type recall / precision" (or detections)."""
    from rich.table import Table

    table = Table(
        title="PII detection: sets × tiers",
        caption=(
            "cell: any-type recall/precision (labelled spans); negatives: detections. "
            "tuned: rules changed while reading that set. checks: issue 16's floors"
        ),
    )
    table.add_column("set", no_wrap=True)
    table.add_column("tuned")
    table.add_column("n", justify="right")
    for tier in TIERS:
        table.add_column(tier, justify="right", no_wrap=True)
    table.add_column("checks")
    for name, r in results.items():
        cells = []
        for tier in TIERS:
            if r["negative"]:
                cells.append(str(r["detections_by_tier"][tier]))
                continue
            s = r["tiers"][tier]
            recall = f"{s['any_type_recall']:.2f}" if s["support"] else "-"
            precision = f"{s['any_type_precision']:.2f}" if s["predicted"] else "-"
            cells.append(f"{recall}/{precision} ({s['support']})" if s["support"] else precision)
        checks = r.get("checks") or {}
        failed = [k.split(" ")[0] for k, (_, ok) in checks.items() if not ok]
        verdict = "miss: " + ", ".join(failed) if failed else ("met" if checks else "n/a")
        table.add_row(name, "yes" if r["tuned"] else "no", str(r["samples"]), *cells, verdict)
    return table
