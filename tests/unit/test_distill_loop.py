"""The distillation loop's decisions and rounds, with a gold teacher and a hashed-word embedder
(no model download, no MiniLM): fast and deterministic."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pytest

from duetto.calibrate import Operating, Target, choose_threshold
from duetto.distill.data import Example, IntentDataset, sample
from duetto.distill.decide import (
    answers_locally,
    better_than_deployed,
    calibrate_escalation,
    escalation_scores,
    oos_floor,
    paired_margin,
    score_round,
    with_margin,
)
from duetto.distill.loop import LoopConfig, audit_sample, run_rounds, split_data
from duetto.distill.ray_exec import LocalExecutor
from duetto.distill.students.head import HeadStudent
from duetto.distill.synthetic import HashedWords, synthetic
from duetto.distill.teachers import GoldTeacher


def gold_of(ds: IntentDataset) -> GoldTeacher:
    return GoldTeacher(ds.gold_labels())


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
    threshold, op = calibrate_escalation(conf, predicted, teacher, Target("quality", 0.9), z=0.0)
    local = conf >= threshold
    agree = np.array([p == "a" for p in predicted])
    realised = np.where(local, agree, True).mean()
    assert realised >= 0.9 and op.quality == pytest.approx(realised)
    assert 0.0 < local.mean() < 1.0
    # A margin asks for more: never a lower threshold.
    stricter, _ = calibrate_escalation(conf, predicted, teacher, Target("quality", 0.9), z=2.0)
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
    t_teacher, _ = calibrate_escalation(conf, student, teacher, Target("quality", 0.95), z=0.0)
    t_gold, op = calibrate_escalation(
        conf, student, teacher, Target("quality", 0.9), z=0.0, reference=gold
    )
    assert (conf >= t_teacher).mean() < 0.1
    assert (conf >= t_gold).mean() > 0.5
    assert op.quality >= 0.9 * (teacher == "a").mean()


# --------------------------------------------------------------------------- gating


class Scrambled:
    """A head student that answers another label on half the queries (chosen by a hash of the
    text), with unchanged confidence: as sure of itself as the real one, and much worse."""

    name = "head"

    def __init__(self, inner: HeadStudent, labels: Sequence[str]) -> None:
        self.inner, self.labels = inner, list(labels)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.inner.fit(texts, labels)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        pred, conf = self.inner.predict(texts)
        out = [
            self.labels[(self.labels.index(p) + 1) % len(self.labels)]
            if zlib.crc32(t.encode()) % 2
            else p
            for t, p in zip(texts, pred, strict=True)
        ]
        return out, conf


def sequence_of(ds: IntentDataset, kinds: str) -> Callable[[], object]:
    """A student factory giving, call after call, a good ("g") or scrambled ("b") head; the
    first call is the loop's name probe."""
    calls = iter("g" + kinds)

    def make() -> object:
        head = HeadStudent(ds.labels, embedder=HashedWords())
        return head if next(calls) == "g" else Scrambled(head, ds.labels)

    return make


GATE_CFG = LoopConfig(train=240, rounds=3, calib=200, traffic=900, target=Target("quality", 0.9))


def test_gate_prefers_more_local_answers_and_keeps_the_deployed_on_ties() -> None:
    q = Target("quality", 0.9)
    deployed = Operating(0.5, 0.92, 0.40, 400.0)
    assert better_than_deployed(Operating(0.4, 0.91, 0.30, 300.0), deployed, q)
    assert not better_than_deployed(Operating(0.6, 0.95, 0.50, 500.0), deployed, q)
    assert not better_than_deployed(deployed, deployed, q)  # tie: keep the deployed one
    assert better_than_deployed(Operating(0.5, 0.93, 0.40, 400.0), deployed, q)
    # Nothing deployed (all to the LLM): any student answering something locally wins.
    assert better_than_deployed(Operating(0.9, 0.99, 0.95, 950.0), None, q)
    assert not better_than_deployed(Operating(np.inf, 1.0, 1.0, 1000.0), None, q)
    # A share target fixes the LLM share: the metric is quality.
    share = Target("llm_share", 0.4)
    assert better_than_deployed(Operating(0.5, 0.93, 0.40, 400.0), deployed, share)
    assert not better_than_deployed(Operating(0.3, 0.90, 0.35, 350.0), deployed, share)


