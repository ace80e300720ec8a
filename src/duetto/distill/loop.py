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

The decisions and scores are pure functions in `duetto.distill.decide`; this module holds the
configuration, the records and the rounds. Labelling and prediction go through an Executor (this
process or Ray).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from duetto.calibrate import Operating
from duetto.distill.data import Example, IntentDataset, sample, stratified_sample
from duetto.distill.decide import (
    answers_locally,
    better_than_deployed,
    calibrate_escalation,
    escalation_scores,
    margin_of,
    oos_floor,
    paired_margin,
    score_round,
)
from duetto.distill.ray_exec import Executor, LocalExecutor, label_all, predict_all
from duetto.distill.records import DEFAULT_TARGET, LoopConfig, LoopResult, RoundRecord
from duetto.distill.students import Student
from duetto.distill.teachers import Teacher

__all__ = [
    "DEFAULT_TARGET",
    "LoopConfig",
    "LoopResult",
    "RoundRecord",
    "audit_sample",
    "audit_source",
    "run_rounds",
    "split_data",
]


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
    t0 = time.perf_counter()
    run = _Run.prepare(ds, teacher, cfg, ex, log)
    result = LoopResult(
        task=ds.name,
        teacher=teacher.name,
        upper_bound=teacher.upper_bound,
        student=make_student().name,
        config={
            **asdict(cfg),
            "target": str(cfg.target),
            "calib_source": audit_source(ds, cfg),
            "calib_out_of_scope": sum(ds.is_out_of_scope(g) for g in run.calib_gold),
        },
    )
    result.rounds.append(run.round_zero(time.perf_counter() - t0))

    deployed: _Deployed | None = None  # None: no student, every query goes to the LLM
    pos = 0
    for rnd in range(1, cfg.rounds + 1):
        t_round = time.perf_counter()
        quota = cfg.train * rnd // cfg.rounds - cfg.train * (rnd - 1) // cfg.rounds
        new, seen, escalated = _collect_traces(
            ex,
            deployed.student if deployed else None,
            deployed.threshold if deployed else 0.0,
            run.traffic,
            pos,
            quota,
            cfg,
            run.oos,
        )
        pos += seen
        run.trace_texts += new
        run.trace_labels += label_all(ex, teacher, new)
        candidate = _train_round(run, make_student())
        deploy = not cfg.gate or better_than_deployed(
            candidate.op, deployed.op if deployed else None, cfg.target
        )
        if deploy:
            deployed = _deploy(run, rnd, candidate)
        record = _score_round(run, rnd, deployed, candidate, deploy)
        record.traffic_seen = seen
        record.traffic_llm_share = escalated / seen if seen else None
        record.seconds = round(time.perf_counter() - t_round, 2)
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
class _Run:
    """What every round reads: the splits, the teacher's labels of test and audit queries, and
    the traces gathered so far."""

    ex: Executor
    cfg: LoopConfig
    oos: str | None
    traffic: list[Example]
    calib_texts: list[str]
    calib_gold: list[str]
    test_texts: list[str]
    gold: list[str]
    teacher_test: list[str]
    teacher_calib: list[str]
    calib_ref: list[str] | None  # the audit's human labels when calib_reference="gold"
    calib_oos: np.ndarray  # the audit's out-of-scope queries, by the reference calibrated against
    trace_texts: list[str] = field(default_factory=list)
    trace_labels: list[str] = field(default_factory=list)

    @classmethod
    def prepare(
        cls,
        ds: IntentDataset,
        teacher: Teacher,
        cfg: LoopConfig,
        ex: Executor,
        log: Callable[[str], None],
    ) -> _Run:
        traffic, calib, test = split_data(ds, cfg)
        if len(traffic) < cfg.train:
            raise ValueError(f"only {len(traffic)} traffic queries for {cfg.train} traces")
        test_texts, gold = [e.text for e in test], [e.label for e in test]
        calib_texts = [e.text for e in calib]
        calib_gold = [e.label for e in calib]
        log(f"teacher {teacher.name}: labelling {len(test)} test and {len(calib)} held-out queries")
        teacher_test = label_all(ex, teacher, test_texts)
        teacher_calib = label_all(ex, teacher, calib_texts)
        calib_ref = calib_gold if cfg.calib_reference == "gold" else None
        calib_oos = np.asarray(
            [ds.is_out_of_scope(label) for label in (calib_ref or teacher_calib)], dtype=bool
        )
        return cls(
            ex, cfg, ds.out_of_scope, traffic, calib_texts, calib_gold, test_texts, gold,
            teacher_test, teacher_calib, calib_ref, calib_oos,
        )  # fmt: skip

    def all_to_teacher(self) -> dict[str, float | None]:
        """The test scores of sending every query to the LLM."""
        n = len(self.gold)
        return score_round(
            np.full(n, -1.0), 0.0, self.teacher_test, self.teacher_test, self.gold, self.oos
        )

    def round_zero(self, seconds: float) -> RoundRecord:
        base = self.all_to_teacher()
        return RoundRecord(
            round=0,
            llm_call_share=1.0,
            quality=float(base["quality"] or 0.0),
            teacher_quality=float(base["teacher_quality"] or 0.0),
            student_accuracy=None,
            local_share=0.0,
            oos_escalated=1.0 if self.oos is not None and self.oos in self.gold else None,
            seconds=round(seconds, 2),
        )


