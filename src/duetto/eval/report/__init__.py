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
    """Write report.json, pareto.png (with pareto.labels.json: its label boxes), phases.png
    (a staged rollout only) and report.html into `out_dir`; return their paths."""
    from duetto.eval.report.html import render_html as _render
    from duetto.eval.report.plots import axis_figures, pareto_figure, phases_figure, png

    r = _as_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "pareto": out_dir / "pareto.png",
        "labels": out_dir / "pareto.labels.json",
        "html": out_dir / "report.html",
    }
    text = json.dumps(json_safe(r.to_dict()), indent=2, default=str)
    paths["json"].write_text(text + "\n", encoding="utf-8")
    fig, labels = pareto_figure(r)
    pareto_png = png(fig, tight=False)  # not cropped: the label boxes are this PNG's pixels
    paths["pareto"].write_bytes(pareto_png)
    sidecar = {
        "image": paths["pareto"].name,
        "size": [round(fig.bbox.width), round(fig.bbox.height)],
        "coordinates": "pixels of the image, origin top left: [x0, y0, x1, y1]",
        "labels": [{"text": d["text"], "box": [round(v, 1) for v in d["box"]]} for d in labels],
    }
    paths["labels"].write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    phases_fig = phases_figure(r)
    phases_png = png(phases_fig) if phases_fig is not None else None
    if phases_png is not None:
        paths["phases"] = out_dir / "phases.png"
        paths["phases"].write_bytes(phases_png)
    charts = [(title, png(fig)) for title, fig in axis_figures(r)]
    html = _render(r, pareto_png, charts, phases_png)
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def print_summary(report: Report | Mapping[str, Any], console: Console | None = None) -> None:
    """One rich table: every strategy and baseline on every axis."""
    from duetto.eval.report.console import print_summary as _print

    _print(_as_report(report), console)


def render_html(
    report: Report | Mapping[str, Any],
    pareto_png: bytes,
    charts: list[tuple[str, bytes]],
    phases_png: bytes | None = None,
) -> str:
    """The whole report as one HTML string with every image inline."""
    from duetto.eval.report.html import render_html as _render

    return _render(_as_report(report), pareto_png, charts, phases_png)
