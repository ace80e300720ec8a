"""Throughput of duetto's local backend against llama-cpp-python's own chat completion.

Same GGUF (the embedded SmolLM2-135M-Instruct by default), same n_ctx and threads, same prompts,
same max_tokens, greedy decoding, in one process and one run. Calls alternate between the paths
(duetto, direct, duetto, ...) so that load from other processes hits both alike; each repetition
uses the next prompt of a small set, so llama-cpp's prompt-prefix cache only helps with the shared
chat-template prefix, as in real traffic. Reported: median end-to-end tokens/s (generated tokens
over wall time, prefill included) of

  - duetto:        LlamaCppModel.complete (chat template, per-token logprobs, accounting)
  - direct:        Llama.create_chat_completion (its default: prompt-prefix KV reuse)
  - direct_reset:  the same after Llama.reset() (full prefill, as duetto does for reproducibility)

and duetto's overhead against `direct`: (direct - duetto) / direct in %.

    flock /tmp/duetto-cpu.lock python benchmarks/local_model.py --json out/local_model.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from duetto.messages import ChatRequest
from duetto.models.local import LlamaCppModel, smollm2_card, smollm2_path, token_logprob

PROMPTS = [
    "Explain in a few sentences why the sky is blue.",
    "Write a short paragraph about the history of the bicycle.",
    "Describe how a refrigerator keeps food cold.",
    "Give some advice to a student preparing for an exam.",
    "Describe a walk through a forest in autumn.",
]


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama

    path = Path(args.model) if args.model else smollm2_path()
    model = LlamaCppModel(smollm2_card(), path, n_ctx=args.n_ctx, n_threads=args.threads)
    await model.load()
    direct = Llama(model_path=str(path), n_ctx=args.n_ctx, n_threads=args.threads, verbose=False)

    def call_direct(prompt: str, reset: bool) -> tuple[int, float]:
        if reset:
            direct.reset()
        t0 = time.perf_counter()
        out = direct.create_chat_completion(
            [{"role": "user", "content": prompt}], temperature=0.0, max_tokens=args.max_tokens
        )
        wall = time.perf_counter() - t0
        return int(out["usage"]["completion_tokens"]), wall

    async def call_duetto(prompt: str) -> tuple[int, float, float]:
        req = ChatRequest.of(prompt, max_tokens=args.max_tokens, temperature=0.0)
        t0 = time.perf_counter()
        r = await model.complete(req)
        wall = time.perf_counter() - t0
        return r.usage.tokens_out, wall, float(r.usage.ttft_ms or 0.0)

    samples: dict[str, list[dict[str, float]]] = {"duetto": [], "direct": [], "direct_reset": []}
    for i in range(args.warmup + args.reps):
        prompt = PROMPTS[i % len(PROMPTS)]
        n_d, w_d, ttft = await call_duetto(prompt)
        n_x, w_x = call_direct(prompt, reset=False)
        n_r, w_r = call_direct(prompt, reset=True)
        if i < args.warmup:
            continue
        if not n_d == n_x == n_r:
            print(f"note: token counts differ on prompt {i}: {n_d} {n_x} {n_r}", file=sys.stderr)
        samples["duetto"].append({"tokens": n_d, "wall_s": w_d, "ttft_ms": ttft})
        samples["direct"].append({"tokens": n_x, "wall_s": w_x})
        samples["direct_reset"].append({"tokens": n_r, "wall_s": w_r})

    tps = {k: _median([s["tokens"] / s["wall_s"] for s in v]) for k, v in samples.items()}

    # What the log-probability costs per token, in isolation.
    logits = np.random.default_rng(0).normal(size=model_vocab(model)).astype(np.float32)
    t0 = time.perf_counter()
    for t in range(2000):
        token_logprob(logits, t)
    logprob_us = (time.perf_counter() - t0) / 2000 * 1e6

    return {
        "model": path.name,
        "n_ctx": args.n_ctx,
        "n_threads": args.threads,
        "max_tokens": args.max_tokens,
        "reps": args.reps,
        "warmup": args.warmup,
        "tokens_per_s": tps,
        "duetto_ttft_ms_median": _median([s["ttft_ms"] for s in samples["duetto"]]),
        "overhead_pct_vs_direct": 100 * (tps["direct"] - tps["duetto"]) / tps["direct"],
        "overhead_pct_vs_direct_reset": 100
        * (tps["direct_reset"] - tps["duetto"])
        / tps["direct_reset"],
        "logprob_us_per_token": logprob_us,
        "samples": samples,
    }


def model_vocab(model: LlamaCppModel) -> int:
    from duetto.models import local

    engine = local._ENGINES[(str(model.model_path.resolve()), model.n_ctx)]
    return engine.n_vocab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="a GGUF path (default: the embedded SmolLM2)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    t = res["tokens_per_s"]
    print(f"model {res['model']}  max_tokens {res['max_tokens']}  reps {res['reps']} (medians)")
    ttft = res["duetto_ttft_ms_median"]
    print(f"  duetto        {t['duetto']:7.1f} tok/s   (TTFT {ttft:.0f} ms)")
    print(f"  direct        {t['direct']:7.1f} tok/s   (llama-cpp create_chat_completion)")
    print(f"  direct_reset  {t['direct_reset']:7.1f} tok/s   (same, full prefill each call)")
    print(f"  duetto overhead vs direct: {res['overhead_pct_vs_direct']:+.1f}%  "
          f"vs direct_reset: {res['overhead_pct_vs_direct_reset']:+.1f}%")  # fmt: skip
    print(f"  logprob cost: {res['logprob_us_per_token']:.0f} µs/token")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
