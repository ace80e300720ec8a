"""The evaluation report: report.json, pareto.png and a self-contained report.html.

The report dict:
    {"title", "created", "workload": {"name", "n"}, "models": [ModelCard.to_dict()...],
     "notes": [str], "strategies": [summary...],
     "baselines": {"slm_only": summary, "llm_only": summary, "random": summary, "oracle": summary},
     "recommendation": {...} | None, "calibration": {...} (optional)}
where a summary is `duetto.eval.aggregate.summarize_strategy(...)`. The HTML opens offline: inline
CSS, plots embedded as base64 PNG, no external resource. matplotlib is imported when writing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duetto.eval.aggregate import pareto_front

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

BASELINE_LABELS = {
    "slm_only": "SLM only",
    "llm_only": "LLM only",
    "random": "random (equal LLM share)",
    "oracle": "oracle",
}
# The oracle is an upper bound nobody can deploy: it is drawn, but the Pareto front ignores it.
_NOT_ON_FRONT = {"oracle"}


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, pareto.png and report.html into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "pareto": out_dir / "pareto.png",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(
        json.dumps(_json_safe(report), indent=2, default=str) + "\n", encoding="utf-8"
    )
    pareto_png = _png(_pareto_figure(report))
    paths["pareto"].write_bytes(pareto_png)
    charts = [(title, _png(fig)) for title, fig in _axis_figures(report)]
    paths["html"].write_text(render_html(report, pareto_png, charts), encoding="utf-8")
    return paths


def print_summary(report: dict[str, Any], console: Console | None = None) -> None:
    """One rich table: every strategy and baseline on every axis."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=str(report.get("title") or "duetto evaluation"),
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    # Narrow enough for an 80-column terminal: the HTML report has every axis in full.
    table.add_column("strategy", min_width=12, overflow="fold")
    for col in ("quality (CI)", "LLM", "$/1k", "ms p50/p95", "B/req", "J/req", "leaks"):
        table.add_column(col, justify="right", no_wrap=True)
    for label, s, is_baseline in _entries(report):
        q = s.get("quality") or {}
        lat = s.get("latency_ms") or {}
        ci = f"{_fmt(q.get('ci_low'), 2)}-{_fmt(q.get('ci_high'), 2)}".replace("0.", ".")
        table.add_row(
            f"[dim]{label.replace(' [baseline]', '*')}[/dim]" if is_baseline else label,
            f"{_fmt(q.get('mean'), 2)} {ci}",
            _fmt(s.get("llm_call_share"), pct=True),
            _fmt(s.get("cost_usd_per_1k"), 3),
            f"{_fmt(lat.get('p50'), 0)}/{_fmt(lat.get('p95'), 0)}".replace(",", ""),
            _fmt(s.get("remote_bytes_per_request"), 0).replace(",", ""),
            _fmt(s.get("energy_j_per_request"), 1),
            str(s.get("privacy_leaks", 0)),
        )
    console.print(table)
    console.print(
        "* baseline · quality: mean and 95% bootstrap CI · LLM: share of requests "
        "calling the LLM · leaks: PII entities sent to untrusted models · J: estimate"
    )
    rec = report.get("recommendation")
    if rec:
        console.print(f"Recommendation: {_recommendation_headline(rec)}")


# --- data helpers -----------------------------------------------------------------------------


