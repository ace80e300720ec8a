"""Time and score the stand-in LLM and the embedded SLM on the first N demo-traffic requests.

    flock /tmp/duetto-cpu.lock python benchmarks/traffic_speed.py --n 40 [--pool test]

The first N requests of a pool keep its mix (60% intents, 20% GSM8K, 20% PII tasks), so the
per-task seconds here give the time of an LLM-only pass and an SLM pass over any pool size:
prints, per task, requests, mean seconds per request and mean score for each model, then the
projected seconds for the whole pool.

Measured 2026-12-03 on the 2 shared cores (other engineers' jobs running, load average 2-5),
`--n 40` on `test`, seconds per request, LLM / SLM: intent 2.22 / 1.21, GSM8K 15.6 / 7.2,
extract 1.71 / 0.99, classify 1.67 / 1.11, summarise 2.87 / 2.21; projected passes over the
360 test requests: LLM 1752 s, SLM 881 s. With `--n 9` at load ~3: intent 0.89 / 1.03,
GSM8K 23.3 / 2.6 (the LLM used all 200 tokens and was cut off before its answer), PII tasks
0.8-1.2 / 0.5-1.6. Scores: the LLM 0/10 on GSM8K at 200 tokens; SmolLM2 0 on all but one
summary (it explains instead of answering). The projection assumes the pool's task shares.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict

from duetto.eval.scorers import score
from duetto.eval.traffic import load_traffic
from duetto.models.local import LlamaCppModel
from duetto.models.standin import StandinServer


async def _run(model: object, items: list, out: dict, show: bool = False) -> None:
    for it in items:
        t0 = time.perf_counter()
        resp = await model.complete(it.request)  # type: ignore[attr-defined]
        out[it.task].append((time.perf_counter() - t0, score(it, resp.text)))
        if show:
            u = resp.usage
            print(f"{it.id} ref={it.reference!r} score={out[it.task][-1][1]} "
                  f"tokens={u.tokens_in}+{u.tokens_out} got={resp.text[:300]!r}")  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", default="test")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--show", action="store_true", help="print every answer")
    args = ap.parse_args()
    full = load_traffic(args.pool)
    items = full[: args.n]
    share = defaultdict(int)
    for it in full:
        share[it.task] += 1
    results: dict[str, dict[str, list]] = {}
    async with StandinServer(size="0.5b") as srv:
        llm = srv.model()
        await llm.complete(items[0].request)  # warm-up
        results["LLM 0.5B stand-in"] = defaultdict(list)
        await _run(llm, items, results["LLM 0.5B stand-in"], args.show)
    slm = LlamaCppModel.smollm2()
    await slm.complete(items[0].request)
    results["SLM SmolLM2-135M"] = defaultdict(list)
    await _run(slm, items, results["SLM SmolLM2-135M"], args.show)
    for name, by_task in results.items():
        print(f"{name}  ({args.pool}, first {len(items)} requests)")
        projected = 0.0
        for task in sorted(by_task):
            rows = by_task[task]
            sec = sum(r[0] for r in rows) / len(rows)
            qual = sum(r[1] for r in rows) / len(rows)
            projected += sec * share[task]
            print(f"  {task:10s} n={len(rows):3d}  {sec:5.2f} s/request  score {qual:.2f}")
        print(f"  projected pass over all {len(full)} requests of '{args.pool}': {projected:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
