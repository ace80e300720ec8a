"""The distillation loop's decisions: pure functions, arrays in, numbers out.

Where the threshold goes (`calibrate_escalation`, `calibrate_paired`, `oos_floor`), whether a
round's student replaces the deployed one (`better_than_deployed`), and how a round scores
(`score_round`). `duetto.distill.loop` runs the rounds around them; its docstring explains the
protocol (audit sample, out-of-scope floor, champion/challenger gating).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from duetto.calibrate import Operating, Target, choose_threshold

__all__ = [
    "answers_locally",
    "better_than_deployed",
    "calibrate_escalation",
    "calibrate_paired",
    "escalation_scores",
    "margin_of",
    "oos_floor",
    "operating_at",
    "paired_margin",
    "score_round",
    "with_margin",
]


def escalation_scores(
    confidence: Sequence[float], predicted: Sequence[str], out_of_scope: str | None
) -> np.ndarray:
    """The score the threshold applies to: the student's confidence, or -1 (always below any
    threshold >= 0) where the student itself says out-of-scope."""
    conf = np.asarray(confidence, dtype=float)
    if out_of_scope is None:
        return conf
    return np.where(np.asarray(predicted) == out_of_scope, -1.0, conf)


def answers_locally(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.asarray(scores, dtype=float) >= threshold


def with_margin(target: Target, n: int, z: float) -> Target:
    """A quality target raised by z binomial standard errors at n samples (capped at 1)."""
    if target.kind != "quality" or n == 0 or z <= 0:
        return target
    p = target.value
    return Target("quality", min(1.0, p + z * float(np.sqrt(p * (1 - p) / n))))


def calibrate_escalation(
    scores: np.ndarray,
    predicted: Sequence[str],
    teacher_labels: Sequence[str],
    target: Target,
    z: float = 1.28,
    reference: Sequence[str] | None = None,
    min_threshold: float = 0.0,
) -> tuple[float, Operating]:
    """The threshold meeting `target` on held-out data where only the teacher's labels are known:
    quality of a local answer = agreement with the teacher; an escalated one is the teacher's.
    A quality target is met with a one-sided margin of z standard errors (z=1.28: 90%), so that
    it still holds on unseen traffic rather than only on the few hundred held-out queries.
    With `reference` (e.g. a small human-labelled audit sample), quality is measured against it
    instead, for the student and the teacher alike: a quality target then reads "F x the
    teacher's own quality", which a noisy teacher needs, and the margin is that of the paired
    difference (see `calibrate_paired`). `min_threshold` is a floor the threshold may not go
    below (`oos_floor`)."""
    if reference is not None and target.kind == "quality":
        return calibrate_paired(
            scores, predicted, teacher_labels, reference, target.value, z, min_threshold
        )
    pred, teach = np.asarray(predicted), np.asarray(teacher_labels)
    ref = teach if reference is None else np.asarray(reference)
    agree = (pred == ref).astype(float)
    agree[np.asarray(scores) < 0] = 0.0  # out-of-scope predictions are never answered
    n = len(agree)
    op = choose_threshold(
        np.asarray(scores, dtype=float),
        agree,
        (teach == ref).astype(float),
        np.zeros(n),
        np.ones(n),
        with_margin(target, n, z),
    )
    # -inf means "answer everything": 0 still escalates the out-of-scope predictions (score -1).
    threshold = max(op.threshold, 0.0, min_threshold)
    if threshold != op.threshold:  # escalating more only moves the system toward the teacher
        op = operating_at(np.asarray(scores), threshold, agree, (teach == ref).astype(float))
    return threshold, op


def oos_floor(scores: np.ndarray, is_oos: np.ndarray, share: float) -> float:
    """The least threshold that escalates at least `share` of the out-of-scope queries (a query
    escalates when its score is below the threshold). 0.0 when there are none: scores of
    out-of-scope *predictions* are -1 and escalate at any threshold >= 0."""
    s = np.sort(np.asarray(scores, dtype=float)[np.asarray(is_oos, dtype=bool)])
    k = math.ceil(share * len(s) - 1e-9)
    if len(s) == 0 or k <= 0:
        return 0.0
    # Escalating the k lowest scores: a threshold just above the k-th lowest.
    return max(0.0, float(np.nextafter(s[k - 1], math.inf)))


def operating_at(
    scores: np.ndarray, threshold: float, q_student: np.ndarray, q_teacher: np.ndarray
) -> Operating:
    """The operating point of one threshold (cost: 1 per escalated query, per 1,000)."""
    local = np.asarray(scores, dtype=float) >= threshold
    share = float(1.0 - local.mean()) if len(local) else 1.0
    quality = float(np.where(local, q_student, q_teacher).mean()) if len(local) else 0.0
    return Operating(threshold, quality, share, share * 1000)


def margin_of(target: Target, n: int, z: float) -> float:
    """The absolute quality margin `with_margin` adds (agreement with the teacher)."""
    return with_margin(target, n, z).value - target.value if target.kind == "quality" else 0.0


def calibrate_paired(
    scores: np.ndarray,
    predicted: Sequence[str],
    teacher_labels: Sequence[str],
    reference: Sequence[str],
    fraction: float,
    z: float = 1.28,
    min_threshold: float = 0.0,
) -> tuple[float, Operating]:
    """The cheapest threshold >= `min_threshold` whose system quality is >= `fraction` x the
    teacher's, both against `reference`, with a one-sided margin of z standard errors of the
    *paired difference*.

    Per held-out query, d = [system right] - fraction x [teacher right] (the system is the
    student where it answers, the teacher elsewhere); the threshold passes when
    mean(d) - z * sd(d) / sqrt(n) >= 0. `with_margin` raises the fraction by the standard error
    of a proportion at 0.95 (~0.013 at n=300): right for agreement with the teacher (the
    teacher's own quality is then 1), but here both qualities are estimates near the teacher's
    accuracy and the student's errors differ from the teacher's, so that margin understates
    the uncertainty (see docs/distill.md). Out-of-scope predictions (score < 0) never answer.
    Returns (threshold, operating point: quality against `reference`)."""
    s = np.asarray(scores, dtype=float)
    pred, teach, ref = np.asarray(predicted), np.asarray(teacher_labels), np.asarray(reference)
    n = len(s)
    if n == 0:
        raise ValueError("cannot calibrate on an empty held-out sample")
    q_student = (pred == ref).astype(float)
    q_teacher = (teach == ref).astype(float)
    best: tuple[float, float, float] | None = None  # (local share, quality, threshold)
    floor = max(min_threshold, 0.0)
    for t in [floor, *np.unique(s[s >= floor]).tolist(), math.inf]:
        local = s >= t
        q_sys = np.where(local, q_student, q_teacher)
        d = q_sys - fraction * q_teacher
        se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        if float(d.mean()) - z * se < -1e-12:
            continue
        key = (float(local.mean()), float(q_sys.mean()), float(t))
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:  # cannot happen for fraction <= 1 (all escalated: d >= 0), but be safe
        best = (0.0, float(q_teacher.mean()), math.inf)
    share, quality, threshold = best
    return threshold, Operating(threshold, quality, 1.0 - share, (1.0 - share) * 1000)


def paired_margin(
    scores: np.ndarray,
    threshold: float,
    predicted: Sequence[str],
    teacher_labels: Sequence[str],
    reference: Sequence[str],
    fraction: float,
    z: float,
) -> float:
    """z standard errors of the paired difference at `threshold` (what `calibrate_paired`
    required mean(d) to clear), for the round record."""
    s = np.asarray(scores, dtype=float)
    ref = np.asarray(reference)
    q_student = (np.asarray(predicted) == ref).astype(float)
    q_teacher = (np.asarray(teacher_labels) == ref).astype(float)
    d = np.where(s >= threshold, q_student, q_teacher) - fraction * q_teacher
    return z * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0


def better_than_deployed(candidate: Operating, deployed: Operating | None, target: Target) -> bool:
    """Champion/challenger: deploy the candidate only if its held-out operating point is better
    by the metric the loop optimises; ties keep the deployed student. Both points were
    calibrated to the same target on the same held-out sample, so both meet it. For a quality
    target: more answered locally, then higher quality; for a share or budget target: higher
    quality, then more answered locally. No deployed student: everything goes to the LLM."""
    if deployed is None:
        return candidate.llm_share < 1.0 - 1e-12
    eps = 1e-12
    local = (1.0 - candidate.llm_share) - (1.0 - deployed.llm_share)
    quality = candidate.quality - deployed.quality
    first, second = (local, quality) if target.kind == "quality" else (quality, local)
    return first > eps or (abs(first) <= eps and second > eps)


def score_round(
    scores: np.ndarray,
    threshold: float,
    predicted: Sequence[str],
    teacher_labels: Sequence[str],
    gold: Sequence[str],
    out_of_scope: str | None,
) -> dict[str, float | None]:
    local = answers_locally(scores, threshold)
    pred, teach, ref = np.asarray(predicted), np.asarray(teacher_labels), np.asarray(gold)
    final = np.where(local, pred, teach)
    oos = ref == out_of_scope if out_of_scope is not None else np.zeros(len(ref), dtype=bool)
    return {
        "quality": float((final == ref).mean()),
        "teacher_quality": float((teach == ref).mean()),
        "student_accuracy": float((pred == ref).mean()),
        "student_agreement": float((pred == teach).mean()),
        "local_share": float(local.mean()),
        "llm_call_share": float(1.0 - local.mean()),
        "oos_escalated": float((~local[oos]).mean()) if oos.any() else None,
    }
