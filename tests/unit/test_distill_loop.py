"""The distillation loop's decisions and rounds, with a gold teacher and a hashed-word embedder
(no model download, no MiniLM): fast and deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from duetto.calibrate import Target
from duetto.distill.data import IntentDataset
from duetto.distill.loop import (
    LoopConfig,
    answers_locally,
    calibrate,
    escalation_scores,
    run_rounds,
    score_round,
    with_margin,
)
from duetto.distill.ray_exec import LocalExecutor
from duetto.distill.students.head import HeadStudent
from duetto.distill.synthetic import HashedWords, synthetic
from duetto.distill.teachers import GoldTeacher


def gold_of(ds: IntentDataset) -> GoldTeacher:
    return GoldTeacher({e.text: e.label for e in (*ds.train, *ds.test)})


def test_escalation_scores_put_out_of_scope_below_any_threshold() -> None:
    s = escalation_scores([0.9, 0.8], ["oos", "a"], "oos")
    assert s.tolist() == [-1.0, 0.8]
    assert answers_locally(s, 0.0).tolist() == [False, True]
    assert escalation_scores([0.9], ["oos"], None).tolist() == [0.9]


def test_calibrate_meets_the_agreement_target_on_held_out_data() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 400)
    teacher = ["a"] * 400
    # The student agrees with the teacher more often when it is confident.
    predicted = ["a" if rng.uniform() < c else "b" for c in conf]
    threshold, op = calibrate(conf, predicted, teacher, Target("quality", 0.9), z=0.0)
    local = conf >= threshold
    agree = np.array([p == "a" for p in predicted])
    realised = np.where(local, agree, True).mean()
    assert realised >= 0.9 and op.quality == pytest.approx(realised)
    assert 0.0 < local.mean() < 1.0
    # A margin asks for more: never a lower threshold.
    stricter, _ = calibrate(conf, predicted, teacher, Target("quality", 0.9), z=2.0)
    assert stricter >= threshold
    assert with_margin(Target("quality", 0.9), 100, 1.0).value == pytest.approx(0.93)
    assert with_margin(Target("llm_share", 0.3), 100, 1.0).value == 0.3


def test_score_round_uses_the_teacher_where_escalated() -> None:
    s = score_round(
        np.array([0.9, 0.2, -1.0, 0.95]),
        0.5,
        ["a", "b", "oos", "c"],  # student
        ["a", "a", "oos", "d"],  # teacher
        ["a", "a", "oos", "c"],  # gold
        "oos",
    )
    assert s["local_share"] == 0.5 and s["llm_call_share"] == 0.5
    assert s["quality"] == 1.0  # local a, teacher a, teacher oos, local c
    assert s["teacher_quality"] == 0.75
    assert s["student_accuracy"] == 0.75
    assert s["oos_escalated"] == 1.0


def test_rounds_cut_llm_calls_and_keep_quality() -> None:
    ds = synthetic()
    cfg = LoopConfig(train=240, rounds=3, calib=200, traffic=900, target=Target("quality", 0.9))
    make = lambda: HeadStudent(ds.labels, embedder=HashedWords())  # noqa: E731
    result = run_rounds(ds, gold_of(ds), make, cfg, LocalExecutor(batch_size=64))
    out = json.loads(json.dumps(result.to_dict()))
    assert out["task"] == "synthetic" and out["teacher_is_upper_bound"] is True
    rounds = out["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    for key in ("llm_call_share", "quality", "teacher_quality", "student_accuracy", "local_share"):
        assert all(key in r for r in rounds)
    assert rounds[0]["llm_call_share"] == 1.0 and rounds[0]["student_accuracy"] is None
    # Traces are the escalated queries: at most the budget, at least round 1's (all escalated).
    assert 80 <= rounds[-1]["traces"] <= 240
    assert rounds[1]["traffic_llm_share"] == 1.0
    last = rounds[-1]
    assert last["llm_call_share"] <= 0.6
    assert last["quality"] >= 0.85 * last["teacher_quality"]
    # Closed loop: after round 1 only escalated traffic becomes traces, so more traffic is seen
    # per trace, and the LLM answers less of it.
    assert rounds[2]["traffic_seen"] > 80
    assert rounds[2]["traffic_llm_share"] < 1.0


def test_out_of_scope_queries_are_escalated() -> None:
    ds = synthetic(oos=True)
    cfg = LoopConfig(train=300, rounds=2, calib=200, traffic=900, target=Target("quality", 0.9))
    make = lambda: HeadStudent(ds.labels, embedder=HashedWords())  # noqa: E731
    result = run_rounds(ds, gold_of(ds), make, cfg, LocalExecutor())
    last = result.rounds[-1]
    assert last.oos_escalated is not None and last.oos_escalated >= 0.8


def test_calibrating_on_a_gold_audit_sample_targets_the_teachers_own_quality() -> None:
    # A noisy teacher (right half the time) and a student as good as it but not agreeing with
    # it: against the teacher the target needs everything escalated; against gold it does not.
    rng = np.random.default_rng(1)
    n = 400
    gold = np.array(["a"] * n)
    teacher = np.where(rng.uniform(size=n) < 0.5, "a", "b")
    student = np.where(rng.uniform(size=n) < 0.5, "a", "c")
    conf = rng.uniform(size=n)
    t_teacher, _ = calibrate(conf, student, teacher, Target("quality", 0.95), z=0.0)
    t_gold, op = calibrate(conf, student, teacher, Target("quality", 0.9), z=0.0, reference=gold)
    assert (conf >= t_teacher).mean() < 0.1
    assert (conf >= t_gold).mean() > 0.5
    assert op.quality >= 0.9 * (teacher == "a").mean()
