"""Round 1 of `duetto distill rounds --calib-reference gold`: the previous quality margin against
the paired-difference margin, on the same student and the same held-out sample.

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/distill_margin.py \
        --dataset banking77 --data-dir ../shared/datasets --teacher-model standin-1.5b \
        --calib 300 --test 600 [--json out.json]

Round 1 of the loop trains the `head` student on the teacher's labels of the first
`train / rounds` traffic queries (the same split and seed as `duetto distill rounds`), then
calibrates the escalation threshold on the gold-labelled held-out sample to `quality=F` x the
teacher's own quality, in two ways:
  - `proportion`: the fraction F raised by z standard errors of a proportion at F
    (`with_margin`, what the loop did before the paired margin);
  - `paired`: mean(system right - F x teacher right) - z SE >= 0 (`calibrate_paired`, the loop now).
It prints, for each, the held-out local share and quality, and the test local share, quality and
quality / teacher quality (the test set is only scored, never used to choose anything). The
teacher's labels come from its disk cache (a run of `duetto distill rounds` with the same
settings fills it); missing ones are labelled here (CPU-heavy: run under flock). With
out-of-scope queries (clinc150) it also prints where they are and the teacher's accuracy on them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from duetto.calibrate import Target, choose_threshold
from duetto.distill.data import TASK_HINTS, load_dataset
from duetto.distill.decide import (
    calibrate_escalation,
    escalation_scores,
    score_round,
    with_margin,
)
from duetto.distill.loop import LoopConfig, split_data
from duetto.distill.students.head import HeadStudent
from duetto.distill.teachers import LocalLLMTeacher, teacher_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="banking77")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--teacher-model", default="standin-1.5b")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calib", type=int, default=300)
    ap.add_argument("--test", type=int, default=600)
    ap.add_argument("--fraction", type=float, default=0.95)
    ap.add_argument("--z", type=float, default=1.28)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    ds = load_dataset(args.dataset, args.data_dir)
    cfg = LoopConfig(
        train=args.train,
        rounds=args.rounds,
        calib=args.calib,
        test=args.test,
        calib_reference="gold",
        seed=args.seed,
    )
    traffic, calib, test = split_data(ds, cfg)
    teacher = LocalLLMTeacher(
        teacher_model_path(args.teacher_model),
        ds.labels,
        task=TASK_HINTS.get(ds.name, "user queries"),
        out_of_scope=ds.out_of_scope,
    )
    oos = ds.out_of_scope
    traces = [e.text for e in traffic[: cfg.train // cfg.rounds]]
    student = HeadStudent(ds.labels)
    student.fit(traces, teacher.label(traces))

    c_texts = [e.text for e in calib]
    c_gold = np.asarray([e.label for e in calib])
    c_teacher = np.asarray(teacher.label(c_texts))
    c_pred_list, c_conf = student.predict(c_texts)
    c_pred = np.asarray(c_pred_list)
    c_scores = escalation_scores(c_conf, c_pred_list, oos)
    n = len(c_texts)
    target = Target("quality", args.fraction)

    agree = (c_pred == c_gold).astype(float)
    agree[c_scores < 0] = 0.0
    op_prop = choose_threshold(
        c_scores,
        agree,
        (c_teacher == c_gold).astype(float),
        np.zeros(n),
        np.ones(n),
        with_margin(target, n, args.z),
    )
    t_paired, op_paired = calibrate_escalation(
        c_scores, c_pred_list, list(c_teacher), target, args.z, reference=list(c_gold)
    )

    t_texts = [e.text for e in test]
    t_gold = [e.label for e in test]
    t_teacher = teacher.label(t_texts)
    t_pred, t_conf = student.predict(t_texts)
    t_scores = escalation_scores(t_conf, t_pred, oos)

    out: dict[str, object] = {
        "dataset": ds.name,
        "teacher": teacher.name,
        "traces": len(traces),
        "calib": n,
        "test": len(test),
        "teacher_quality_calib": float((c_teacher == c_gold).mean()),
    }
    if oos is not None:  # where the out-of-scope queries are, and how the teacher labels them
        g, tl = np.asarray(t_gold), np.asarray(t_teacher)
        out["calib_out_of_scope"] = int((c_gold == oos).sum())
        out["test_out_of_scope"] = int((g == oos).sum())
        out["teacher_quality_test_in_scope"] = float((tl == g)[g != oos].mean())
        out["teacher_quality_test_out_of_scope"] = float((tl == g)[g == oos].mean())
    for name, threshold, op in (
        ("proportion", max(op_prop.threshold, 0.0), op_prop),
        ("paired", t_paired, op_paired),
    ):
        s = score_round(t_scores, threshold, t_pred, t_teacher, t_gold, oos)
        quality, teacher_quality = float(s["quality"] or 0.0), float(s["teacher_quality"] or 0.0)
        out[name] = {
            "threshold": threshold,
            "calib_local_share": 1.0 - op.llm_share,
            "calib_quality": op.quality,
            "test_local_share": s["local_share"],
            "test_quality": quality,
            "test_teacher_quality": teacher_quality,
            "test_quality_ratio": quality / teacher_quality if teacher_quality else None,
            "test_oos_escalated": s["oos_escalated"],
        }
    text = json.dumps(out, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
