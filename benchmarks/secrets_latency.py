"""Latency of `find_secrets` per 500-character window (its share of the detector's 10 ms p95).

    flock /tmp/duetto-cpu.lock env PYTHONPATH=src .venv/bin/python benchmarks/secrets_latency.py

Windows are --n random 500-character slices (--seed 0) of every text of
../shared/datasets/presidio_research_synth, MEDDOCAN dev and the three secret sets joined by
newlines: prose, clinical text, config, code and keys. Each window is timed once after a
warm-up, with and without detect-secrets' plugins (wall time, `perf_counter`). Prints p50, p95,
p99 and max in ms.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from duetto.privacy.secrets import detect_secrets_available, find_secrets
from duetto.privacy.secrets_eval import load_secret_sets

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def texts(data: Path) -> list[str]:
    out: list[str] = []
    for f in sorted((data / "presidio_research_synth").glob("*.json")):
        out += [row["full_text"] for row in json.loads(f.read_text(encoding="utf-8"))]
    dev = data / "pii_eval" / "SPACCC_MEDDOCAN" / "meddocan_dev.jsonl"
    if dev.is_file():
        out += [json.loads(line)["text"] for line in dev.read_text(encoding="utf-8").splitlines()]
    for samples in load_secret_sets(data).values():
        out += [s.text for s in samples]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--chars", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    big = "\n".join(texts(args.data))
    if len(big) < args.chars * 2:
        raise SystemExit(f"no data under {args.data}")
    rng = random.Random(args.seed)
    starts = [rng.randrange(len(big) - args.chars) for _ in range(args.n)]
    windows = [big[i : i + args.chars] for i in starts]
    find_secrets("warm up: password=Harbor77 ghp_Zx8Qm2Lr7Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2Ue8")
    print(f"detect-secrets installed: {detect_secrets_available()}")
    for use_ds in (True, False):
        ms = []
        for w in windows:
            t = time.perf_counter()
            find_secrets(w, use_detect_secrets=use_ds)
            ms.append((time.perf_counter() - t) * 1000)
        ms.sort()

        def q(p: float, ms: list[float] = ms) -> float:
            return ms[min(len(ms) - 1, int(p * len(ms)))]

        print(
            f"use_detect_secrets={use_ds}: n={len(ms)} p50={q(0.5):.3f} p95={q(0.95):.3f} "
            f"p99={q(0.99):.3f} max={ms[-1]:.3f} ms per {args.chars} chars"
        )


if __name__ == "__main__":
    main()
