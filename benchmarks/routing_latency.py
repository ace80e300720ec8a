"""Routing speed on this machine: MiniLM embedding throughput and per-query routing latency.

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/routing_latency.py --json out.json

Embedding throughput is measured uncached on real prompts (MMLU + GSM8K from ../shared when
present, else synthetic questions). Routing latency is one query at a time, embedding excluded:
the router is fitted on real recorded outputs and timed on precomputed embeddings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from duetto.eval.recorded import load_suite
from duetto.scoring.embeddings import MiniLMEmbedder
from duetto.scoring.routers import (
    KnnRouter,
    LogisticRouter,
    Router,
    RouterInputs,
    default_router,
)


def sample_prompts(data: Path, n: int, seed: int) -> tuple[list[str], str]:
    try:
        prompts = load_suite("routellm-mmlu", data).prompts
        prompts += load_suite("routellm-gsm8k", data).prompts
        source = "routellm mmlu+gsm8k"
    except Exception:  # no shared data: synthetic questions of realistic length
        prompts = [f"Question {i}: what is {i} times {i + 7}, explained step by step?" * 3
                   for i in range(n)]
        source = "synthetic"
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)
    return [prompts[i] for i in idx], source


def embedding_throughput(
    prompts: list[str], batch_size: int, max_seq_length: int | None
) -> dict[str, float]:
    emb = MiniLMEmbedder(batch_size=batch_size, use_cache=False, max_seq_length=max_seq_length)
    emb.embed_uncached(prompts[:8])  # load + warm up
    t0 = time.perf_counter()
    emb.embed_uncached(prompts)
    batch_s = time.perf_counter() - t0
    single = []
    for p in prompts[:50]:
        t = time.perf_counter()
        emb.embed_uncached([p])
        single.append((time.perf_counter() - t) * 1000)
    return {
        "prompts": len(prompts),
        "mean_chars": float(np.mean([len(p) for p in prompts])),
        "batch_size": batch_size,
        "max_seq_length": emb._load().max_seq_length,
        "prompts_per_s": len(prompts) / batch_s,
        "single_prompt_ms_p50": float(np.percentile(single, 50)),
    }


def routing_latency(router: Router, inputs: RouterInputs, n_queries: int) -> dict[str, float]:
    times = []
    for i in range(n_queries):
        one = inputs.subset(np.array([i % len(inputs)]))
        t = time.perf_counter()
        router.score(one)
        times.append((time.perf_counter() - t) * 1000)
    arr = np.array(times[10:])  # drop warm-up
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--n-embed", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-seq-length", type=int, default=None)
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    prompts, source = sample_prompts(args.data, args.n_embed, seed=0)
    result: dict[str, object] = {"prompt_source": source}
    result["embedding"] = embedding_throughput(prompts, args.batch_size, args.max_seq_length)

    try:  # fit on real recorded outputs (MMLU: 14k prompts, cached embeddings)
        suite = load_suite("routellm-mmlu", args.data)
    except Exception:
        suite = None
    if suite is not None:
        inputs = RouterInputs(suite.prompts, suite.tasks, None, None)
        inputs.require_embeddings()
        scores, models = suite.scores, suite.models
    else:
        rng = np.random.default_rng(0)
        e = rng.normal(size=(2000, 384)).astype(np.float32)
        inputs = RouterInputs([f"q{i}" for i in range(2000)], None, e / np.linalg.norm(e, axis=1,
                              keepdims=True), None)
        scores, models = (rng.random((2000, 2)) < 0.7).astype(float), ["weak", "strong"]
    latency = {}
    for name, router in [
        ("logreg", LogisticRouter(c=0.1)), ("knn", KnnRouter(k=100)), ("ensemble", default_router())
    ]:
        router.fit(inputs, scores, models)
        latency[name] = routing_latency(router, inputs, args.n_queries)
    result["routing_latency_excluding_embedding"] = latency
    result["fitted_on"] = suite.name if suite is not None else "synthetic"
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