def test_gate_rejects_a_worse_candidate() -> None:
    ds = synthetic()
    gated = run_rounds(ds, gold_of(ds), sequence_of(ds, "gbg"), GATE_CFG, LocalExecutor())
    r = gated.to_dict()["rounds"]
    assert [x["deployed_round"] for x in r[:3]] == [0, 1, 1]
    assert r[1]["candidate_deployed"] is True and r[2]["candidate_deployed"] is False
    # The scrambled candidate answered less of the held-out sample at the same target...
    assert r[2]["candidate_calib_local_share"] < r[1]["candidate_calib_local_share"]
    # ... so round 2 still serves round 1's student: the same threshold and test scores.
    for key in ("threshold", "llm_call_share", "quality", "student_accuracy", "calib_llm_share"):
        assert r[2][key] == r[1][key]
    # Without the gate the worse student is deployed, and the test set shows it.
    ungated = run_rounds(
        ds, gold_of(ds), sequence_of(ds, "gbg"), replace(GATE_CFG, gate=False), LocalExecutor()
    ).to_dict()["rounds"]
    assert [x["deployed_round"] for x in ungated] == [0, 1, 2, 3]
    assert ungated[1] == {**r[1], "seconds": ungated[1]["seconds"]}  # round 1 is the same
    assert ungated[2]["llm_call_share"] > r[2]["llm_call_share"]
    assert ungated[2]["student_accuracy"] < r[2]["student_accuracy"]


def test_gate_deploys_a_better_candidate() -> None:
    ds = synthetic()
    out = run_rounds(ds, gold_of(ds), sequence_of(ds, "bgg"), GATE_CFG, LocalExecutor())
    r = out.to_dict()["rounds"]
    assert r[1]["deployed_round"] == 1  # the scrambled student beats "everything to the LLM"
    assert r[2]["candidate_deployed"] is True and r[2]["deployed_round"] == 2
    assert r[2]["candidate_calib_local_share"] > r[1]["candidate_calib_local_share"]
    assert r[2]["llm_call_share"] < r[1]["llm_call_share"]
    assert r[3]["deployed_round"] in (2, 3)


def test_gate_decisions_never_look_at_the_test_set() -> None:
    ds = synthetic()
    # The same task with the test labels shuffled: scores change, decisions must not.
    rng = np.random.default_rng(3)
    shuffled = [e.label for e in ds.test]
    rng.shuffle(shuffled)
    test2 = tuple(Example(e.text, lab) for e, lab in zip(ds.test, shuffled, strict=True))
    ds2 = replace(ds, test=test2)

    def teacher(d: IntentDataset) -> GoldTeacher:  # a text in both splits: the train label
        return GoldTeacher({e.text: e.label for e in (*d.test, *d.train)})

    runs = [
        run_rounds(d, teacher(d), sequence_of(d, "gbg"), GATE_CFG, LocalExecutor()).to_dict()
        for d in (ds, ds2)
    ]
    keys = ("deployed_round", "candidate_deployed", "candidate_calib_local_share", "threshold")
    assert [[x[k] for k in keys] for x in runs[0]["rounds"]] == [
        [x[k] for k in keys] for x in runs[1]["rounds"]
    ]
    assert runs[0]["rounds"][1]["quality"] != runs[1]["rounds"][1]["quality"]


# --------------------------------------------------------------------------- margin soundness


