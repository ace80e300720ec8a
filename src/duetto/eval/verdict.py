"""What the staged rollout concludes, from per-request records (pure: no models, no I/O).

- `paired_delta`: the paired bootstrap of (strategy − LLM-only) quality per request;
- `recommend`: the recommendation block of report.json (`name`, `llm_call_share`,
  `cost_fraction_of_llm_only`, `llm_only_quality`, `quality_delta_ci`, `non_inferior`, …) and the
  same in words with rounded numbers;
- `oos_handling`: the share of out-of-scope queries escalated to the LLM or refused locally;
- `headroom`: per task, what each model gets right and what LLM-only spends there, which says
  where a check cannot be met with these models and why.

A record is one dict per (strategy, request) as `duetto.eval.runner.record` makes it, plus
`task`, `answer` and `oos` where the rollout knows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from duetto.stats import bootstrap

NON_INFERIORITY_MARGIN = 0.05  # of LLM-only quality
MAX_LLM_CALL_SHARE = 0.5
MAX_COST_FRACTION = 0.6
OOS_TARGET = 0.9
OUT_OF_SCOPE = "out_of_scope"

Record = Mapping[str, Any]


def _by_item(records: Sequence[Record]) -> dict[str, Record]:
    return {str(r["item_id"]): r for r in records}


def _q(r: Record) -> float:
    v = r.get("quality")
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def paired_delta(
    strategy: Sequence[Record], llm_only: Sequence[Record], *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """(mean, ci_low, ci_high, n) of strategy − LLM-only quality over the requests both
    answered, paired by request (95% percentile bootstrap, duetto.stats)."""
    a, b = _by_item(strategy), _by_item(llm_only)
    ids = [i for i in a if i in b]
    if not ids:
        return math.nan, math.nan, math.nan, 0
    d = np.array([_q(a[i]) - _q(b[i]) for i in ids], dtype=float)
    if len(d) == 1:
        return float(d[0]), float(d[0]), float(d[0]), 1
    lo, hi = bootstrap(lambda idx: d[idx].mean(), len(d), n_boot=n_boot, seed=seed)
    return float(d.mean()), float(lo), float(hi), len(d)


def non_inferior(
    ci_low: float, llm_only_quality: float, margin: float = NON_INFERIORITY_MARGIN
) -> bool:
    """The paired CI's lower bound is above −margin × LLM-only quality."""
    return bool(math.isfinite(ci_low) and ci_low >= -margin * llm_only_quality)


def oos_handling(records: Sequence[Record]) -> dict[str, Any]:
    """Out-of-scope queries (records with `oos`): escalated to the LLM, or refused locally
    (answered out_of_scope without the LLM)."""
    oos = [r for r in records if r.get("oos")]
    escalated = sum(1 for r in oos if (r.get("llm_calls") or 0) > 0)
    refused = sum(
        1
        for r in oos
        if not (r.get("llm_calls") or 0) and OUT_OF_SCOPE in str(r.get("answer") or "").lower()
    )
    n = len(oos)
    share = (escalated + refused) / n if n else math.nan
    return {
        "n": n,
        "escalated": escalated,
        "refused": refused,
        "share": share,
        "target": OOS_TARGET,
        "met": bool(n and share >= OOS_TARGET),
    }


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else math.nan


def recommend(
    name: str,
    summary: Mapping[str, Any],
    records: Sequence[Record],
    llm_only_summary: Mapping[str, Any],
    llm_only_records: Sequence[Record],
    *,
    chosen_on: str = "",
) -> dict[str, Any]:
    """The recommendation block of report.json for strategy `name` against LLM-only."""
    llm_q = float(llm_only_summary["quality"]["mean"] or 0.0)
    cost_llm = float(llm_only_summary.get("cost_usd") or 0.0)
    cost = float(summary.get("cost_usd") or 0.0)
    mean, lo, hi, n = paired_delta(records, llm_only_records)
    share = summary.get("llm_call_share")
    frac = cost / cost_llm if cost_llm > 0 else math.nan
    ni = non_inferior(lo, llm_q)
    rec: dict[str, Any] = {
        "name": name,
        "strategy": name,  # the older key, read by `duetto eval` reports
        "mode": summary.get("mode"),
        "chosen_on": chosen_on,
        "n": n,
        "quality": dict(summary["quality"]),
        "llm_only_quality": llm_q,
        "quality_delta": mean,
        "quality_delta_ci": [lo, hi],
        "non_inferiority_margin": NON_INFERIORITY_MARGIN * llm_q,
        "non_inferior": ni,
        "llm_call_share": share,
        "cost_usd": cost,
        "llm_only_cost_usd": cost_llm,
        "cost_fraction_of_llm_only": frac,
        "checks": {
            "non_inferior": ni,
            f"llm_call_share<={MAX_LLM_CALL_SHARE:g}": bool(
                share is not None and share <= MAX_LLM_CALL_SHARE
            ),
            f"cost_fraction<={MAX_COST_FRACTION:g}": bool(
                math.isfinite(frac) and frac <= MAX_COST_FRACTION
            ),
        },
        "oos": oos_handling(records),
    }
    rec["text"] = recommendation_text(rec)
    return rec


