"""Datasets × strategies → per-item records → a report with baselines and a recommendation.

Flow of `evaluate`:
 1. split the workload into a calibration half and a held-out half (stratified by task);
 2. run the SLM and the LLM on every item (real calls, cached; these are the baselines' data);
 3. calibrate every thresholded strategy that has a target, on the calibration half, by
    sweeping both branches offline (duetto.calibrate);
 4. run every strategy on the held-out half (its model calls mostly hit the cache);
 5. derive the baselines on the held-out half: SLM-only, LLM-only, the oracle (the cheapest
    model that answers right), and random routing at the recommended strategy's LLM share;
 6. summarise each on the five axes (+ cost, LLM-call share) and pick a recommendation.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duetto.calibrate import Operating, Target, choose_threshold, sweep
from duetto.errors import DuettoError, UserError
from duetto.eval.aggregate import summarize
from duetto.eval.scorers import score
from duetto.eval.workload import WorkItem, split
from duetto.messages import ChatResponse
from duetto.models.base import ChatModel
from duetto.strategies.base import Strategy, Tunable
from duetto.trace import Step, service_latency_ms, service_ttft_ms

Progress = Callable[[str, int], None]  # (phase description, items done in this step)


@dataclass
class Outcome:
    item: WorkItem
    response: ChatResponse | None
    quality: float
    error: str | None = None


@dataclass
class EvalPlan:
    slm: ChatModel
    llm: ChatModel
    strategies: dict[str, ChatModel]
    targets: dict[str, Target] = field(default_factory=dict)  # per thresholded strategy
    quality_target: float = 0.95  # recommendation: fraction of LLM-only quality to keep
    concurrency: int = 1
    seed: int = 0
    calib_frac: float = 0.5


def record(name: str, mode: str, o: Outcome) -> dict[str, Any]:
    if o.response is None:
        return {
            "strategy": name,
            "mode": mode,
            "item_id": o.item.id,
            "quality": 0.0,
            "latency_ms": 0.0,
            "ttft_ms": 0.0,
            "cost_usd": 0.0,
            "remote_bytes": 0,
            "energy_j": 0.0,
            "pii_sent": 0,
            "pii_sent_by_tier": {},
            "llm_calls": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "error": o.error,
        }
    step = o.response.trace
    u = step.total()
    return {
        "strategy": name,
        "mode": mode,
        "item_id": o.item.id,
        "quality": o.quality,
        "latency_ms": service_latency_ms(step),
        "ttft_ms": service_ttft_ms(step),
        "cost_usd": u.cost_usd,
        "remote_bytes": u.bytes_sent + u.bytes_received,
        "energy_j": u.energy_j,
        "pii_sent": u.pii_sent,
        "pii_sent_by_tier": pii_by_tier(step),
        "llm_calls": u.remote_calls,
        "tokens_in": u.tokens_in,
        "tokens_out": u.tokens_out,
        "error": None,
    }


def pii_by_tier(step: Step) -> dict[str, int]:
    """PII entities sent to untrusted models by risk tier, from the leaves' counts."""
    out: dict[str, int] = {}
    for leaf in step.leaves():
        for tier, n in (leaf.extra.get("pii_tiers") or {}).items():
            out[tier] = out.get(tier, 0) + int(n)
    return out


async def run_items(
    model: ChatModel,
    items: Sequence[WorkItem],
    concurrency: int = 1,
    progress: Progress | None = None,
    label: str = "",
) -> list[Outcome]:
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(item: WorkItem) -> Outcome:
        async with sem:
            try:
                resp = await model.complete(item.request)
            except DuettoError as exc:
                if isinstance(exc, UserError):
                    raise
                out = Outcome(item, None, 0.0, f"{type(exc).__name__}: {exc}")
            else:
                out = Outcome(item, resp, score(item, resp.text))
            if progress:
                progress(label or model.name, 1)
            return out

    return list(await asyncio.gather(*(one(i) for i in items)))


