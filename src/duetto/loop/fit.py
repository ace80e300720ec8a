"""`duetto fit STORE`: a calibration fitted on the team's own traffic, with the evidence for it.

Input: the labelled examples of the store (`LoopStore.examples`, the only way in): for each
request the LLM served, the candidate's (the SLM's) shadow answer, its token confidence and its
labels (agreement with the served answer, a judge, client feedback, gold). From them:

1. rows: one per request the candidate answered, ordered by time: the candidate's raw score
   (its confidence; 0 for a degenerate answer, which the cascade always escalates), its quality
   (gold if a human labelled it, else the mean of its labels), the served LLM answer's quality
   (gold if labelled, else 1: agreement and pairwise labels measure the candidate *against* it),
   and the costs (the LLM's from its card and the request's size; the local model's from its).
2. fit on the older part: the score calibrator (isotonic, as `cascade` uses) and the threshold
   that meets the target (`duetto.calibrate.choose_threshold`, the one home for that);
3. measure on the newer, held-out part (never seen by the fit): quality with a bootstrap CI
   (`duetto.stats`), the share answered locally, the cost against LLM-only, beside LLM-only,
   SLM-only, the best single model, random routing at the same LLM share and the oracle;
4. say whether the held-out evidence supports the target (the CI's lower bound at or above the
   floor) and, when it does not, roughly how many more labelled requests would (the CI narrows
   as 1/sqrt(n)).

Pure functions over plain data, except `fit_store` (reads the store). Which strategies get
fitted: every two-model cascade with a logprob verifier and no fixed threshold (the fitted
entry is what `Cascade.load_state` reads). Other thresholded strategies keep the entry of the
base calibration they come with (`base`), and the result says so.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duetto.answers import degenerate, estimate_tokens
from duetto.calibrate import Target, choose_threshold
from duetto.models.base import ModelCard
from duetto.stats import bootstrap

MIN_ROWS = 40  # below this, nothing is fitted: the interval would say nothing
TEMPLATE_TOKENS = 8


@dataclass(slots=True)
class Row:
    trace_id: str
    created: float
    raw: float  # the candidate's raw verifier score (token confidence), 0 when degenerate
    q_cheap: float  # the candidate's quality
    q_strong: float  # the served (LLM) answer's quality
    c_cheap: float  # what the candidate's answer costs
    c_llm: float  # what the LLM's answer costs (LLM-only)
    degenerate: bool = False


@dataclass(slots=True)
class FitResult:
    strategy: str
    target: str
    n: int
    fit_n: int
    heldout_n: int
    entry: dict[str, Any] | None  # the calibration entry (None: not enough data)
    heldout: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    def sentence(self) -> str:
        h = self.heldout
        if not h:
            return f"{self.strategy}: {self.evidence.get('message', 'not fitted')}"
        q = h["quality"]
        return (
            f"on your traffic, answering {100 * (1 - h['llm_call_share']):.0f}% locally keeps "
            f"quality at {q['mean']:.3f} (95% CI {q['ci_low']:.3f}-{q['ci_high']:.3f}; "
            f"LLM-only {self.baselines['llm_only']['quality']['mean']:.3f}), at "
            f"{100 * h['cost_fraction_of_llm_only']:.0f}% of the LLM-only cost "
            f"({self.heldout_n} held-out requests)"
        )


def request_tokens(request: Mapping[str, Any]) -> int:
    messages = request.get("messages") or []
    return sum(estimate_tokens(str(m.get("content") or "")) + TEMPLATE_TOKENS for m in messages)


def rows_from_examples(
    examples: Sequence[Any], candidate: str, llm: ModelCard, slm: ModelCard | None = None
) -> list[Row]:
    """One row per request whose `candidate` answer is labelled (LabelledExample objects)."""
    served_gold: dict[str, float] = {}
    for ex in examples:
        if ex.candidate != candidate and ex.candidate == ex.served_by and ex.gold is not None:
            served_gold[ex.trace_id] = float(ex.gold)
    rows = []
    for ex in examples:
        if ex.candidate != candidate or ex.score is None:
            continue
        text = ex.candidate_text or ""
        bad = degenerate(text) is not None
        conf = ex.candidate_confidence
        if conf is None and ex.candidate_logprob is not None:
            conf = math.exp(float(ex.candidate_logprob))
        if conf is None and not bad:
            continue  # no score to calibrate
        tokens_in = request_tokens(ex.request)
        c_llm = llm.cost(tokens_in, estimate_tokens(ex.served_text or ""))
        c_cheap = slm.cost(tokens_in, estimate_tokens(text)) if slm is not None else 0.0
        rows.append(
            Row(
                ex.trace_id,
                ex.created,
                0.0 if bad else float(conf or 0.0),
                float(ex.score),
                served_gold.get(ex.trace_id, 1.0),
                c_cheap,
                c_llm,
                bad,
            )
        )
    return sorted(rows, key=lambda r: (r.created, r.trace_id))


def _ci(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    lo, hi = bootstrap(lambda idx: float(values[idx].mean()), len(values), n_boot=1000, seed=seed)
    return {"mean": float(values.mean()), "ci_low": float(lo), "ci_high": float(hi)}


def _summary(
    quality: np.ndarray, cost: np.ndarray, llm_share: float, c_llm: float
) -> dict[str, Any]:
    total = float(cost.sum())
    return {
        "quality": _ci(quality),
        "llm_call_share": llm_share,
        "cost_usd": total,
        "cost_fraction_of_llm_only": total / c_llm if c_llm > 0 else 0.0,
        "n": len(quality),
    }


def fit_cascade(
    strategy: str, rows: Sequence[Row], target: Target, holdout: float = 0.5, seed: int = 0
) -> FitResult:
    """Calibrator and threshold on the older rows, measured on the newer ones (see module)."""
    from duetto.scoring.verifiers import IsotonicCalibrator

    n = len(rows)
    n_fit = round(n * (1 - holdout))
    result = FitResult(strategy, str(target), n, n_fit, n - n_fit, None)
    if n < MIN_ROWS or n_fit < MIN_ROWS // 2 or n - n_fit < MIN_ROWS // 2:
        result.evidence = {
            "enough": False,
            "message": f"too little data: {n} labelled requests, need at least {MIN_ROWS} "
            f"({max(0, MIN_ROWS - n)} more) before anything is fitted",
            "more_needed": max(0, MIN_ROWS - n),
        }
        return result
    fit, held = list(rows[:n_fit]), list(rows[n_fit:])

    def arrays(part: list[Row]) -> tuple[np.ndarray, ...]:
        cols = zip(
            *[(r.raw, r.q_cheap, r.q_strong, r.c_cheap, r.c_llm, r.degenerate) for r in part],
            strict=True,
        )
        return tuple(np.asarray(c, dtype=float) for c in cols)

    raw, qc, qs, cc, cl, bad = arrays(fit)
    cal = IsotonicCalibrator().fit(raw, qc >= 0.5)
    scores = np.where(bad > 0, -math.inf, cal.transform(raw))
    # escalating pays the (local) draft and the LLM
    op = choose_threshold(scores, qc, qs, cc, cc + cl, target)
    threshold = op.threshold
    result.entry = {
        "threshold": threshold if math.isfinite(threshold) else str(threshold),
        "calibrator": cal.state(),
        "scorer": None,
        "verifier": None,
    }
    # held out
    raw, qc, qs, cc, cl, bad = arrays(held)
    local = (cal.transform(raw) >= threshold) & (bad == 0)
    quality = np.where(local, qc, qs)
    cost = np.where(local, cc, cc + cl)
    llm_cost = float(cl.sum())
    result.heldout = _summary(quality, cost, float((~local).mean()), llm_cost)
    result.heldout["threshold"] = result.entry["threshold"]
    share = float((~local).mean())
    k = round(share * len(held))
    chosen = np.zeros(len(held), dtype=bool)
    chosen[random.Random(seed).sample(range(len(held)), k)] = True
    oracle_local = qc >= qs
    llm_only = _summary(qs, cl, 1.0, llm_cost)
    slm_only = _summary(qc, cc, 0.0, llm_cost)
    best = llm_only if llm_only["quality"]["mean"] >= slm_only["quality"]["mean"] else slm_only
    result.baselines = {
        "llm_only": llm_only,
        "slm_only": slm_only,
        "best_single": {**best, "model": "llm" if best is llm_only else "slm"},
        "random": _summary(
            np.where(chosen, qs, qc), np.where(chosen, cc + cl, cc), share, llm_cost
        ),
        "oracle": _summary(
            np.where(oracle_local, qc, qs),
            np.where(oracle_local, cc, cc + cl),
            float((~oracle_local).mean()),
            llm_cost,
        ),
    }
    result.evidence = evidence(
        result.heldout["quality"], llm_only["quality"]["mean"], target, len(held), holdout
    )
    return result


def evidence(
    quality: Mapping[str, float], llm_only: float, target: Target, n_held: int, holdout: float
) -> dict[str, Any]:
    """Does the held-out CI support the target? If not, about how many more labelled requests
    would (the interval's half-width shrinks as 1/sqrt(n))."""
    if target.kind != "quality":
        return {"enough": True, "message": f"target {target} is not a quality floor"}
    floor = target.value * llm_only
    mean, low = quality["mean"], quality["ci_low"]
    if low >= floor:
        return {"enough": True, "floor": floor, "message": "the held-out CI is above the floor"}
    if mean <= floor:
        return {
            "enough": False,
            "floor": floor,
            "more_needed": None,
            "message": f"held-out quality {mean:.3f} is below the floor {floor:.3f}: more data "
            "will not fix it; lower the target or keep the LLM",
        }
    need_held = math.ceil(n_held * ((mean - low) / (mean - floor)) ** 2)
    more = math.ceil((need_held - n_held) / max(holdout, 1e-9))
    return {
        "enough": False,
        "floor": floor,
        "more_needed": more,
        "message": f"too little data for {target}: the held-out CI's lower bound {low:.3f} is "
        f"under the floor {floor:.3f}; about {more} more labelled requests are needed",
    }


def calibration_file(
    results: Sequence[FitResult], target: str, base: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The duetto.fitted content (unstamped): the base's entries, the fitted ones over them."""
    entries = dict((base or {}).get("strategies") or {})
    fitted = {r.strategy: r.entry for r in results if r.entry is not None}
    entries.update(fitted)
    return {
        "format": "duetto-fitted/1",
        "target": target,
        "strategies": entries,
        "fit": {
            r.strategy: {"n": r.n, "heldout": r.heldout, "evidence": r.evidence} for r in results
        },
    }


def report_dict(results: Sequence[FitResult], store: str, created: str) -> dict[str, Any]:
    """The report (duetto.eval.report's format): each fitted strategy and the baselines, on the
    held-out part, with the sentence that sums it up."""
    strategies, notes = [], []
    baselines: dict[str, Any] = {}
    for r in results:
        notes.append(r.sentence())
        if r.evidence and not r.evidence.get("enough", True):
            notes.append(f"{r.strategy}: {r.evidence['message']}")
        if not r.heldout:
            continue
        strategies.append({"name": r.strategy, "mode": "cascade", **r.heldout})
        if not baselines:
            baselines = {k: {"name": k, "mode": "baseline", **v} for k, v in r.baselines.items()}
    first = next((r for r in results if r.heldout), None)
    return {
        "title": "duetto fit: your traffic",
        "created": created,
        "workload": {
            "name": store,
            "n": first.n if first else 0,
            "calibration_n": first.fit_n if first else 0,
            "heldout_n": first.heldout_n if first else 0,
        },
        "notes": notes,
        "strategies": strategies,
        "baselines": baselines,
        "recommendation": None,
        "calibration": {r.strategy: {"target": r.target, "evidence": r.evidence} for r in results},
    }


async def fit_store(
    loop_store: Any,
    strategies: Mapping[str, Any],
    llm: ModelCard,
    slm: ModelCard | None,
    target: Target,
    *,
    candidate: str | None = None,
    holdout: float = 0.5,
    since: float | None = None,
) -> tuple[list[FitResult], list[str]]:
    """Fit every cascade of `strategies` (name → StrategyConfig) that needs it, from the store.
    Returns the results and notes about what was not fitted."""
    examples = await loop_store.examples(since=since)
    if candidate is None:
        counts: dict[str, int] = {}
        for ex in examples:
            if ex.candidate != ex.served_by:
                counts[ex.candidate] = counts.get(ex.candidate, 0) + 1
        candidate = max(counts, key=lambda c: counts[c]) if counts else ""
    rows = rows_from_examples(examples, candidate, llm, slm)
    results, notes = [], []
    for name, sc in strategies.items():
        mode = getattr(sc, "mode", None)
        if mode not in ("cascade", "route") or getattr(sc, "threshold", None) is not None:
            continue
        kind = getattr(getattr(sc, "verifier", None), "kind", None)
        if mode == "cascade" and kind == "logprob" and len(getattr(sc, "models", [])) == 2:
            results.append(fit_cascade(name, rows, target, holdout))
        else:
            notes.append(
                f"{name}: not fitted from the store ({mode} with "
                f"{kind or getattr(getattr(sc, 'scorer', None), 'kind', '?')}); its base "
                "calibration entry is kept (`duetto eval` on a labelled workload fits it)"
            )
    if not rows:
        notes.append(
            f"no labelled shadow answers of {candidate or 'any candidate'} in the store: run the "
            "gateway with `gateway.shadow` (and labels) first"
        )
    return results, notes