def _pct(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(v) else f"{v * 100:.0f}%"


def _num(x: Any, digits: int = 2) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def recommendation_text(rec: Mapping[str, Any]) -> str:
    """The recommendation in one or two sentences with rounded numbers."""
    q = rec["quality"]
    lo, hi = rec["quality_delta_ci"]
    verdict = (
        "non-inferior to LLM-only" if rec["non_inferior"] else "NOT shown non-inferior to LLM-only"
    )
    text = (
        f"Use {rec['name']}: it calls the LLM on {_pct(rec['llm_call_share'])} of requests at "
        f"{_pct(rec['cost_fraction_of_llm_only'])} of LLM-only's cost, with quality "
        f"{_num(q.get('mean'))} (95% CI {_num(q.get('ci_low'))}–{_num(q.get('ci_high'))}) "
        f"against LLM-only's {_num(rec['llm_only_quality'])}. Per request, the difference is "
        f"{_num(rec['quality_delta'], 3)} (paired 95% CI {_num(lo, 3)} to {_num(hi, 3)}): "
        f"{verdict} at a margin of {_num(rec['non_inferiority_margin'], 3)}."
    )
    oos = rec.get("oos") or {}
    if oos.get("n"):
        text += (
            f" {_pct(oos['share'])} of {oos['n']} out-of-scope queries were escalated or "
            f"refused (target {_pct(oos['target'])})."
        )
    return text


def headroom(
    records: Mapping[str, Sequence[Record]], names: Sequence[str] = ("llm_only", "slm_only")
) -> list[dict[str, Any]]:
    """Per task: each named strategy's quality, and LLM-only's share of requests and of cost
    there (where the LLM bill goes, and whether the LLM earns it)."""
    llm = records.get("llm_only", ())
    total_cost = sum(float(r.get("cost_usd") or 0.0) for r in llm) or math.nan
    tasks = sorted({str(r.get("task")) for r in llm})
    out = []
    for task in tasks:
        row: dict[str, Any] = {"task": task}
        for name in names:
            rs = [r for r in records.get(name, ()) if str(r.get("task")) == task]
            row[name] = _mean([_q(r) for r in rs])
        rs = [r for r in llm if str(r.get("task")) == task]
        row["requests"] = len(rs)
        row["llm_only_cost_share"] = sum(float(r.get("cost_usd") or 0.0) for r in rs) / total_cost
        out.append(row)
    return out


def passed_over(chosen: str, estimates: Mapping[str, Mapping[str, Any]]) -> str:
    """Why the candidates below the LLM-share cap were not promoted, from their audit estimates
    (quality, share, paired CI against LLM-only, out-of-scope handling); "" if there were none."""
    parts = []
    for name, e in estimates.items():
        share = e.get("llm_call_share")
        if name == chosen or share is None or share > MAX_LLM_CALL_SHARE:
            continue
        lo, hi = e.get("quality_delta_ci") or (math.nan, math.nan)
        why = []
        if not e.get("non_inferior"):
            why.append(f"paired CI {_num(lo, 3)} to {_num(hi, 3)} not shown non-inferior")
        if (e.get("oos") or {}).get("n") and not e["oos"].get("met"):
            why.append(f"{_pct(e['oos']['share'])} of out-of-scope queries escalated or refused")
        q = (e.get("quality") or {}).get("mean")
        parts.append(
            f"{name} ({_pct(share)} LLM calls, quality {_num(q)}"
            + (f": {'; '.join(why)}" if why else "")
            + ")"
        )
    if not parts:
        return ""
    return "On the gold audit, the candidates under the cap were: " + ", ".join(parts) + "."


def findings(
    rec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], passed: str = ""
) -> list[str]:
    """One sentence per check the recommendation misses, with the measured figures and where
    the headroom is (per task: the LLM's and the SLM's quality, LLM-only's share of cost);
    `passed`: why cheaper candidates were not promoted (`passed_over`)."""
    out: list[str] = []
    llm_q = float(rec["llm_only_quality"] or 0.0)
    lo, hi = rec["quality_delta_ci"]
    per_task = "; ".join(
        f"{r['task']}: LLM {_num(r.get('llm_only'))}, SLM {_num(r.get('slm_only'))}, "
        f"{rec['name']} {_num(r.get(rec['name']))}, {_pct(r['llm_only_cost_share'])} of "
        "LLM-only's cost"
        for r in rows
    )
    if not rec["non_inferior"]:
        out.append(
            f"Non-inferiority not shown: the paired CI's lower bound {_num(lo, 3)} is below "
            f"−{_num(rec['non_inferiority_margin'], 3)} (5% of LLM-only's {_num(llm_q)}); with "
            f"{rec['n']} held-out requests the paired CI is {_num(hi - lo, 3)} wide, so only a "
            "strategy clearly better than LLM-only can pass. Per task: " + per_task + "."
        )
    checks = rec["checks"]
    if not checks[f"llm_call_share<={MAX_LLM_CALL_SHARE:g}"]:
        out.append(
            f"LLM call share {_pct(rec['llm_call_share'])} is above "
            f"{_pct(MAX_LLM_CALL_SHARE)}. "
            + (passed + " " if passed else "the target quality needs the LLM there. ")
            + "Per task: "
            + per_task
            + "."
        )
    if not checks[f"cost_fraction<={MAX_COST_FRACTION:g}"]:
        out.append(
            f"Cost {_pct(rec['cost_fraction_of_llm_only'])} of LLM-only's is above "
            f"{_pct(MAX_COST_FRACTION)}. Per task: " + per_task + "."
        )
    oos = rec.get("oos") or {}
    if oos.get("n") and not oos.get("met"):
        out.append(
            f"Only {_pct(oos['share'])} of {oos['n']} out-of-scope queries were escalated or "
            f"refused ({oos['escalated']} escalated, {oos['refused']} refused; target "
            f"{_pct(oos['target'])})."
        )
    return out