@dataclass(slots=True)
class _Candidate:
    """A round's newly trained student and its calibrated held-out operating point."""

    student: Student
    threshold: float
    op: Operating
    margin: float  # the quality margin the threshold had to clear
    calib_scores: np.ndarray


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


def _train_round(run: _Run, student: Student) -> _Candidate:
    """Train `student` on every trace so far and calibrate its threshold on the audit sample."""
    cfg = run.cfg
    student.fit(run.trace_texts, run.trace_labels)
    calib_pred, calib_conf = predict_all(run.ex, student, run.calib_texts)
    scores = escalation_scores(calib_conf, calib_pred, run.oos)
    floor = oos_floor(scores, run.calib_oos, cfg.oos_escalation)
    threshold, op = calibrate_escalation(
        scores, calib_pred, run.teacher_calib, cfg.target, cfg.margin_z, run.calib_ref, floor
    )
    if run.calib_ref is not None and cfg.target.kind == "quality":
        margin = paired_margin(
            scores,
            threshold,
            calib_pred,
            run.teacher_calib,
            run.calib_ref,
            cfg.target.value,
            cfg.margin_z,
        )
    else:
        margin = margin_of(cfg.target, len(run.calib_texts), cfg.margin_z)
    return _Candidate(student, threshold, op, margin, scores)


def _deploy(run: _Run, rnd: int, c: _Candidate) -> _Deployed:
    """The candidate becomes the deployed student: its test predictions are made once here."""
    test_pred, test_conf = predict_all(run.ex, c.student, run.test_texts)
    oos_esc = (
        float((c.calib_scores[run.calib_oos] < c.threshold).mean()) if run.calib_oos.any() else None
    )
    return _Deployed(rnd, c.student, c.threshold, c.op, c.margin, oos_esc, test_pred, test_conf)


def _score_round(
    run: _Run, rnd: int, deployed: _Deployed | None, candidate: _Candidate, deploy: bool
) -> RoundRecord:
    """The round's record: test scores of the deployed system, and the candidate's held-out
    point. Traffic counts and time are the caller's."""
    if deployed is None:
        s = run.all_to_teacher()
        s["student_accuracy"] = s["student_agreement"] = None
    else:
        s = score_round(
            escalation_scores(deployed.test_conf, deployed.test_pred, run.oos),
            deployed.threshold,
            deployed.test_pred,
            run.teacher_test,
            run.gold,
            run.oos,
        )
    return RoundRecord(
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
        candidate_threshold=candidate.threshold,
        candidate_calib_quality=candidate.op.quality,
        candidate_calib_local_share=1.0 - candidate.op.llm_share,
        traces=len(run.trace_texts),
    )


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
