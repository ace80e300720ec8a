"""The report in the terminal: one rich table, narrow enough for 80 columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from duetto.eval.report.model import Report, fmt

if TYPE_CHECKING:
    from rich.console import Console


def print_summary(report: Report, console: Console | None = None) -> None:
    """One rich table: every strategy and baseline on every axis."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if report.phases:
        phases = Table(title="staged rollout", box=box.SIMPLE_HEAD, pad_edge=False)
        phases.add_column("phase", no_wrap=True)
        for col in ("requests", "LLM", "USD", "quality (CI)"):
            phases.add_column(col, justify="right", no_wrap=True)
        for p in report.phase_rows():
            phases.add_row(p["name"], p["requests"], p["llm"], p["cost"], p["quality"])
        console.print(phases)
    table = Table(title=report.title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    # Narrow enough for an 80-column terminal: the HTML report has every axis in full.
    table.add_column("strategy", min_width=12, overflow="fold")
    for col in ("quality (CI)", "LLM", "$/1k", "ms p50/p95", "B/req", "J/req", "leaks"):
        table.add_column(col, justify="right", no_wrap=True)
    for e in report.entries():
        s, q, lat = e.summary, e.summary.quality, e.summary.latency_ms
        ci = f"{fmt(q.ci_low, 2)}-{fmt(q.ci_high, 2)}".replace("0.", ".")
        table.add_row(
            f"[dim]{e.short_label}[/dim]" if e.is_baseline else e.label,
            f"{fmt(q.mean, 2)} {ci}",
            fmt(s.llm_call_share, pct=True),
            fmt(s.cost_usd_per_1k, 3),
            f"{fmt(lat.get('p50'), 0)}/{fmt(lat.get('p95'), 0)}".replace(",", ""),
            fmt(s.remote_bytes_per_request, 0).replace(",", ""),
            fmt(s.energy_j_per_request, 1),
            str(s.privacy_leaks),
        )
    console.print(table)
    console.print(
        "* baseline · quality: mean and 95% bootstrap CI · LLM: share of requests "
        "calling the LLM · leaks: PII entities sent to untrusted models · J: estimate"
    )
    if report.recommendation:
        console.print(f"Recommendation: {report.recommendation_headline()}", highlight=False)
        for finding in report.recommendation.get("findings") or []:
            console.print(f"  - {finding}", highlight=False)
