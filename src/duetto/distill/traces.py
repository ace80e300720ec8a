"""Traces → a student: the large model's accepted answers, from the gateway's trace store or a
JSONL file, become a training set; a student learns them and is evaluated on held-out prompts.

    source     a store URL (`sqlite:///duetto-gateway.db`, `postgresql://…`), a SQLite file the
               gateway wrote, or a JSONL file (docs/distill.md, `trace_sources.JSONL_FORMAT`)
    select     status ok (accepted), of the requested task, answered by the teacher (a remote
               model, or one named by `teacher_models`), optionally a verifier score >= X;
               redacted copies (placeholders like <EMAIL_ADDRESS_1>) are dropped unless asked
    dedupe     one example per prompt (whitespace and case folded); conflicting answers: the
               most frequent one, ties to the latest
    split      prompts shuffled with a fixed seed: train, then held-out = calibration + test
               halves, so no prompt is in two parts
    evaluate   label students (head, fewshot): agreement with the teacher, and the share they
               would answer locally at the threshold calibrated on the calibration half to the
               target (the rounds loop's `calibrate` / `score_round`), reported on the test half;
               lora: before/after agreement with the teacher (label constrained decoding, or
               greedy generation scored by exact match and token F1)

How sources are read and which trace step gave the answer: `duetto.distill.trace_sources`.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from duetto.answers import prompt_key
from duetto.calibrate import Target
from duetto.distill.selection import (
    Item,
    Selection,
    clean_label,
    dedupe,
    looks_like_labels,
    read_labels,
    select,
    split_items,
)
from duetto.distill.students import save_student
from duetto.distill.trace_sources import load_traces
from duetto.errors import DataError, UserError

__all__ = [  # the command's surface (selection rules: duetto.distill.selection)
    "EMBEDDERS",
    "STUDENTS",
    "Options",
    "Selection",
    "distill_from_traces",
    "evaluate_label_student",
    "make_label_student",
    "read_labels",
    "run_lora",
    "token_f1",
]

STUDENTS = ("head", "fewshot", "lora")
LABEL_STUDENTS = ("head", "fewshot")
EMBEDDERS = ("minilm", "hashed-words")


@dataclass(slots=True)
class Options:
    holdout: float = 0.2
    target: Target = field(default_factory=lambda: Target("quality", 0.95))
    seed: int = 0
    limit: int | None = None  # at most this many training examples (lora: 200 by default)
    eval_limit: int | None = None  # lora: at most this many test prompts (100 by default)
    out_of_scope: str | None = None  # a label the student must never answer locally
    embedder: str = "minilm"
    shots: int = 8
    epochs: int = 2
    learning_rate: float = 1e-3


# --------------------------------------------------------------------------- students


def make_label_student(kind: str, labels: Sequence[str], opts: Options) -> Any:
    embedder: Any = None
    if opts.embedder == "hashed-words":
        from duetto.distill.synthetic import HashedWords

        embedder = HashedWords()
    elif opts.embedder != "minilm":
        raise UserError(f"unknown embedder {opts.embedder!r}: {' or '.join(EMBEDDERS)}")
    if kind == "head":
        from duetto.distill.students.head import HeadStudent

        return HeadStudent(labels, embedder=embedder)
    if kind == "fewshot":
        from duetto.distill.students.fewshot import FewShotStudent

        return FewShotStudent(labels, k=opts.shots, embedder=embedder)
    raise UserError(f"unknown student {kind!r}: {', '.join(STUDENTS)}")


def evaluate_label_student(
    student: Any,
    train: Sequence[Item],
    calib: Sequence[Item],
    test: Sequence[Item],
    target: Target,
    out_of_scope: str | None = None,
) -> dict[str, Any]:
    """Fit, calibrate the local/escalate threshold on `calib` (agreement with the teacher, the
    rounds loop's rule), and report on `test`. Quality is measured against the teacher's
    answers; `*_vs_gold` also against the reference answers when every test item has one."""
    from duetto.distill.decide import calibrate_escalation, escalation_scores, score_round

    t0 = time.perf_counter()
    try:
        student.fit([i.prompt for i in train], [i.answer for i in train])
    except ValueError as exc:
        raise DataError(f"cannot train the {student.name} student: {exc}") from exc
    fit_s = time.perf_counter() - t0
    c_pred, c_conf = student.predict([i.prompt for i in calib])
    c_teacher = [i.answer for i in calib]
    threshold, op = calibrate_escalation(
        escalation_scores(c_conf, c_pred, out_of_scope), c_pred, c_teacher, target
    )
    t_pred, t_conf = student.predict([i.prompt for i in test])
    t_teacher = [i.answer for i in test]
    scores = escalation_scores(t_conf, t_pred, out_of_scope)
    s = score_round(scores, threshold, t_pred, t_teacher, t_teacher, out_of_scope)
    out: dict[str, Any] = {
        "threshold": threshold if math.isfinite(threshold) else None,
        "calib": {
            "n": len(calib),
            "student_agreement": _mean(p == t for p, t in zip(c_pred, c_teacher, strict=True)),
            "quality": op.quality,
            "local_share": 1.0 - op.llm_share,
            "llm_call_share": op.llm_share,
        },
        "test": {
            "n": len(test),
            "student_agreement": s["student_agreement"],
            "quality": s["quality"],  # student where local, teacher elsewhere, vs the teacher
            "local_share": s["local_share"],
            "llm_call_share": s["llm_call_share"],
            "local_agreement": _local_agreement(scores, threshold, t_pred, t_teacher),
        },
        "fit_seconds": round(fit_s, 2),
    }
    if out_of_scope is not None:
        out["test"]["oos_escalated"] = s["oos_escalated"]
    if test and all(i.gold is not None for i in test):
        gold = [str(i.gold) for i in test]
        g = score_round(scores, threshold, t_pred, t_teacher, gold, out_of_scope)
        out["test"].update(
            quality_vs_gold=g["quality"],
            teacher_vs_gold=g["teacher_quality"],
            student_vs_gold=g["student_accuracy"],
        )
    return out


def _mean(values: Iterable[bool]) -> float | None:
    v = list(values)
    return sum(v) / len(v) if v else None


def _local_agreement(
    scores: np.ndarray, threshold: float, pred: Sequence[str], teacher: Sequence[str]
) -> float | None:
    """Agreement with the teacher on the prompts the student would answer itself."""
    local = np.asarray(scores, dtype=float) >= threshold
    if not local.any():
        return None
    agree = np.asarray(pred)[local] == np.asarray(teacher)[local]
    return float(agree.mean())


# --------------------------------------------------------------------------- lora


def token_f1(a: str, b: str) -> float:
    x, y = a.casefold().split(), b.casefold().split()
    if not x or not y:
        return float(x == y)
    common = sum((Counter(x) & Counter(y)).values())
    if common == 0:
        return 0.0
    p, r = common / len(x), common / len(y)
    return 2 * p * r / (p + r)


def generate(student: Any, texts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy free generation with the student's current model (base or merged)."""
    import torch

    student._ensure_loaded()
    tok, out = student.tokenizer, []
    student.model.eval()
    with torch.no_grad():
        for text in texts:
            ids = tok(student.prompt(text), return_tensors="pt").input_ids
            gen = student.model.generate(
                ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
            out.append(tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True).strip())
    return out


def _generation_scores(pred: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    pairs = list(zip(pred, ref, strict=True))
    n = max(1, len(pairs))
    return {
        "exact_match": sum(prompt_key(p) == prompt_key(r) for p, r in pairs) / n,
        "token_f1": sum(token_f1(p, r) for p, r in pairs) / n,
    }


def run_lora(
    task: str,
    train: Sequence[Item],
    test: Sequence[Item],
    labels: Sequence[str] | None,
    out_dir: Path,
    opts: Options,
) -> dict[str, Any]:
    """The `duetto distill lora` code path on trace data. With labels: constrained decoding over
    them, before/after agreement with the teacher (`lora_round`). Without: the system prompt
    most of the traces carried, greedy generation, exact match and token F1 before/after."""
    from duetto.distill.students.lora import LoraSettings, LoraStudent, lora_round

    texts, answers = [i.prompt for i in train], [i.answer for i in train]
    eval_texts, eval_ref = [i.prompt for i in test], [i.answer for i in test]
    generation = labels is None
    settings = LoraSettings(
        epochs=opts.epochs,
        learning_rate=opts.learning_rate,
        seed=opts.seed,
        max_tokens=256 if generation else 96,
    )
    student = LoraStudent(list(labels or []), out_dir / "student", task=task, settings=settings)
    if not generation:
        record = lora_round(student, texts, answers, eval_texts, eval_ref)
        record.update(
            mode="labels",
            agreement_before=record.pop("accuracy_before"),
            agreement_after=record.pop("accuracy_after"),
        )
        return record
    systems = Counter(i.system for i in train if i.system)
    if systems:
        student.system = systems.most_common(1)[0][0]
    else:
        student.system = "Answer the user's request."
    t0 = time.perf_counter()
    student._ensure_loaded()
    longest = max((len(student.tokenizer.encode(r)) for r in eval_ref), default=16)
    max_new = min(128, longest + 4)
    before = _generation_scores(generate(student, eval_texts, max_new), eval_ref)
    info = student.fit(texts, answers)
    after = _generation_scores(generate(student, eval_texts, max_new), eval_ref)
    merged = student.export()
    return {
        "student": "lora",
        "mode": "generation",
        "base": student.gguf_path.name,
        "train_examples": len(texts),
        "eval_examples": len(eval_texts),
        "max_new_tokens": max_new,
        "before": before,
        "after": after,
        "steps": info["steps"],
        "first_loss": info["losses"][0] if info["losses"] else None,
        "last_loss": info["losses"][-1] if info["losses"] else None,
        "train_seconds": round(info["train_seconds"], 1),
        "merged_model": str(merged),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------- the command


def _describe_empty(counts: dict[str, int], sel: Selection, tasks: Counter[str]) -> str:
    reasons = ", ".join(
        f"{v} {k.replace('_', ' ')}"
        for k, v in counts.items()
        if k not in ("records", "selected") and v
    )
    text = f"no usable records for task {sel.task!r}: {counts.get('records', 0)} records"
    if reasons:
        text += f" ({reasons})"
    if counts.get("other_task") and tasks:
        text += "; tasks present: " + ", ".join(f"{t} ({n})" for t, n in tasks.most_common(8))
    if counts.get("no_score"):
        text += "; --min-score keeps only answers a verifier scored"
    if counts.get("redacted_dropped"):
        text += "; --redacted keep trains on the placeholder text"
    return text


def distill_from_traces(
    source: str,
    sel: Selection,
    student_kind: str,
    out_dir: str | Path,
    opts: Options | None = None,
    *,
    student: Any = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Read, select, dedupe, split, train, evaluate; write OUT/student.* and OUT/report.json.
    `student` overrides the one `student_kind` names (tests)."""
    opts = opts or Options()
    if student_kind not in STUDENTS:
        raise UserError(f"unknown student {student_kind!r}: {', '.join(STUDENTS)}")
    if sel.redacted not in ("drop", "keep"):
        raise UserError(f"--redacted must be drop or keep, got {sel.redacted!r}")
    t0 = time.perf_counter()
    kind, examples = load_traces(source)
    chosen, counts = select(examples, sel)
    if not chosen:
        tasks = Counter(e.task for e in examples if e.task is not None)
        raise DataError(_describe_empty(counts, sel, tasks), file=source)
    label_task = student_kind in LABEL_STUDENTS or sel.labels is not None
    if student_kind == "lora" and sel.labels is None:
        label_task = looks_like_labels([clean_label(e.answer) for e in chosen])
    items, dup = dedupe(chosen, labels=label_task)
    labels: list[str] | None = None
    if label_task:
        answers = [i.answer for i in items]
        if sel.labels is None and not looks_like_labels(answers):
            raise DataError(
                f"the answers of task {sel.task!r} look like free text ({len(set(answers))} "
                f"distinct among {len(answers)}): the {student_kind} student needs labels; "
                "give --labels or use --student lora",
                file=source,
            )
        labels = list(sel.labels) if sel.labels else sorted(set(answers))
    train, calib, test = split_items(items, opts.holdout, opts.seed)
    limit = opts.limit if opts.limit is not None else (200 if student_kind == "lora" else None)
    if limit is not None:
        train = train[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teachers = Counter(e.model or "?" for e in chosen)
    log(
        f"{kind} {source}: {counts['records']} records, {len(chosen)} selected, "
        f"{len(items)} distinct prompts -> train {len(train)}, calib {len(calib)}, "
        f"test {len(test)}"
    )
    report: dict[str, Any] = {
        "source": source,
        "source_kind": kind,
        "task": sel.task,
        "student": student_kind,
        "teacher": {
            "rule": "named" if sel.teacher_models else "remote",
            "models": dict(teachers.most_common()),
        },
        "selection": {**counts, **dup, "min_score": sel.min_score, "redacted": sel.redacted},
        "mode": "labels" if label_task else "generation",
        "labels": labels,
        "split": {
            "seed": opts.seed,
            "holdout": opts.holdout,
            "train": len(train),
            "calib": len(calib),
            "test": len(test),
            "limit": limit,
        },
        "target": str(opts.target),
    }
    if student_kind == "lora":
        eval_limit = opts.eval_limit if opts.eval_limit is not None else 100
        held = [*test, *calib][:eval_limit]  # no threshold to calibrate: all held-out scores
        report["split"]["eval"] = len(held)
        report["lora"] = run_lora(sel.task, train, held, labels, out, opts)
        report["student_path"] = str(out / "student")
    else:
        model = (
            student if student is not None else make_label_student(student_kind, labels or [], opts)
        )
        report.update(
            evaluate_label_student(model, train, calib, test, opts.target, opts.out_of_scope)
        )
        report["student_path"] = str(save_student(model, out / "student.npz"))
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
