"""The distillation loop: the LLM's answers train the small model, round after round.

Round 0 is the starting point: no student, every query goes to the LLM (the teacher). In round
r = 1..R, queries of the training split arrive as traffic; the currently deployed system
answers the confident ones locally and escalates the rest to the teacher, whose answers are the
traces the student learns from (traces="escalated"; "all" labels every query). The round takes
`train / R` new traces, retrains the student on all traces so far, re-calibrates the escalation
threshold on a held-out audit sample labelled by the teacher to the same target (by default:
agreement with the teacher >= 95%, as cheaply as possible; with calib_reference="gold" the
audit sample is human-labelled and the target is 95% of the teacher's own quality), and is
scored on the test set against the gold labels: the LLM-call share, the quality of the whole
system (student where it answered, teacher elsewhere), the teacher's own quality, and the
student's accuracy everywhere.
Queries the student labels out-of-scope always escalate: the small model never answers them.

The audit sample. It certifies the traffic the deployed system will serve, so it should look
like that traffic: a dataset with a validation split (clinc150) is audited on it, with its
out-of-scope queries in the share the test traffic has (`calib_oos_share`; clinc150's training
split holds 0.7% of them, its test set 18%). Where the audit holds out-of-scope queries (by the
reference labels: the human audit's, else the teacher's), the threshold must also escalate at
least `oos_escalation` of them: a policy floor (`oos_floor`), since the quality target alone
need not care where the teacher, too, is wrong on them.

Champion/challenger gating (`gate=True`, the default): a round's newly trained student (the
candidate) replaces the deployed one only if, on the held-out audit sample and never on the test
set, its calibrated operating point is better by the metric the loop optimises (for a quality
target: the larger local share, then the higher quality; for a share or budget target: the
higher quality); a tie keeps the deployed student. Test scores are always those of the deployed
system, and the traffic of the next round is served by it.

Decision and scoring functions are pure (arrays in, numbers out); labelling and prediction go
through an Executor (this process or Ray).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from duetto.calibrate import Operating, Target, choose_threshold
from duetto.distill.data import Example, IntentDataset, sample, stratified_sample
from duetto.distill.ray_exec import Executor, LocalExecutor, label_all, predict_all
from duetto.distill.students import Student
from duetto.distill.teachers import Teacher

TracesMode = Literal["escalated", "all"]
DEFAULT_TARGET = Target("quality", 0.95)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    train: int = 1000  # teacher labels (traces) the student learns from, over all rounds
    rounds: int = 3
    target: Target = DEFAULT_TARGET  # agreement with the teacher on held-out data
    calib: int = 500  # held-out audit sample, labelled by the teacher, for the threshold
    test: int | None = None  # stratified test subsample; None: the whole test set
    traffic: int = 6000  # training-split queries that arrive as traffic
    traces: TracesMode = "escalated"
    calib_reference: Literal["teacher", "gold"] = "teacher"  # gold: a human-labelled audit set
    gate: bool = True  # deploy a round's student only if it beats the deployed one (held-out)
    margin_z: float = 1.28  # one-sided margin of the quality target (1.28: 90%)
    # Where the audit sample comes from: "validation" (the dataset's validation split), "train"
    # (disjoint from the traffic), "auto": validation when the dataset has one.
    calib_source: Literal["auto", "train", "validation"] = "auto"
    calib_oos_share: float | None = None  # out-of-scope share of a validation audit; None: test's
    oos_escalation: float = 0.9  # least share of the audit's out-of-scope queries to escalate
    seed: int = 0


@dataclass(slots=True)
class RoundRecord:
    round: int
    llm_call_share: float  # on the test set
    quality: float  # accuracy of the deployed system on the test set (gold labels)
    teacher_quality: float  # the teacher alone on the same test set
    student_accuracy: float | None  # the student on the whole test set
    local_share: float
    student_agreement: float | None = None  # student == teacher on the test set
    oos_escalated: float | None = None  # share of out-of-scope test queries escalated
    threshold: float | None = None
    calib_quality: float | None = None  # agreement with the teacher on held-out data
    calib_llm_share: float | None = None
    calib_margin: float | None = None  # the quality margin (absolute) the threshold had to clear
    calib_oos_escalated: float | None = None  # audit out-of-scope queries escalated (reference)
    # Gating: the round whose student is deployed after this round (0: none, all to the LLM),
    # whether this round's candidate was deployed, and the candidate's held-out operating point.
    # threshold / calib_* / student_* / test scores are those of the deployed system.
    deployed_round: int = 0
    candidate_deployed: bool | None = None
    candidate_threshold: float | None = None
    candidate_calib_quality: float | None = None
    candidate_calib_local_share: float | None = None
    traces: int = 0  # teacher labels the student was trained on
    traffic_seen: int = 0  # traffic queries served this round
    traffic_llm_share: float | None = None  # their share escalated (the LLM calls of the round)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LoopResult:
    task: str
    teacher: str
    upper_bound: bool
    student: str
    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "teacher": self.teacher,
            "teacher_is_upper_bound": self.upper_bound,
            "student": self.student,
            "config": self.config,
            "rounds": [r.to_dict() for r in self.rounds],
        }


# --------------------------------------------------------------------------- pure decisions


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


def calibrate(
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


def split_data(
    ds: IntentDataset, cfg: LoopConfig
) -> tuple[list[Example], list[Example], list[Example]]:
    """(traffic, held-out audit sample, test). Traffic comes from train; the audit sample from
    the validation split (see `audit_sample`) or, without one, from the part of train the
    traffic does not use."""
    shuffled = sample(ds.train, None, cfg.seed)
    test = stratified_sample(ds.test, cfg.test, cfg.seed + 1)
    if audit_source(ds, cfg) == "validation":
        return shuffled[: cfg.traffic], audit_sample(ds, cfg, test), test
    return shuffled[cfg.calib : cfg.calib + cfg.traffic], shuffled[: cfg.calib], test


def audit_source(ds: IntentDataset, cfg: LoopConfig) -> Literal["train", "validation"]:
    if cfg.calib_source == "validation" and not ds.validation:
        raise ValueError(f"{ds.name} has no validation split to draw the audit sample from")
    if cfg.calib_source == "auto":
        return "validation" if ds.validation else "train"
    return cfg.calib_source


def audit_sample(ds: IntentDataset, cfg: LoopConfig, test: Sequence[Example]) -> list[Example]:
    """`cfg.calib` validation queries; with out-of-scope queries in the share `calib_oos_share`
    (None: the test set's share), the rest a label-stratified sample of the in-scope ones."""
    pool = list(ds.validation)
    if ds.out_of_scope is None:
        return stratified_sample(pool, cfg.calib, cfg.seed + 2)
    oos = [e for e in pool if ds.is_out_of_scope(e.label)]
    in_scope = [e for e in pool if not ds.is_out_of_scope(e.label)]
    share = cfg.calib_oos_share
    if share is None:
        share = sum(ds.is_out_of_scope(e.label) for e in test) / max(1, len(test))
    n_oos = min(len(oos), round(share * cfg.calib))
    picked = sample(oos, n_oos, cfg.seed + 2) + stratified_sample(
        in_scope, cfg.calib - n_oos, cfg.seed + 2
    )
    return sample(picked, None, cfg.seed + 3)


# --------------------------------------------------------------------------- the loop


def run_rounds(
    ds: IntentDataset,
    teacher: Teacher,
    make_student: Callable[[], Student],
    cfg: LoopConfig,
    executor: Executor | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> LoopResult:
    ex = executor or LocalExecutor()
    oos = ds.out_of_scope
    traffic, calib, test = split_data(ds, cfg)
    if len(traffic) < cfg.train:
        raise ValueError(f"only {len(traffic)} traffic queries for {cfg.train} traces")
    test_texts, gold = [e.text for e in test], [e.label for e in test]
    calib_texts = [e.text for e in calib]
    calib_gold = [e.label for e in calib]

    t0 = time.perf_counter()
    log(f"teacher {teacher.name}: labelling {len(test)} test and {len(calib)} held-out queries")
    teacher_test = label_all(ex, teacher, test_texts)
    teacher_calib = label_all(ex, teacher, calib_texts)
    base = score_round(np.full(len(test), -1.0), 0.0, teacher_test, teacher_test, gold, oos)
    result = LoopResult(
        task=ds.name,
        teacher=teacher.name,
        upper_bound=teacher.upper_bound,
        student=make_student().name,
        config={
            **asdict(cfg),
            "target": str(cfg.target),
            "calib_source": audit_source(ds, cfg),
            "calib_out_of_scope": sum(ds.is_out_of_scope(g) for g in calib_gold),
        },
    )
    result.rounds.append(
        RoundRecord(
            round=0,
            llm_call_share=1.0,
            quality=float(base["quality"] or 0.0),
            teacher_quality=float(base["teacher_quality"] or 0.0),
            student_accuracy=None,
            local_share=0.0,
            oos_escalated=1.0 if oos is not None and oos in gold else None,
            seconds=round(time.perf_counter() - t0, 2),
        )
    )

    trace_texts: list[str] = []
    trace_labels: list[str] = []
    calib_ref = calib_gold if cfg.calib_reference == "gold" else None
    # The audit's out-of-scope queries, by the reference the threshold is calibrated against.
    calib_oos = np.asarray(
        [ds.is_out_of_scope(label) for label in (calib_ref or teacher_calib)], dtype=bool
    )
    deployed: _Deployed | None = None  # None: no student, every query goes to the LLM
    pos = 0
    for rnd in range(1, cfg.rounds + 1):
        t_round = time.perf_counter()
        quota = cfg.train * rnd // cfg.rounds - cfg.train * (rnd - 1) // cfg.rounds
        new, seen, escalated = _collect_traces(
            ex,
            deployed.student if deployed else None,
            deployed.threshold if deployed else 0.0,
            traffic,
            pos,
            quota,
            cfg,
            oos,
        )
        pos += seen
        trace_texts += new
        trace_labels += label_all(ex, teacher, new)
        student = make_student()
        student.fit(trace_texts, trace_labels)
        calib_pred, calib_conf = predict_all(ex, student, calib_texts)
        calib_scores = escalation_scores(calib_conf, calib_pred, oos)
        floor = oos_floor(calib_scores, calib_oos, cfg.oos_escalation)
        threshold, op = calibrate(
            calib_scores, calib_pred, teacher_calib, cfg.target, cfg.margin_z, calib_ref, floor
        )
        if calib_ref is not None and cfg.target.kind == "quality":
            margin = paired_margin(
                calib_scores,
                threshold,
                calib_pred,
                teacher_calib,
                calib_ref,
                cfg.target.value,
                cfg.margin_z,
            )
        else:
            margin = margin_of(cfg.target, len(calib_texts), cfg.margin_z)
        deploy = not cfg.gate or better_than_deployed(
            op, deployed.op if deployed else None, cfg.target
        )
        if deploy:
            test_pred, test_conf = predict_all(ex, student, test_texts)
            oos_esc = (
                float((calib_scores[calib_oos] < threshold).mean()) if calib_oos.any() else None
            )
            deployed = _Deployed(rnd, student, threshold, op, margin, oos_esc, test_pred, test_conf)
        if deployed is None:
            s = score_round(np.full(len(test), -1.0), 0.0, teacher_test, teacher_test, gold, oos)
            s["student_accuracy"] = s["student_agreement"] = None
        else:
            s = score_round(
                escalation_scores(deployed.test_conf, deployed.test_pred, oos),
                deployed.threshold,
                deployed.test_pred,
                teacher_test,
                gold,
                oos,
            )
        record = RoundRecord(
            round=rnd,
            llm_call_share=float(s["llm_call_share"] or 0.0),
            quality=float(s["quality"] or 0.0),
            teacher_quality=float(s["teacher_quality"] or 0.0),
            student_accuracy=s["student_accuracy"],
            local_share=float(s["local_share"] or 0.0),
            student_agreement=s["student_agreement"],
            oos_escalated=s["oos_escalated"],
            threshold=deployed.threshold if deployed else None,
            calib_quality=deployed.op.quality if deployed else None,
            calib_llm_share=deployed.op.llm_share if deployed else 1.0,
            calib_margin=deployed.margin if deployed else None,
            calib_oos_escalated=deployed.oos_escalated if deployed else None,
            deployed_round=deployed.round if deployed else 0,
            candidate_deployed=deploy,
            candidate_threshold=threshold,
            candidate_calib_quality=op.quality,
            candidate_calib_local_share=1.0 - op.llm_share,
            traces=len(trace_texts),
            traffic_seen=seen,
            traffic_llm_share=escalated / seen if seen else None,
            seconds=round(time.perf_counter() - t_round, 2),
        )
        result.rounds.append(record)
        log(
            f"round {rnd}: traces {record.traces}, candidate held-out local "
            f"{record.candidate_calib_local_share:.3f} -> "
            f"{'deployed' if deploy else 'rejected'}, deployed round {record.deployed_round}; "
            f"test llm share {record.llm_call_share:.3f}, "
            f"quality {record.quality:.3f} (teacher {record.teacher_quality:.3f})"
        )
    return result


@dataclass(slots=True)
class _Deployed:
    """The student serving traffic, its calibrated operating point and its test predictions."""

    round: int
    student: Student
    threshold: float
    op: Operating
    margin: float
    oos_escalated: float | None  # on the audit sample
    test_pred: list[str]
    test_conf: list[float]


def _collect_traces(
    ex: Executor,
    student: Student | None,
    threshold: float,
    traffic: Sequence[Example],
    start: int,
    quota: int,
    cfg: LoopConfig,
    oos: str | None,
) -> tuple[list[str], int, int]:
    """Serve traffic from `start` until `quota` queries went to the LLM.

    Returns (the escalated texts, queries seen, queries escalated). Without a student, or with
    traces="all", every query is a trace."""
    if student is None or cfg.traces == "all":
        texts = [e.text for e in traffic[start : start + quota]]
        return texts, len(texts), len(texts)
    out: list[str] = []
    pos = start
    while len(out) < quota and pos < len(traffic):
        chunk = [e.text for e in traffic[pos : pos + ex.batch_size]]
        pred, conf = predict_all(ex, student, chunk)
        local = answers_locally(escalation_scores(conf, pred, oos), threshold)
        for text, is_local in zip(chunk, local.tolist(), strict=True):
            pos += 1
            if not is_local:
                out.append(text)
                if len(out) == quota:
                    break
    escalated = len(out)
    return out, pos - start, escalated
