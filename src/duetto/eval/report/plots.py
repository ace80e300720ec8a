"""The report's figures (matplotlib, imported here only): the cost/quality plot (curves over
thresholds, labels placed by `labels`), the staged rollout across phases and one bar chart per
axis. Bare `Figure`s, no pyplot: no global backend state, rendered with Agg."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from duetto.eval.aggregate import pareto_front
from duetto.eval.report.labels import Label, place_labels
from duetto.eval.report.model import NOT_ON_FRONT, Entry, Quality, Report, Summary, num

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure


DPI = 110  # figures are drawn and saved at one resolution: label boxes are PNG pixels


def png(fig: Figure, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def _new_figure(w: float, h: float, layout: Literal["constrained"] | None = None) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # a renderer to measure text with
    return fig


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _curve(report: Report, name: str) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """A thresholded strategy's operating points over its thresholds on the calibration split,
    as (cost per 1k, quality) by LLM share, and its calibrated point; empty when not recorded."""
    c = (report.calibration or {}).get(name)
    if not isinstance(c, Mapping):
        return [], (math.nan, math.nan)
    pts = sorted(
        (num(p.get("llm_share")), num(p.get("cost_per_1k")), num(p.get("quality")))
        for p in c.get("curve") or []
        if isinstance(p, Mapping)
    )
    curve = [(x, y) for _, x, y in pts if not (math.isnan(x) or math.isnan(y))]
    return curve, (num(c.get("calib_cost_per_1k")), num(c.get("calib_quality")))


def pareto_figure(report: Report) -> tuple[Figure, list[dict[str, Any]]]:
    """Cost vs quality: every strategy and baseline measured on held-out traffic (95% CI), each
    thresholded strategy's curve over its thresholds (calibration split) with the calibrated
    threshold starred, the Pareto front; labels placed clear of each other. Returns the figure
    and the drawn label boxes in pixels of the saved PNG (origin top left; save with
    `png(fig, tight=False)`)."""
    from matplotlib.lines import Line2D

    # "best single model" is one of the single-model baselines again: the same point
    entries = [e for e in report.entries() if e.baseline != "best_single"]
    fig = _new_figure(9.0, 5.6, layout="constrained")
    ax = fig.add_subplot()
    xs = [num(e.summary.cost_usd_per_1k) for e in entries]
    ys = [num(e.summary.quality.mean) for e in entries]
    colors = _palette(sum(not e.is_baseline for e in entries))
    labels: list[Label] = []
    stars: list[tuple[float, float]] = []
    bars: list[tuple[float, float, float]] = []
    drew_curve = False
    for k, e in enumerate(entries):
        x, y = xs[k], ys[k]
        color = "0.45" if e.is_baseline else colors[k]
        curve, calibrated = (
            ([], (math.nan, math.nan)) if e.is_baseline else _curve(report, e.summary.name)
        )
        if len(curve) > 1:
            ax.plot(*zip(*curve, strict=True), "-", color=color, lw=1.1, alpha=0.55, zorder=1,
                    gid=f"curve {e.summary.name}")  # fmt: skip
            drew_curve = True
        if not any(math.isnan(v) for v in calibrated):
            ax.plot(*calibrated, "*", ms=12, color=color, mec="black", mew=0.5, zorder=3,
                    gid=f"calibrated {e.summary.name}")  # fmt: skip
            stars.append(calibrated)
        if math.isnan(x) or math.isnan(y):
            continue
        lo, hi = num(e.summary.quality.ci_low), num(e.summary.quality.ci_high)
        yerr = [[y - lo], [hi - y]] if not (math.isnan(lo) or math.isnan(hi)) else None
        if yerr is not None:
            bars.append((x, lo, hi))
        base = e.is_baseline
        ax.errorbar(
            [x], [y], yerr=yerr, fmt="s" if base else "o", ms=7, capsize=3, color=color,
            mfc="white" if base else color, mew=1.6, zorder=2,
        )  # fmt: skip
        labels.append(Label(e.label, x, y, "0.35" if base else "black"))
    candidates = [
        (math.nan, math.nan) if e.baseline in NOT_ON_FRONT else (xs[k], ys[k])
        for k, e in enumerate(entries)
    ]
    front = pareto_front(candidates)
    if len(front) > 1:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="tab:red", lw=1.0,
                zorder=0)  # fmt: skip
    ax.set_xlabel("cost, USD per 1,000 requests")
    ax.set_ylabel("quality (mean, 95% bootstrap CI)")
    ax.set_title("Cost vs quality")
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.12)
    handles = [
        Line2D([], [], marker="o", ls="", color="0.2", label="strategy, held-out (95% CI)"),
        Line2D([], [], marker="s", ls="", color="0.45", mfc="white", label="baseline, held-out"),
    ]
    if drew_curve:
        handles.append(Line2D([], [], color="0.3", label="over its thresholds (calibration)"))
    if stars:
        handles.append(Line2D([], [], marker="*", ms=10, ls="", color="0.3", mec="black",
                              mew=0.5, label="calibrated threshold"))  # fmt: skip
    if len(front) > 1:
        handles.append(Line2D([], [], ls="--", color="tab:red", label="Pareto front"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.draw_without_rendering()  # lay out once, then freeze: labels are placed in pixels
    fig.set_layout_engine("none")
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    boxes = place_labels(ax, labels, extra_points=stars, error_bars=bars)
    height = fig.bbox.height
    drawn = [
        {"text": lab.text, "box": [b[0], height - b[3], b[2], height - b[1]]}
        for lab, b in zip(labels, boxes, strict=True)
    ]
    return fig, drawn


def phases_figure(report: Report) -> Figure | None:
    """The staged rollout, phase by phase: LLM-call share, cost per 1,000 requests and quality
    with its 95% CI (phases marked `estimate` were measured on the audit, hatched)."""
    if not report.phases:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = [str(p.get("name", "")) for p in report.phases]
    est = [bool(p.get("estimate")) for p in report.phases]
    share = [num(p.get("llm_call_share")) for p in report.phases]
    cost = [
        num(p.get("cost_usd")) / n * 1000 if (n := num(p.get("requests"))) > 0 else math.nan
        for p in report.phases
    ]
    qs = [Quality.from_dict(p.get("quality")) for p in report.phases]
    fig = _new_figure(max(9.0, 1.6 * len(names) * 3 / 2), 3.3, layout="constrained")
    axes = fig.subplots(1, 3)
    idx = list(range(len(names)))
    colors = ["0.75" if e else "tab:blue" for e in est]
    for ax, values, title, unit, text in (
        (axes[0], [v * 100 for v in share], "LLM-call share", "% of requests", "{:.0f}%"),
        (axes[1], cost, "Cost", "USD per 1,000 requests", "{:.4f}"),
    ):
        shown = [0 if math.isnan(v) else v for v in values]
        bars = ax.bar(idx, shown, color=colors, edgecolor="0.3")
        for bar, e in zip(bars, est, strict=True):
            bar.set_hatch("//" if e else "")
        ax.bar_label(bars, [text.format(v) for v in shown], fontsize=7, padding=2)
        ax.margins(y=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
    ax = axes[2]
    for i, q in enumerate(qs):
        m, lo, hi = num(q.mean), num(q.ci_low), num(q.ci_high)
        if math.isnan(m):
            continue
        err = None if math.isnan(lo) or math.isnan(hi) else [[m - lo], [hi - m]]
        ax.errorbar([i], [m], yerr=err, fmt="o", capsize=4, color=colors[i], mec="0.3")
    handles: list[Artist] = [
        Patch(facecolor="tab:blue", edgecolor="0.3", label="measured on the phase's traffic")
    ]
    if any(est):
        handles.append(
            Patch(facecolor="0.75", edgecolor="0.3", hatch="//", label="estimate on the gold audit")
        )
    ref = next((num(p["llm_only_quality"]) for p in report.phases if "llm_only_quality" in p), None)
    if ref is not None and not math.isnan(ref):
        ax.axhline(ref, ls="--", lw=1, color="tab:red")
        handles.append(Line2D([], [], ls="--", color="tab:red", label="LLM-only quality, held-out"))
    ax.set_title("Quality (95% CI)", fontsize=10)
    ax.set_ylabel("mean score", fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    for ax in axes:
        ax.set_xticks(idx)
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
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
