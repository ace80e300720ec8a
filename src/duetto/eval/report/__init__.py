"""The evaluation report: report.json, pareto.png and a self-contained report.html.

`model` types the report (`Report.from_dict` reads what `duetto.eval.runner.evaluate` returns,
with the title, models and notes the CLI adds); `console` prints the one-table summary, `plots`
draws the figures (matplotlib, imported when writing) and `html` renders
`templates/report.html.j2` (Jinja2, autoescaped). The HTML opens offline: inline CSS, plots
embedded as base64 PNG, no external resource.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duetto.eval.report.model import BASELINE_LABELS, Report, Summary, json_safe

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["BASELINE_LABELS", "Report", "Summary", "print_summary", "render_html", "write_report"]


def _as_report(report: Report | Mapping[str, Any]) -> Report:
    return report if isinstance(report, Report) else Report.from_dict(report)


def write_report(report: Report | Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, pareto.png and report.html into `out_dir`; return their paths."""
    from duetto.eval.report.html import render_html as _render
    from duetto.eval.report.plots import axis_figures, pareto_figure, png

    r = _as_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "pareto": out_dir / "pareto.png",
        "html": out_dir / "report.html",
    }
    text = json.dumps(json_safe(r.to_dict()), indent=2, default=str)
    paths["json"].write_text(text + "\n", encoding="utf-8")
    pareto_png = png(pareto_figure(r))
    paths["pareto"].write_bytes(pareto_png)
    charts = [(title, png(fig)) for title, fig in axis_figures(r)]
    paths["html"].write_text(_render(r, pareto_png, charts), encoding="utf-8")
    return paths


def print_summary(report: Report | Mapping[str, Any], console: Console | None = None) -> None:
    """One rich table: every strategy and baseline on every axis."""
    from duetto.eval.report.console import print_summary as _print

    _print(_as_report(report), console)


def render_html(
    report: Report | Mapping[str, Any], pareto_png: bytes, charts: list[tuple[str, bytes]]
) -> str:
    """The whole report as one HTML string with every image inline."""
    from duetto.eval.report.html import render_html as _render

    return _render(_as_report(report), pareto_png, charts)