def _entries(report: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, summary, is_baseline) for every strategy, then every baseline."""
    out = [(str(s.get("name")), s, False) for s in report.get("strategies", [])]
    for key, s in (report.get("baselines") or {}).items():
        if s:
            out.append((BASELINE_LABELS.get(key, key) + " [baseline]", s, True))
    return out


def _json_safe(x: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); tuples become lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _val(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def _fmt(x: Any, digits: int = 3, pct: bool = False) -> str:
    v = _val(x)
    if math.isnan(v):
        return "–"
    if pct:
        return f"{v * 100:.0f}%"
    return f"{v:,.{digits}f}"


def _quality_text(s: dict[str, Any]) -> str:
    q = s.get("quality") or {}
    return f"{_fmt(q.get('mean'))} [{_fmt(q.get('ci_low'))}, {_fmt(q.get('ci_high'))}]"


def _recommendation_headline(rec: dict[str, Any]) -> str:
    name = rec.get("strategy") or rec.get("name")
    reason = rec.get("reason") or rec.get("text") or rec.get("summary")
    parts = [str(name)] if name else []
    if reason:
        parts.append(str(reason))
    return " — ".join(parts) if parts else json.dumps(_json_safe(rec), default=str)


# --- plots ------------------------------------------------------------------------------------


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _new_figure(w: float, h: float) -> Figure:
    # A bare Figure (no pyplot): no global backend state, renders with Agg.
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _pareto_figure(report: dict[str, Any]) -> Figure:
    entries = _entries(report)
    fig = _new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    xs = [_val(s.get("cost_usd_per_1k")) for _, s, _ in entries]
    ys = [_val((s.get("quality") or {}).get("mean")) for _, s, _ in entries]
    colors = _palette(len(entries))
    legend_done: set[bool] = set()
    for k, (label, s, is_baseline) in enumerate(entries):
        x, y = xs[k], ys[k]
        if math.isnan(x) or math.isnan(y):
            continue
        q = s.get("quality") or {}
        lo, hi = _val(q.get("ci_low")), _val(q.get("ci_high"))
        yerr = [[y - lo], [hi - y]] if not (math.isnan(lo) or math.isnan(hi)) else None
        ax.errorbar(
            [x],
            [y],
            yerr=yerr,
            fmt="s" if is_baseline else "o",
            ms=8,
            capsize=4,
            color="0.45" if is_baseline else colors[k],
            mfc="white" if is_baseline else colors[k],
            mew=2,
            label=None
            if is_baseline in legend_done
            else ("baseline" if is_baseline else "strategy"),
        )
        legend_done.add(is_baseline)
        ax.annotate(
            label,
            (x, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
            color="0.3" if is_baseline else "black",
        )
    candidates = [
        (xs[k], ys[k]) if not _is_key(report, s, _NOT_ON_FRONT) else (math.nan, math.nan)
        for k, (_, s, _) in enumerate(entries)
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


def _is_key(report: dict[str, Any], summary: dict[str, Any], keys: set[str]) -> bool:
    baselines = report.get("baselines") or {}
    return any(baselines.get(k) is summary for k in keys)


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


_Getter = Callable[[dict[str, Any]], float]
_AXES: list[tuple[str, str, _Getter]] = [
    ("Quality", "mean score (95% CI)", lambda s: _val((s.get("quality") or {}).get("mean"))),
    ("Cost", "USD per 1,000 requests", lambda s: _val(s.get("cost_usd_per_1k"))),
    ("Remote bytes", "bytes sent per request", lambda s: _val(s.get("remote_bytes_per_request"))),
    ("Energy (estimate)", "joules per request", lambda s: _val(s.get("energy_j_per_request"))),
    (
        "Privacy leaks",
        "PII entities sent to untrusted models",
        lambda s: _val(s.get("privacy_leaks")),
    ),
    (
        "LLM-call share",
        "share of requests calling the LLM",
        lambda s: _val(s.get("llm_call_share")),
    ),
]


def _axis_figures(report: dict[str, Any]) -> list[tuple[str, Figure]]:
    entries = _entries(report)
    labels = [label.replace(" [baseline]", "*") for label, _, _ in entries]
    colors = [
        "0.7" if b else c for (_, _, b), c in zip(entries, _palette(len(entries)), strict=True)
    ]
    hatches = ["//" if b else "" for _, _, b in entries]
    figs: list[tuple[str, Figure]] = []
    for title, unit, get in _AXES:
        fig, ax = _bar_axes(len(entries))
        values = [get(s) for _, s, _ in entries]
        yerr = None
        if title == "Quality":
            yerr = _quality_errors(entries)
        bars = ax.bar(
            range(len(entries)),
            [0 if math.isnan(v) else v for v in values],
            color=colors,
            yerr=yerr,
            capsize=3,
            edgecolor="0.3",
        )
        for bar, h in zip(bars, hatches, strict=True):
            bar.set_hatch(h)
        _finish_bars(ax, labels, title, unit)
        figs.append((title, fig))
    # Latency: p50 and p95 side by side.
    fig, ax = _bar_axes(len(entries))
    idx = range(len(entries))
    p50 = [_val(s["latency_ms"].get("p50")) for _, s, _ in entries]
    p95 = [_val(s["latency_ms"].get("p95")) for _, s, _ in entries]
    ax.bar(
        [i - 0.2 for i in idx],
        [0 if math.isnan(v) else v for v in p50],
        0.4,
        label="p50",
        color="tab:blue",
    )
    ax.bar(
        [i + 0.2 for i in idx],
        [0 if math.isnan(v) else v for v in p95],
        0.4,
        label="p95",
        color="tab:orange",
    )
    ax.legend(fontsize=8)
    _finish_bars(ax, labels, "Latency", "milliseconds per request")
    figs.insert(2, ("Latency", fig))
    return figs


def _quality_errors(entries: list[tuple[str, dict[str, Any], bool]]) -> list[list[float]]:
    lows, highs = [], []
    for _, s, _ in entries:
        q = s.get("quality") or {}
        m, lo, hi = _val(q.get("mean")), _val(q.get("ci_low")), _val(q.get("ci_high"))
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


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.baseline td{background:#f8f8f8;color:#555;font-style:italic}
.badge{font-size:11px;background:#888;color:#fff;border-radius:3px;padding:0 4px;font-style:normal}
.meta{color:#555}.charts{display:flex;flex-wrap:wrap;gap:1em}.charts img{max-width:100%}
.rec{background:#eef6ee;border-left:4px solid #4a4;padding:.6em 1em}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
"""