def test_paired_margin_holds_the_target_where_the_proportion_margin_does_not() -> None:
    """A noisy teacher (right half the time), a gold audit sample of 300, target 0.95 x the
    teacher's quality (met from a threshold of ~0.24 up in this population). Over 60 audit
    samples, the threshold each margin picks is checked on a large fresh sample: with z=1.28
    the target should fail ~10% of the time. The proportion margin of `with_margin` (SE of 0.95
    at n=300, ~0.013 of the fraction) fails 23 times in 60; the paired-difference margin 8."""
    rng = np.random.default_rng(0)
    fraction, n, z = 0.95, 300, 1.28

    def draw(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        conf = rng.uniform(size=m)
        teacher_right = rng.uniform(size=m) < 0.5
        own = rng.uniform(size=m) < conf * 0.7  # worse than the teacher when unsure
        student_right = np.where(rng.uniform(size=m) < 0.5, teacher_right, own)
        return conf, teacher_right, student_right

    big_conf, big_t, big_s = draw(50_000)

    def true_ratio(threshold: float) -> float:
        return float(np.where(big_conf >= threshold, big_s, big_t).mean() / big_t.mean())

    fails = {"proportion": 0, "paired": 0}
    for _ in range(60):
        conf, t_right, s_right = draw(n)
        gold = np.array(["g"] * n)
        teacher = np.where(t_right, "g", "t")
        student = np.where(s_right, "g", "s")
        op = choose_threshold(
            conf,
            s_right.astype(float),
            t_right.astype(float),
            np.zeros(n),
            np.ones(n),
            with_margin(Target("quality", fraction), n, z),
        )
        t_paired, op_paired = calibrate_escalation(
            conf, student, teacher, Target("quality", fraction), z, reference=gold
        )
        # The paired pick clears its own bar on the audit sample.
        d_mean = op_paired.quality - fraction * t_right.mean()
        assert d_mean >= paired_margin(conf, t_paired, student, teacher, gold, fraction, z) - 1e-9
        fails["proportion"] += true_ratio(max(op.threshold, 0.0)) < fraction
        fails["paired"] += true_ratio(t_paired) < fraction
    assert fails["paired"] <= 0.2 * 60
    assert fails["proportion"] >= 0.25 * 60


def test_oos_floor_escalates_the_asked_share_of_out_of_scope_queries() -> None:
    scores = np.array([0.1, 0.5, 0.9, -1.0, 0.99])
    is_oos = np.array([True, True, True, True, False])
    t = oos_floor(scores, is_oos, 0.75)  # 3 of the 4 out-of-scope queries: -1, 0.1 and 0.5
    assert ((scores < t) & is_oos).sum() == 3 and t <= 0.9
    assert oos_floor(scores, is_oos, 1.0) > 0.9
    assert oos_floor(scores, is_oos, 0.0) == 0.0
    assert oos_floor(scores, np.zeros(5, dtype=bool), 0.9) == 0.0
    assert oos_floor(np.array([-1.0, -1.0]), np.array([True, True]), 1.0) == 0.0


@pytest.mark.parametrize("reference", [None, "gold"])
def test_calibration_never_goes_below_the_out_of_scope_floor(reference: str | None) -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 300)
    teacher = ["a"] * 300
    predicted = ["a" if rng.uniform() < c else "b" for c in conf]
    ref = teacher if reference else None
    free, _ = calibrate_escalation(
        conf, predicted, teacher, Target("quality", 0.5), z=0.0, reference=ref
    )
    floored, op = calibrate_escalation(
        conf, predicted, teacher, Target("quality", 0.5), 0.0, ref, min_threshold=free + 0.2
    )
    assert floored >= free + 0.2
    assert op.llm_share == pytest.approx(float((conf < floored).mean()))


def test_the_audit_sample_mirrors_the_test_sets_out_of_scope_share() -> None:
    ds = synthetic(oos=True, n_val=400)
    cfg = LoopConfig(calib=200, traffic=900)
    traffic, calib, test = split_data(ds, cfg)
    assert len(calib) == 200 and set(calib) <= set(ds.validation)
    test_share = sum(e.label == "oos" for e in test) / len(test)
    assert sum(e.label == "oos" for e in calib) == round(test_share * 200)
    assert len(traffic) == 900 and traffic == split_data(ds, replace(cfg, calib=50))[0]
    chosen = audit_sample(ds, replace(cfg, calib_oos_share=0.05), test)
    assert sum(e.label == "oos" for e in chosen) == 10
    # Without a validation split the audit comes from train, disjoint from the traffic.
    t2, c2, _ = split_data(ds, replace(cfg, calib_source="train"))
    shuffled = sample(ds.train, None, cfg.seed)
    assert c2 == shuffled[:200] and t2 == shuffled[200:1100]
    with pytest.raises(ValueError, match="no validation split"):
        split_data(synthetic(), replace(cfg, calib_source="validation"))


def test_rounds_escalate_the_out_of_scope_share_the_audit_asks_for() -> None:
    ds = synthetic(oos=True, n_val=400)
    cfg = LoopConfig(
        train=300,
        rounds=2,
        calib=200,
        traffic=900,
        target=Target("quality", 0.8),
        oos_escalation=0.95,
        calib_reference="gold",
    )
    make = lambda: HeadStudent(ds.labels, embedder=HashedWords())  # noqa: E731
    result = run_rounds(ds, gold_of(ds), make, cfg, LocalExecutor())
    assert result.config["calib_source"] == "validation"
    assert result.config["calib_out_of_scope"] > 0
    deployed = [r for r in result.rounds[1:] if r.deployed_round]
    assert deployed and all(r.calib_oos_escalated >= 0.95 for r in deployed)
    assert deployed[-1].oos_escalated >= 0.8
