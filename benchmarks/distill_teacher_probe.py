"""How good is the local teacher, and how good is the student's own prior, on an intent test set?

    nice -n 19 .venv/bin/python benchmarks/distill_teacher_probe.py --dataset clinc150 \
        --data-dir ../shared/datasets --teacher-model standin-1.5b --n 1000 \
        [--candidates 10] [--json out.json]

On a seeded random sample of the test set (the same order `duetto distill rounds` fills the
teacher's disk cache in is irrelevant: answers are cached per query), it prints:
  - the local teacher (constrained choice over every intent, or over the `--candidates` K intents
    whose names are nearest the query, plus out-of-scope): accuracy on all, on in-scope queries,
    and how often it says out-of-scope on out-of-scope / in-scope queries;
  - zero-shot by name: the intent whose name (MiniLM) is nearest the query, on in-scope queries,
    and how often the gold intent is among the K nearest names (what `--verify-k K` and
    `--teacher-candidates K` rely on).
Labels missing from the teacher's cache are computed here (~0.4 s each on 2 cores for the 1.5B).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from duetto.distill.data import TASK_HINTS, load_dataset, sample
from duetto.distill.students.head import label_text
from duetto.distill.teachers import LocalLLMTeacher, teacher_model_path
from duetto.scoring.embeddings import default_embedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="clinc150")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--teacher-model", default="standin-1.5b")
    ap.add_argument("--n", type=int, default=1000, help="test queries (seeded random sample)")
    ap.add_argument("--candidates", type=int, default=0, help="teacher chooses among K (0: all)")
    ap.add_argument("--k", type=int, nargs="*", default=[1, 3, 10], help="name recall at K")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    ds = load_dataset(args.dataset, args.data_dir)
    test = sample(ds.test, args.n, args.seed)
    gold = np.array([e.label for e in test])
    oos = np.array([ds.is_out_of_scope(g) for g in gold])
    teacher = LocalLLMTeacher(
        teacher_model_path(args.teacher_model),
        ds.labels,
        task=TASK_HINTS.get(ds.name, "user queries"),
        out_of_scope=ds.out_of_scope,
        candidates=args.candidates,
    )
    t0 = time.perf_counter()
    said = np.array(teacher.label([e.text for e in test]))
    seconds = time.perf_counter() - t0

    emb = default_embedder()
    sims = emb.embed([e.text for e in test]) @ emb.embed([label_text(x) for x in ds.labels]).T
    ranked = np.asarray(ds.labels)[np.argsort(-sims, axis=1)]
    ins = ~oos
    pairs = list(zip(gold[ins], ranked[ins], strict=True))
    out: dict[str, object] = {
        "dataset": ds.name,
        "n": len(test),
        "out_of_scope": int(oos.sum()),
        "teacher": teacher.name,
        "teacher_seconds": round(seconds, 1),
        "teacher_accuracy": float((said == gold).mean()),
        "teacher_in_scope_accuracy": float((said[ins] == gold[ins]).mean()),
        "zero_shot_in_scope_accuracy": float((ranked[ins, 0] == gold[ins]).mean()),
        "name_recall_at_k": {
            str(k): float(np.mean([g in row[:k] for g, row in pairs])) for k in args.k
        },
    }
    if oos.any():
        out["teacher_says_oos_on_oos"] = float((said[oos] == ds.out_of_scope).mean())
        out["teacher_says_oos_in_scope"] = float((said[ins] == ds.out_of_scope).mean())
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