_COLUMNS = [
    ("quality [95% CI]", _quality_text),
    ("LLM share", lambda s: _fmt(s.get("llm_call_share"), pct=True)),
    ("cost USD", lambda s: _fmt(s.get("cost_usd"), 5)),
    ("USD / 1k req", lambda s: _fmt(s.get("cost_usd_per_1k"), 4)),
    ("latency p50 ms", lambda s: _fmt(s["latency_ms"].get("p50"), 0)),
    ("latency p95 ms", lambda s: _fmt(s["latency_ms"].get("p95"), 0)),
    ("TTFT p50 ms", lambda s: _fmt(s["ttft_ms"].get("p50"), 0)),
    ("TTFT p95 ms", lambda s: _fmt(s["ttft_ms"].get("p95"), 0)),
    ("remote bytes", lambda s: _fmt(s.get("remote_bytes"), 0)),
    ("remote B / req", lambda s: _fmt(s.get("remote_bytes_per_request"), 0)),
    ("energy J (est.)", lambda s: _fmt(s.get("energy_j"), 1)),
    ("J / req (est.)", lambda s: _fmt(s.get("energy_j_per_request"), 2)),
    ("PII leaks", lambda s: str(s.get("privacy_leaks", 0))),
    ("leak rate", lambda s: _fmt(s.get("leak_rate"), pct=True)),
    ("n", lambda s: str(s.get("n", ""))),
]


