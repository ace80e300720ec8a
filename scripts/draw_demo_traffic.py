"""Draw the demo traffic shipped in src/duetto/data/traffic/ from the full public datasets.

    python scripts/draw_demo_traffic.py --data-dir ../shared/datasets --seed 0

Writes train.jsonl, audit.jsonl, test.jsonl, labels.json and manifest.json (seed, counts per
pool/task/tag, sha256 of each file, this command). The drawing code is
`duetto.eval.traffic` (what `duetto demo --data DIR` runs too); with the same seed and sizes
the files come out byte for byte the same. ATTRIBUTION.md beside them is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from duetto.eval.traffic import DEFAULT_SEED, DEFAULT_SIZES, POOLS, write_sample  # noqa: E402


def _sizes(text: str) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES)
    for part in text.split(","):
        pool, _, n = part.partition("=")
        if pool not in POOLS or not n.isdigit():
            raise argparse.ArgumentTypeError(f"expected pool=N for pools {POOLS}, got {part!r}")
        sizes[pool] = int(n)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--sizes", type=_sizes, default=None, help="e.g. train=480,audit=150,test=360")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "duetto" / "data" / "traffic")
    args = ap.parse_args()
    files = write_sample(args.out, args.data_dir, args.seed, args.sizes)
    for name, data in files.items():
        print(f"{args.out / name}: {len(data):,} bytes")
    print(f"total: {sum(len(d) for d in files.values()):,} bytes")


if __name__ == "__main__":
    main()
