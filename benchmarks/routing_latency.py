"""Routing speed on this machine: MiniLM embedding throughput and per-query routing latency.

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/routing_latency.py --json out.json

Embedding throughput is measured uncached on real prompts (MMLU + GSM8K from ../shared when
present, else synthetic questions), for each `--embedders` setting (default: the old float
model at 256 tokens, batch 8, and the current default embedder), interleaved over `--repeats`
rounds so that a change of machine load hits both alike. Each round reports wall-clock prompts/s
and prompts per CPU-second of this process (less sensitive to other processes on the machine),
plus the load average. Routing latency is one query at a time, embedding excluded: the router
is fitted on real recorded outputs and timed on precomputed embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from duetto.eval.recorded import load_suite
from duetto.scoring.embeddings import (
    ROUTING_BATCH_SIZE,
    ROUTING_MAX_SEQ_LENGTH,
    ROUTING_QUANTIZE,
    MiniLMEmbedder,
)
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
        prompts = [
            f"Question {i}: what is {i} times {i + 7}, explained step by step?" * 3
            for i in range(n)
        ]
        source = "synthetic"
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)
    return [prompts[i] for i in idx], source


def parse_embedder(spec: str) -> MiniLMEmbedder:
    """`fp32:256:8` / `int8:128:16` = weights, max_seq_length, batch size; `default` = the
    routers' embedder (`routing_embedder()`)."""
    if spec == "default":
        return MiniLMEmbedder(
            batch_size=ROUTING_BATCH_SIZE,
            use_cache=False,
            max_seq_length=ROUTING_MAX_SEQ_LENGTH,
            quantize=ROUTING_QUANTIZE,
        )
    weights, max_len, bs = spec.split(":")
    if weights not in ("fp32", "int8"):
        raise SystemExit(f"bad embedder {spec!r}: weights must be fp32 or int8")
    return MiniLMEmbedder(
        batch_size=int(bs),
        use_cache=False,
        max_seq_length=None if int(max_len) == 256 else int(max_len),
        quantize=weights == "int8",
    )


def embedding_round(emb: MiniLMEmbedder, prompts: list[str]) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    emb.embed_uncached(prompts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "prompts_per_s": len(prompts) / wall,
        "prompts_per_cpu_s": len(prompts) / cpu,
        "load_avg_1min": os.getloadavg()[0],
    }


def embedding_throughput(
    prompts: list[str], specs: list[str], repeats: int
) -> dict[str, dict[str, object]]:
    embedders = {spec: parse_embedder(spec) for spec in specs}
    rounds: dict[str, list[dict[str, float]]] = {spec: [] for spec in specs}
    for emb in embedders.values():
        emb.embed_uncached(prompts[:16])  # load + warm up
    for _ in range(repeats):
        for spec, emb in embedders.items():
            rounds[spec].append(embedding_round(emb, prompts))
    out: dict[str, dict[str, object]] = {}
    for spec, emb in embedders.items():
        single, alone = [], []
        for p in prompts[:50]:
            t = time.perf_counter()
            alone.append(emb.embed_uncached([p])[0])
            single.append((time.perf_counter() - t) * 1000)
        # int8 activations are quantized per batch: a prompt's vector depends slightly on its
        # batch neighbours. Cosine between the batched and the alone vector measures that skew.
        batched = emb.embed_uncached(prompts)[:50]
        cos = np.sum(batched * np.asarray(alone), axis=1)
        out[spec] = {
            "name": emb.name,
            "batch_size": emb.batch_size,
            "max_seq_length": emb._load().max_seq_length,
            "quantize": emb.quantize,
            "prompts_per_s_median": float(np.median([r["prompts_per_s"] for r in rounds[spec]])),
            "prompts_per_cpu_s_median": float(
                np.median([r["prompts_per_cpu_s"] for r in rounds[spec]])
            ),
            "rounds": rounds[spec],
            "single_prompt_ms_p50": float(np.percentile(single, 50)),
            "batched_vs_alone_cosine_min": float(cos.min()),
        }
    return out


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
    ap.add_argument(
        "--embedders",
        default="fp32:256:8,default",
        help="comma-separated weights:max_seq_length:batch_size (fp32|int8) or `default`",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--skip-routing", action="store_true", help="embedding throughput only")
    ap.add_argument("--n-queries", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    prompts, source = sample_prompts(args.data, args.n_embed, seed=0)
    result: dict[str, object] = {
        "prompt_source": source,
        "prompts": len(prompts),
        "mean_chars": float(np.mean([len(p) for p in prompts])),
        "cpus": os.cpu_count(),
    }
    specs = [s.strip() for s in args.embedders.split(",") if s.strip()]
    result["embedding"] = embedding_throughput(prompts, specs, args.repeats)
    if args.skip_routing:
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return

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
        inputs = RouterInputs(
            [f"q{i}" for i in range(2000)], None, e / np.linalg.norm(e, axis=1, keepdims=True), None
        )
        scores, models = (rng.random((2000, 2)) < 0.7).astype(float), ["weak", "strong"]
    latency = {}
    for name, router in [
        ("logreg", LogisticRouter(c=0.1)),
        ("knn", KnnRouter(k=100)),
        ("ensemble", default_router()),
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
