"""Throughput of POST /v1/embeddings (the local MiniLM) through the gateway, in process.

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/embeddings.py --json out.json

The official `openai` client calls the gateway app over httpx's ASGI transport (no socket:
what is measured is the endpoint, its batching and the model, not the network). For each
concurrency level, `--requests` requests of `--batch` texts each are sent with at most that
many in flight; it reports texts/s, requests/s and p50/p95 request latency, plus the texts/s
of MiniLM called directly with the same texts (the model's own ceiling on this machine) and the
load average. Texts are real prompts (MMLU + GSM8K from ../shared) when present, else synthetic
sentences. Under load the numbers are not figures to publish: re-run on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import ApiKey, GatewaySettings, create_app
from duetto.gateway.auth import hash_key
from duetto.scoring.embeddings import MODEL_NAME, MiniLMEmbedder

KEY = "sk-bench"


def texts(data: Path, n: int, seed: int) -> tuple[list[str], str]:
    try:
        from duetto.eval.recorded import load_suite

        prompts = load_suite("routellm-mmlu", data).prompts
        source = "routellm mmlu"
    except Exception:  # no shared data: synthetic sentences of realistic length
        prompts = [f"Sentence {i} about topic {i % 17}, with some detail." * 2 for i in range(n)]
        source = "synthetic"
    # short enough for MiniLM's 256 tokens: the endpoint refuses longer inputs
    prompts = [p[:600] for p in prompts]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)
    return [prompts[i] for i in idx], source


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import openai

    pool, source = texts(Path(args.data), args.requests * args.batch, args.seed)
    direct = MiniLMEmbedder(batch_size=32, use_cache=False)
    direct.embed_uncached(pool[:8])  # load and warm up
    t0 = time.perf_counter()
    direct.embed_uncached(pool)
    direct_tps = len(pool) / (time.perf_counter() - t0)

    cfg = parse_config({"models": {"m": {"backend": "fake", "script": "ok"}}})
    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(db=f"{tmp}/gw.db", keys=[ApiKey("k", hash_key(KEY))])
        app = create_app(Engine(cfg), settings)
        results = []
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                client = openai.AsyncOpenAI(api_key=KEY, base_url="http://gw/v1", http_client=http)
                await client.embeddings.create(model=MODEL_NAME, input=pool[:2])  # warm up
                for conc in args.concurrency:
                    results.append(await level(client, pool, args, conc))
    return {
        "benchmark": "embeddings",
        "model": MODEL_NAME,
        "texts": source,
        "requests": args.requests,
        "batch": args.batch,
        "direct_texts_per_s": round(direct_tps, 1),
        "levels": results,
        "loadavg": list(os.getloadavg()),
        "cpus": os.cpu_count(),
    }


async def level(client: Any, pool: list[str], args: argparse.Namespace, conc: int) -> dict:
    sem = asyncio.Semaphore(conc)
    latencies: list[float] = []

    async def one(i: int) -> None:
        batch = pool[i * args.batch : (i + 1) * args.batch]
        async with sem:
            t = time.perf_counter()
            await client.embeddings.create(model=MODEL_NAME, input=batch)
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.requests)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "concurrency": conc,
        "texts_per_s": round(args.requests * args.batch / wall, 1),
        "requests_per_s": round(args.requests / wall, 1),
        "p50_ms": round(statistics.median(lat), 1),
        "p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="texts per request")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    out = asyncio.run(run(args))
    for r in out["levels"]:
        print(
            f"concurrency {r['concurrency']:>3}: {r['texts_per_s']:>7} texts/s, "
            f"{r['requests_per_s']:>6} req/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms"
        )
    print(f"MiniLM direct: {out['direct_texts_per_s']} texts/s ({out['texts']} texts)")
    print(f"load average: {out['loadavg']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
