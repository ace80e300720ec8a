"""How `duetto demo` and `duetto eval` finish a report: the one home of those steps."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def finish_report(
    report: dict[str, Any],
    engine: Any,
    *,
    out: Path,
    target: str,
    title: str,
    workload: str,
    started: float,
    console: Any,
    detector: str,
    notes: Iterable[str] = (),
) -> None:
    """Complete `report` (from a run on `engine`, stopped or not) and write it to `out`.

    What calibration fitted goes to out/calibration.json, for `duetto serve --calibration`
    (duetto.fitted): the engine's configured strategies only (student ones need the student,
    which no config holds). Then the model cards, the PII `detector` that counted and redacted,
    cache counts, title, times and notes (each model's label, `notes`, the energy caveat, the
    detector); report.json/html are written and summarised."""
    from duetto.eval.report import print_summary, write_report
    from duetto.fitted import export_fitted, save_fitted, stamp

    fitted = stamp(export_fitted(engine.strategies, target), " ".join(sys.argv))
    if fitted["strategies"]:
        report["fitted_path"] = str(save_fitted(fitted, out / "calibration.json"))
    report["models"] = [m.card.to_dict() for m in engine.models.values()]
    report["pii_detector"] = detector
    report["cache"] = engine.cache_stats()
    report["title"] = title
    report["workload"]["name"] = workload
    report["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    report["notes"] = [
        *(f"{m['name']}: {m['label']}" for m in report["models"] if m.get("label")),
        *notes,
        "energy figures are estimates (see each model card's source)",
        f"PII counted and redacted with the {detector} detector",
    ]
    paths = write_report(report, out)
    print_summary(report, console)
    console.print(f"report: {', '.join(str(p) for p in paths.values())}  ({report['elapsed_s']} s)")
    sys.stdout.flush()
