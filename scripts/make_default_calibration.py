"""Make the calibration the embedded defaults ship (src/duetto/data/calibration.json).

    flock /tmp/duetto-cpu.lock python scripts/make_default_calibration.py [--limit 80]

Runs the embedded SLM (SmolLM2-135M-Instruct) and the stand-in LLM (Qwen2.5-Coder-0.5B over
loopback) on the first `--limit` requests of the shipped demo traffic's `train` pool
(duetto/data/traffic: banking77 and clinc150 intents with clinc150's out-of-scope queries, GSM8K,
presidio-research PII tasks; `duetto.eval.traffic`), and calibrates every thresholded strategy of
the defaults to its target exactly as `duetto eval` does (`duetto.eval.runner.calibrate_strategy`:
learned parts, score calibrator, threshold). Deterministic: greedy decoding, a fixed prefix of a
fixed sample, each model call made once (the evaluator's call cache). The file is stamped with its
content hash and this command (`duetto.fitted.stamp`); `duetto serve` without CONFIG loads it.
It was tuned on the demo traffic, not on yours: `duetto fit STORE` fits one on your own traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

from duetto.calibrate import Target
from duetto.config import load_default_config
from duetto.engine import Engine
from duetto.eval.runner import calibrate_strategy
from duetto.eval.traffic import load_traffic
from duetto.fitted import export_fitted, save_fitted, stamp
from duetto.strategies.base import Tunable

OUT = Path(__file__).resolve().parents[1] / "src" / "duetto" / "data" / "calibration.json"


async def make(limit: int, concurrency: int) -> dict[str, object]:
    cfg = load_default_config()
    items = load_traffic("train", limit=limit)
    engine = Engine(cfg, cache=True)
    await engine.start()
    try:
        summary: dict[str, object] = {}
        for name, target in engine.targets().items():
            strategy = engine.strategies[name]
            assert isinstance(strategy, Tunable)
            t0 = time.perf_counter()
            fit = await calibrate_strategy(strategy, items, target, concurrency)
            # JSON has no infinity ("inf": escalate everything)
            summary[name] = {
                k: str(v) if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in fit.items()
            }
            print(f"{name}: {summary[name]}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        fitted = export_fitted(engine.strategies, str(Target.parse(cfg.target or "quality=0.95")))
    finally:
        await engine.aclose()
    fitted["tuned_on"] = (
        f"duetto/data/traffic train[:{limit}] (banking77, clinc150 incl. out-of-scope, GSM8K, "
        "presidio-research PII tasks), embedded SLM + stand-in LLM"
    )
    fitted["calibration"] = summary
    return fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=80, help="first N requests of the train pool")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    fitted = asyncio.run(make(args.limit, args.concurrency))
    command = f"python scripts/make_default_calibration.py --limit {args.limit}"
    path = save_fitted(stamp(fitted, made_by=command), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
