"""Export an intent dataset's training queries as a JSONL log of "LLM answers" for
`duetto distill --traces FILE`: the gold label is the teacher's answer (a perfect teacher: an
upper bound, and the `model` field says so) and also the `gold` reference.

    python benchmarks/export_answers_jsonl.py --dataset banking77 --n 1000 --out out/b77.jsonl
    duetto distill --traces out/b77.jsonl --task banking77 --student head --out out/b77_traces
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from duetto.distill.data import load_dataset, sample

UPPER_BOUND = "gold-labels (upper bound)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="banking77", help="banking77 or clinc150")
    ap.add_argument("--data-dir", type=Path, default=None, help="folder holding the datasets")
    ap.add_argument("--n", type=int, default=1000, help="training queries exported")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ds = load_dataset(args.dataset, args.data_dir)
    rows = sample(ds.train, args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for i, e in enumerate(rows):
            line = {
                "id": f"{ds.name}-train-{i}",
                "prompt": e.text,
                "answer": e.label,
                "task": ds.name,
                "model": UPPER_BOUND,
                "gold": e.label,
            }
            fh.write(json.dumps(line) + "\n")
    print(f"wrote {len(rows)} answers of {ds.name} to {args.out}")


if __name__ == "__main__":
    main()
