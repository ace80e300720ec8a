"""A report shaped like `duetto demo`'s, built through the real aggregation, calibration sweep
and verdict code: eleven strategies of every mode (several at the very same point, the worst
case for labels), the five baselines, a curve over thresholds per cascade/route, four phases
and a recommendation whose raw figures have many decimals (the HTML must round them)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from duetto.calibrate import Target, choose_threshold, sweep
from duetto.eval.aggregate import summarize
from duetto.eval.runner import curve_points
from duetto.eval.verdict import recommend

STRATEGIES = [
    ("cascade-logprob", "cascade", 0.70, 0.9),
    ("cascade-learned", "cascade", 0.70, 0.9),  # the same point as the one above
    ("route-task-prior", "route", 0.66, 0.6),
    ("pipeline-llm-draft-slm-format", "pipeline", 0.0, 1.0),
    ("assist-redact", "assist", 0.70, 1.0),
    ("assist-hints", "assist", 0.0, 1.0),  # the same point as the pipeline
    ("fuse-confidence", "fuse", 0.70, 1.0),  # and again with the redaction
    ("distill-student", "distill", 0.5, 0.0),
    ("cascade-student", "cascade", 0.69, 0.3),
    ("route-audit-prior", "route", 0.66, 0.6),  # the same as route-task-prior
    ("cascade-student-route", "cascade", 0.69, 0.3),  # the same as cascade-student
]
N = 60
LLM_COST = 0.0000377123456789  # per request: costs with many decimals


def _records(name: str, mode: str, quality: float, share: float) -> list[dict[str, Any]]:
    rng = random.Random(name.split("-")[0] + str(quality))
    out = []
    for i in range(N):
        llm = i < round(share * N)
        out.append(
            {
                "strategy": name,
                "mode": mode,
                "item_id": f"i{i}",
                "quality": float(rng.random() < quality),
                "latency_ms": 120.123456 + 7 * i,
                "ttft_ms": None,
                "cost_usd": LLM_COST if llm else 0.0,
                "remote_bytes": 700 if llm else 0,
                "energy_j": 1.23456789,
                "pii_sent": 0,
                "llm_calls": int(llm),
                "tokens_in": 30,
                "tokens_out": 8,
            }
        )
    return out


def _calibration(name: str) -> dict[str, Any]:
    rng = np.random.default_rng(len(name))
    scores = rng.random(40)
    q_cheap = (rng.random(40) < scores).astype(float)
    q_strong = (rng.random(40) < 0.72).astype(float)
    c_cheap, c_strong = np.zeros(40), np.full(40, LLM_COST)
    target = Target.parse("quality=0.95")
    op = choose_threshold(scores, q_cheap, q_strong, c_cheap, c_strong, target)
    return {
        "target": str(target),
        "threshold": op.threshold,
        "calib_quality": op.quality,
        "calib_llm_share": op.llm_share,
        "calib_cost_per_1k": op.cost_per_1k,
        "calib_n": 40,
        "curve": curve_points(sweep(scores, q_cheap, q_strong, c_cheap, c_strong), op),
    }


def _phase(name: str, what: str, s: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": what,
        "requests": s["n"],
        "llm_call_share": s["llm_call_share"],
        "cost_usd": s["cost_usd"],
        "quality": dict(s["quality"]),
        **more,
    }


def demo_report() -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    for name, mode, quality, share in STRATEGIES:
        records += _records(name, mode, quality, share)
    summaries = summarize(records)
    by_name = {s["name"]: s for s in summaries}
    slm, llm = (
        _records("slm_only", "baseline", 0.31, 0.0),
        _records("llm_only", "baseline", 0.72, 1.0),
    )
    base = {s["name"]: s for s in summarize(slm + llm)}
    base["random"] = summarize(_records("random", "baseline", 0.5, 0.3))[0]
    base["random"]["note"] = "random routing at the recommendation's LLM share (0.30)"
    base["oracle"] = summarize(_records("oracle", "baseline", 0.8, 0.45))[0]
    base["best_single"] = {**base["llm_only"], "name": "best_single", "note": "llm_only"}
    chosen = "cascade-student"
    mine = [r for r in records if r["strategy"] == chosen]
    rec = recommend(
        chosen, by_name[chosen], mine, base["llm_only"], llm, chosen_on="gold audit (40 requests)"
    )
    rec["findings"] = [
        "Non-inferiority not shown: the paired CI's lower bound is below the margin."
    ]
    llm_phase = base["llm_only"]
    phases = [
        _phase("llm-only", "the LLM serves; its answers are the traces", llm_phase),
        _phase("shadow", "the LLM serves, the SLM shadows", llm_phase, labels={"agreement": {}}),
        _phase("distil+calibrate", "estimate on the audit", by_name[chosen], estimate=True),
        _phase(
            "serve",
            f"held-out traffic served by {chosen}",
            by_name[chosen],
            llm_only_quality=llm_phase["quality"]["mean"],
            quality_delta_ci=rec["quality_delta_ci"],
        ),
    ]
    return {
        "title": "duetto demo: staged rollout",
        "created": "2026-12-03 23:59:59",
        "workload": {"name": "demo traffic", "n": 3 * N, "calibration_n": 40, "heldout_n": N},
        "models": [],
        "notes": [],
        "phases": phases,
        "strategies": summaries,
        "baselines": {
            k: base[k] for k in ("slm_only", "llm_only", "best_single", "random", "oracle")
        },
        "recommendation": rec,
        "calibration": {
            name: _calibration(name)
            for name, mode, *_ in STRATEGIES
            if mode in ("cascade", "route")
        },
        "elapsed_s": 512.3456789,
        "errors": 0,
        "records": records,
    }
