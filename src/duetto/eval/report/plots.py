"""The report's figures (matplotlib, imported here only): the cost/quality Pareto plot and one
bar chart per axis. Bare `Figure`s, no pyplot: no global backend state, rendered with Agg."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from duetto.eval.aggregate import pareto_front
from duetto.eval.report.model import NOT_ON_FRONT, Entry, Report, Summary, num

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _new_figure(w: float, h: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def pareto_figure(report: Report) -> Figure:
    """Cost vs quality with 95% CIs; the Pareto front over the deployable points."""
    # "best single model" is one of the single-model baselines again: the same point
    entries = [e for e in report.entries() if e.baseline != "best_single"]
    fig = _new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    xs = [num(e.summary.cost_usd_per_1k) for e in entries]
    ys = [num(e.summary.quality.mean) for e in entries]
    colors = _palette(len(entries))
    legend_done: set[bool] = set()
    for k, e in enumerate(entries):
        x, y = xs[k], ys[k]
        if math.isnan(x) or math.isnan(y):
            continue
        lo, hi = num(e.summary.quality.ci_low), num(e.summary.quality.ci_high)
        yerr = [[y - lo], [hi - y]] if not (math.isnan(lo) or math.isnan(hi)) else None
        base = e.is_baseline
        ax.errorbar(
            [x],
            [y],
            yerr=yerr,
            fmt="s" if base else "o",
            ms=8,
            capsize=4,
            color="0.45" if base else colors[k],
            mfc="white" if base else colors[k],
            mew=2,
            label=None if base in legend_done else ("baseline" if base else "strategy"),
        )
        legend_done.add(base)
        ax.annotate(
            f"{e.label} [baseline]" if base else e.label,
            (x, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
            color="0.3" if base else "black",
        )
    candidates = [
        (math.nan, math.nan) if e.baseline in NOT_ON_FRONT else (xs[k], ys[k])
        for k, e in enumerate(entries)
    ]
    front = pareto_front(candidates)
    if len(front) > 1:
        ax.plot(
            [xs[i] for i in front],
            [ys[i] for i in front],
            "--",
            color="tab:red",
            lw=1.2,
            zorder=0,
            label="Pareto front",
        )
    ax.set_xlabel("cost, USD per 1,000 requests")
    ax.set_ylabel("quality (mean, 95% bootstrap CI)")
    ax.set_title("Cost vs quality (baselines: hollow grey squares)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.1)
    ax.legend(fontsize=7, loc="best")
    return fig


_Getter = Callable[[Summary], float]
AXES: list[tuple[str, str, _Getter]] = [
    ("Quality", "mean score (95% CI)", lambda s: num(s.quality.mean)),
    ("Cost", "USD per 1,000 requests", lambda s: num(s.cost_usd_per_1k)),
    ("Remote bytes", "bytes sent per request", lambda s: num(s.remote_bytes_per_request)),
    ("Energy (estimate)", "joules per request", lambda s: num(s.energy_j_per_request)),
    ("Privacy leaks", "PII entities sent to untrusted models", lambda s: num(s.privacy_leaks)),
    ("LLM-call share", "share of requests calling the LLM", lambda s: num(s.llm_call_share)),
]


def axis_figures(report: Report) -> list[tuple[str, Figure]]:
    """One bar chart per axis (latency third: p50 and p95 side by side); baselines hatched."""
    entries = report.entries()
    labels = [e.short_label for e in entries]
    colors = [
        "0.7" if e.is_baseline else c for e, c in zip(entries, _palette(len(entries)), strict=True)
    ]
    hatches = ["//" if e.is_baseline else "" for e in entries]
    figs: list[tuple[str, Figure]] = []
    for title, unit, get in AXES:
        fig, ax = _bar_axes(len(entries))
        values = [get(e.summary) for e in entries]
        bars = ax.bar(
            range(len(entries)),
            [0 if math.isnan(v) else v for v in values],
            color=colors,
            yerr=_quality_errors(entries) if title == "Quality" else None,
            capsize=3,
            edgecolor="0.3",
        )
        for bar, h in zip(bars, hatches, strict=True):
            bar.set_hatch(h)
        _finish_bars(ax, labels, title, unit)
        figs.append((title, fig))
    fig, ax = _bar_axes(len(entries))
    idx = range(len(entries))
    for shift, key, color in ((-0.2, "p50", "tab:blue"), (0.2, "p95", "tab:orange")):
        values = [num(e.summary.latency_ms.get(key)) for e in entries]
        ax.bar(
            [i + shift for i in idx],
            [0 if math.isnan(v) else v for v in values],
            0.4,
            label=key,
            color=color,
        )
    ax.legend(fontsize=8)
    _finish_bars(ax, labels, "Latency", "milliseconds per request")
    figs.insert(2, ("Latency", fig))
    return figs


def _quality_errors(entries: list[Entry]) -> list[list[float]]:
    lows, highs = [], []
    for e in entries:
        q = e.summary.quality
        m, lo, hi = num(q.mean), num(q.ci_low), num(q.ci_high)
        ok = not any(math.isnan(v) for v in (m, lo, hi))
        lows.append(m - lo if ok else 0.0)
        highs.append(hi - m if ok else 0.0)
    return [lows, highs]


def _bar_axes(n: int) -> tuple[Figure, Any]:
    fig = _new_figure(max(4.0, 0.9 * n + 1.5), 3.4)
    return fig, fig.add_subplot()


def _finish_bars(ax: Any, labels: list[str], title: str, unit: str) -> None:
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(unit, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