async def calibrate_strategy(
    strategy: Tunable,
    items: Sequence[WorkItem],
    target: Target,
    concurrency: int = 1,
    progress: Progress | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Fit the strategy's learned parts, then its score calibration on raw scores, then the
    threshold that meets `target` on this split (strategies.base.Tunable, in that order)."""
    sem = asyncio.Semaphore(max(1, concurrency))
    await strategy.fit(
        [i.request for i in items], lambda k, text: score(items[k], text), concurrency=concurrency
    )

    async def one(item: WorkItem) -> tuple[float, float, float, float, float]:
        async with sem:
            br = await strategy.branches(item.request, calibrated=False)
            if progress:
                progress(label, 1)
            return (
                br.score,
                score(item, br.cheap.text),
                score(item, br.strong.text),
                br.cheap.trace.total().cost_usd,
                br.strong.trace.total().cost_usd,
            )

    rows = np.array(await asyncio.gather(*(one(i) for i in items)), dtype=float)
    # A verifier calibrator (isotonic/Platt) is fitted on this split's raw scores first.
    rows[:, 0] = strategy.calibrate_scores(rows[:, 0].tolist(), (rows[:, 1] >= 0.5).tolist())
    op = choose_threshold(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4], target)
    strategy.threshold = op.threshold
    return {
        "target": str(target),
        "threshold": op.threshold,
        "calib_quality": op.quality,
        "calib_llm_share": op.llm_share,
        "calib_cost_per_1k": op.cost_per_1k,
        "calib_n": len(items),
        # the strategy's operating points over its thresholds on this split (the report's
        # cost-quality curve); ±inf thresholds become null in JSON
        "curve": curve_points(sweep(*rows.T), op),
    }


def curve_points(
    points: list[Operating], chosen: Operating, limit: int = 40
) -> list[dict[str, Any]]:
    """At most `limit` operating points, evenly spread over the sweep, both ends and the
    chosen one always kept (a curve to draw, not a table to calibrate from)."""
    keep = set(np.linspace(0, len(points) - 1, min(limit, len(points))).round().astype(int))
    picked = [p for k, p in enumerate(points) if k in keep or p == chosen]
    return [
        {
            "threshold": p.threshold,
            "quality": p.quality,
            "llm_share": p.llm_share,
            "cost_per_1k": p.cost_per_1k,
        }
        for p in picked
    ]


def oracle_records(slm: list[Outcome], llm: list[Outcome]) -> list[dict[str, Any]]:
    """Per item, the cheapest model that gets the best score (known only in hindsight)."""
    out = []
    for s, lo in zip(slm, llm, strict=True):
        pick = s if s.quality >= lo.quality else lo
        out.append(record("oracle", "baseline", pick))
    return out


def random_records(
    slm: list[Outcome], llm: list[Outcome], share: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Random routing that sends exactly round(share * n) items to the LLM."""
    n = len(slm)
    k = round(share * n)
    chosen = set(random.Random(seed).sample(range(n), k))
    return [record("random", "baseline", llm[i] if i in chosen else slm[i]) for i in range(n)]


def pick_recommendation(
    summaries: list[dict[str, Any]], llm_only: dict[str, Any], fraction: float
) -> dict[str, Any] | None:
    """The cheapest strategy whose held-out quality keeps `fraction` of LLM-only quality."""
    floor = fraction * llm_only["quality"]["mean"]
    ok = [s for s in summaries if s["quality"]["mean"] >= floor]
    if not ok:
        return None
    best = min(ok, key=lambda s: (s["cost_usd"], -s["quality"]["mean"]))
    cost_llm = llm_only["cost_usd"] or 1e-12
    return {
        "strategy": best["name"],
        "mode": best["mode"],
        "quality_target": f"{fraction:g} x LLM-only quality",
        "quality": best["quality"],
        "llm_only_quality": llm_only["quality"]["mean"],
        "cost_fraction_of_llm_only": best["cost_usd"] / cost_llm,
        "llm_call_share": best["llm_call_share"],
        "meets_ci_bound": best["quality"]["ci_low"] >= floor,
    }


async def evaluate(
    plan: EvalPlan, items: Sequence[WorkItem], progress: Progress | None = None
) -> dict[str, Any]:
    thresholded = {
        n: s for n, s in plan.strategies.items() if isinstance(s, Tunable) and n in plan.targets
    }
    if thresholded:
        calib, held = split(list(items), frac=plan.calib_frac, seed=plan.seed)
    else:
        calib, held = [], list(items)
    slm_all = await run_items(plan.slm, items, plan.concurrency, progress, "SLM-only")
    llm_all = await run_items(plan.llm, items, plan.concurrency, progress, "LLM-only")

    calibration: dict[str, Any] = {}
    for name, strat in thresholded.items():
        calibration[name] = await calibrate_strategy(
            strat, calib, plan.targets[name], plan.concurrency, progress, f"calibrate {name}"
        )

    held_ids = {i.id for i in held}
    slm = [o for o in slm_all if o.item.id in held_ids]
    llm = [o for o in llm_all if o.item.id in held_ids]
    records: list[dict[str, Any]] = []
    for name, model in plan.strategies.items():
        mode = model.mode if isinstance(model, Strategy) else "baseline"
        outs = await run_items(model, held, plan.concurrency, progress, name)
        records += [record(name, mode, o) for o in outs]

    base_records = (
        [record("slm_only", "baseline", o) for o in slm]
        + [record("llm_only", "baseline", o) for o in llm]
        + oracle_records(slm, llm)
    )
    summaries = summarize(records)
    base = {s["name"]: s for s in summarize(base_records)}
    rec = pick_recommendation(summaries, base["llm_only"], plan.quality_target)
    share = rec["llm_call_share"] if rec else 0.5
    base["random"] = summarize(random_records(slm, llm, share, plan.seed))[0]
    base["random"]["note"] = f"random routing at the recommended strategy's LLM share ({share:.2f})"
    errors = sum(1 for r in records + base_records if r.get("error"))
    return {
        "workload": {"n": len(items), "calibration_n": len(calib), "heldout_n": len(held)},
        "strategies": summaries,
        "baselines": {k: base[k] for k in ("slm_only", "llm_only", "random", "oracle")},
        "recommendation": rec,
        "calibration": calibration,
        "errors": errors,
        "records": records + base_records,
    }
