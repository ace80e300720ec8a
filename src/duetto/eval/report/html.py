"""The report as one self-contained HTML page: `templates/report.html.j2`, rendered by Jinja2
with autoescape. This module only prepares plain values (formatted figures, data URIs); the
template holds the page."""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from duetto.eval.report.model import Report, Summary, fmt

if TYPE_CHECKING:
    from jinja2 import Environment


def _quality_text(s: Summary) -> str:
    q = s.quality
    return f"{fmt(q.mean)} [{fmt(q.ci_low)}, {fmt(q.ci_high)}]"


def _tiers(counts: dict[str, int]) -> str:
    """The privacy column by risk tier, e.g. "secret 0 · identifier 2 · contact 5 · quasi 1"."""
    return " · ".join(f"{tier} {n}" for tier, n in counts.items())


COLUMNS: list[tuple[str, Callable[[Summary], str]]] = [
    ("quality [95% CI]", _quality_text),
    ("LLM share", lambda s: fmt(s.llm_call_share, pct=True)),
    ("cost USD", lambda s: fmt(s.cost_usd, 4)),
    ("USD / 1k req", lambda s: fmt(s.cost_usd_per_1k, 4)),
    ("latency p50 ms", lambda s: fmt(s.latency_ms.get("p50"), 0)),
    ("latency p95 ms", lambda s: fmt(s.latency_ms.get("p95"), 0)),
    ("TTFT p50 ms", lambda s: fmt(s.ttft_ms.get("p50"), 0)),
    ("TTFT p95 ms", lambda s: fmt(s.ttft_ms.get("p95"), 0)),
    ("remote bytes", lambda s: fmt(s.remote_bytes, 0)),
    ("remote B / req", lambda s: fmt(s.remote_bytes_per_request, 0)),
    ("energy J (est.)", lambda s: fmt(s.energy_j, 1)),
    ("J / req (est.)", lambda s: fmt(s.energy_j_per_request, 2)),
    ("PII leaks", lambda s: str(s.privacy_leaks)),
    ("leaks by tier", lambda s: _tiers(s.privacy_leaks_by_tier)),
    ("leak rate", lambda s: fmt(s.leak_rate, pct=True)),
    ("n", lambda s: "" if s.n is None else str(s.n)),
]


def _text(value: Any) -> Any:
    """Every `{{ value }}`: escaped, and "://" written as an entity, so that a URL quoted in
    text (e.g. a price source) reads the same but can never be mistaken for a resource this
    offline file would fetch. None prints as nothing."""
    from markupsafe import Markup, escape

    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(str(escape(str(value))).replace("://", "&#58;//"))


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("duetto.eval.report", "templates"),
        autoescape=True,
        finalize=_text,
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=False,
    )
    env.filters["fmt"] = fmt
    return env


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _calibration_rows(calibration: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per calibrated strategy, figures rounded (what `calibrate_strategy` fitted;
    its curve is drawn in the cost-quality plot, not printed)."""
    out = []
    for name, c in calibration.items():
        if not isinstance(c, dict):
            out.append((str(name), _plain(c)))
            continue
        parts = [f"target {c['target']}"] if c.get("target") else []
        if "threshold" in c:
            t = c["threshold"]
            if t is None:  # ±inf in JSON is null: the share tells which way it goes
                t = "+∞ (always escalates)" if c.get("calib_llm_share") == 1 else "−∞ (never)"
            parts.append(f"threshold {t if isinstance(t, str) else fmt(t, 3)}")
        if c.get("calib_quality") is not None:
            parts.append(f"quality {fmt(c['calib_quality'], 2)}")
        if c.get("calib_llm_share") is not None:
            parts.append(f"LLM share {fmt(c['calib_llm_share'], pct=True)}")
        if c.get("calib_cost_per_1k") is not None:
            parts.append(f"USD/1k {fmt(c['calib_cost_per_1k'], 4)}")
        if c.get("calib_n") is not None:
            parts.append(f"on {c['calib_n']} requests")
        if c.get("curve"):
            parts.append(f"{len(c['curve'])} operating points drawn")
        out.append((str(name), ", ".join(parts) or "no threshold fitted"))
    return out


def _plain(value: Any) -> str:
    """A value as words: a number rounded, anything else its text (never a JSON dump)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return fmt(value, 3)


def _run_facts(report: Report) -> list[str]:
    """Optional facts the runner adds: the calibration/held-out split, errors, elapsed time."""
    wl, facts = report.workload, []
    if wl.heldout_n is not None:
        facts.append(f"calibration {wl.calibration_n or 0} / held-out {wl.heldout_n}")
    if report.errors:
        facts.append(f"{report.errors} failed requests (scored 0)")
    if report.elapsed_s is not None:
        facts.append(f"{fmt(report.elapsed_s, 0)} s")
    return facts


def render_html(
    report: Report,
    pareto_png: bytes,
    charts: list[tuple[str, bytes]],
    phases_png: bytes | None = None,
) -> str:
    """The whole report as one HTML string with every image inline."""
    entries = report.entries()
    rows = [
        {
            "label": e.label,
            "baseline": e.is_baseline,
            "mode": e.summary.mode or "",
            "cells": [fn(e.summary) for _, fn in COLUMNS],
        }
        for e in entries
    ]
    rec = report.recommendation
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=report.title,
            created=report.created,
            workload=report.workload,
            facts=_run_facts(report),
            models=report.models,
            notes=report.notes,
            columns=[c for c, _ in COLUMNS],
            rows=rows,
            summary_notes=[f"{e.label}: {e.summary.note}" for e in entries if e.summary.note],
            recommendation=(
                {
                    "headline": report.recommendation_headline(),
                    "rows": report.recommendation_rows(),
                    "findings": [str(f) for f in rec.get("findings") or []],
                }
                if rec
                else None
            ),
            phases=report.phase_rows(),
            phases_plot=data_uri(phases_png) if phases_png else None,
            pareto=data_uri(pareto_png),
            charts=[(name, data_uri(png)) for name, png in charts],
            calibration=_calibration_rows(report.calibration) if report.calibration else None,
        )
    )