def _e(x: Any) -> str:
    # "://" as an entity: a URL quoted in text (e.g. a price source) reads the same but can
    # never be mistaken for a resource this offline file would fetch.
    return html.escape(str(x), quote=True).replace("://", "&#58;//")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def render_html(report: dict[str, Any], pareto_png: bytes, charts: list[tuple[str, bytes]]) -> str:
    """The whole report as one HTML string with every image inline."""
    title = str(report.get("title") or "duetto evaluation")
    wl = report.get("workload") or {}
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Created {_e(report.get("created", ""))} · workload '
        f"<b>{_e(wl.get('name', ''))}</b>, n = {_e(wl.get('n', ''))}{_run_facts(report)}</p>",
        _models_line(report.get("models") or []),
        _models_html(report.get("models") or []),
    ]
    notes = report.get("notes") or []
    if notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts += [
        "<h2>Summary</h2>",
        _summary_table(report),
        _summary_notes(report),
        '<p class="meta">Energy figures are estimates. Baselines are in grey italics. '
        "Privacy leaks count PII entities of the user's input sent to untrusted models."
        "</p>",
        "<h2>Recommendation</h2>",
        _recommendation_html(report.get("recommendation")),
        "<h2>Cost vs quality</h2>",
        _img(pareto_png, "cost versus quality, Pareto front"),
        "<h2>Per axis</h2>",
        '<div class="charts">',
    ]
    parts += [f"<div>{_img(png, name)}</div>" for name, png in charts]
    parts.append('</div><p class="meta">* baseline (hatched grey bars)</p>')
    if report.get("calibration"):
        parts += ["<h2>Calibration</h2>", _kv_html(report["calibration"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def _run_facts(report: dict[str, Any]) -> str:
    """Optional facts the runner adds: the calibration/held-out split, errors, elapsed time."""
    wl = report.get("workload") or {}
    facts = []
    if wl.get("heldout_n") is not None:
        facts.append(f"calibration {wl.get('calibration_n', 0)} / held-out {wl['heldout_n']}")
    if report.get("errors"):
        facts.append(f"{report['errors']} failed requests (scored 0)")
    if report.get("elapsed_s") is not None:
        facts.append(f"{report['elapsed_s']} s")
    return "".join(f" · {_e(f)}" for f in facts)


def _summary_notes(report: dict[str, Any]) -> str:
    """Notes attached to single summaries (e.g. the LLM share of the random baseline)."""
    notes = [
        f"{label.replace(' [baseline]', '')}: {s['note']}"
        for label, s, _ in _entries(report)
        if s.get("note")
    ]
    if not notes:
        return ""
    return '<ul class="meta">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"


def _models_line(models: list[dict[str, Any]]) -> str:
    """One line naming each model, where it runs, and its label (e.g. an offline stand-in)."""
    if not models:
        return ""
    parts = []
    for m in models:
        desc = f"{m.get('location', '')}{', ' + str(m['label']) if m.get('label') else ''}"
        parts.append(f"<b>{_e(m.get('name', ''))}</b> ({_e(desc)})")
    return f'<p class="meta">Models: {" · ".join(parts)}</p>'


def _models_html(models: list[dict[str, Any]]) -> str:
    if not models:
        return ""
    rows = []
    for m in models:
        where = f"{m.get('location', '')}, {'trusted' if m.get('trusted') else 'untrusted'}"
        price = f"{_fmt(m.get('price_in_per_mtok'), 2)} / {_fmt(m.get('price_out_per_mtok'), 2)}"
        rows.append(
            f'<tr><td class="l">{_e(m.get("name", ""))}</td><td class="l">{_e(where)}'
            f'</td><td class="l">{_e(m.get("label", ""))}</td><td>{_e(price)}</td>'
            f'<td class="l">{_e(m.get("source", ""))}</td></tr>'
        )
    head = (
        '<tr><th class="l">model</th><th class="l">where</th><th class="l">label</th>'
        '<th>USD per Mtok in / out</th><th class="l">source of figures</th></tr>'
    )
    return f"<h2>Models</h2><table>{head}{''.join(rows)}</table>"


def _summary_table(report: dict[str, Any]) -> str:
    head = (
        '<tr><th class="l">strategy</th><th class="l">mode</th>'
        + "".join(f"<th>{_e(c)}</th>" for c, _ in _COLUMNS)
        + "</tr>"
    )
    rows = []
    for label, s, is_baseline in _entries(report):
        name = label.replace(" [baseline]", "")
        badge = ' <span class="badge">baseline</span>' if is_baseline else ""
        cells = "".join(f"<td>{_e(fn(s))}</td>" for _, fn in _COLUMNS)
        cls = ' class="baseline"' if is_baseline else ""
        rows.append(
            f'<tr{cls}><td class="l">{_e(name)}{badge}</td>'
            f'<td class="l">{_e(s.get("mode") or "")}</td>{cells}</tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _recommendation_html(rec: dict[str, Any] | None) -> str:
    if not rec:
        return '<p class="meta">No recommendation for this run.</p>'
    return (
        f'<div class="rec"><p><b>{_e(_recommendation_headline(rec))}</b></p>{_kv_html(rec)}</div>'
    )


def _kv_html(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        text = (
            json.dumps(_json_safe(v), indent=1, default=str)
            if isinstance(v, dict | list)
            else str(v)
        )
        cell = f"<pre>{_e(text)}</pre>" if isinstance(v, dict | list) else _e(text)
        rows.append(f'<tr><th class="l">{_e(k)}</th><td class="l">{cell}</td></tr>')
    return f"<table>{''.join(rows)}</table>"
