"""Latency the gateway adds over calling the upstream directly, and throughput next to LiteLLM.

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/gateway_overhead.py \
        [--requests 2000] [--litellm /tmp/litellm-venv/bin/litellm]

One fake OpenAI upstream (the package's, no faults, no latency) in its own process; in front of
it, in their own processes: `duetto serve` (raw remote model, API key checked, trace stored in
SQLite before answering) and, when its executable is given and runs, the LiteLLM proxy (installed
from PyPI in its own venv, never in duetto's: `python -m venv /tmp/litellm-venv &&
/tmp/litellm-venv/bin/pip install 'litellm[proxy]'`). The same client (httpx, this process)
sends the same non-streamed request to each, at 1 and 50 concurrent clients.

Reports p50/p99 client latency per target and concurrency, the gateway's added p50/p99 (gateway
minus direct), requests/s, and the CPU each target spent per request (psutil, its processes;
for each target's first process, its main thread alone: the event loop). `--profile FILE` runs
`duetto serve` under cProfile (its main thread, 1 client only) and writes the stats to FILE.
Targets of the issue: p50 added ≤ 2 ms; throughput ≥ LiteLLM's.
duetto runs with the default privacy settings (policy `allow`, detector `auto`: Presidio when
the privacy extra is installed; leaks counted inline by the rules, 5% re-scanned by the
detector off the request path) unless `--detector regex|presidio`, and commits each record
before answering unless `--answer-first` (then right after). The JSON says which, and the
load average before and after: figures taken on a busy machine are not figures to publish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

KEY = "sk-overhead"
UPSTREAM = """
import sys
from duetto.testing import FakeOpenAIServer
server = FakeOpenAIServer(record=False, script="The answer is forty-two.")
server.start()
print(server.base_url, flush=True)
sys.stdin.read()
"""
BODY = {
    "model": "llm",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "What is the answer?"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited ({proc.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(url)


def start_duetto(
    work: Path,
    upstream: str,
    detector: str | None = None,
    answer_first: bool = False,
    profile: Path | None = None,
) -> tuple[subprocess.Popen[Any], str]:
    from duetto.gateway.auth import hash_key

    cfg = {
        "endpoints": {"up": {"base_url": upstream, "timeout_s": 30, "retries": 0}},
        "models": {
            "slm": {"backend": "fake", "script": "local", "card": {"name": "local-slm"}},
            "llm": {
                "backend": "openai",
                "endpoint": "up",
                "model": "fake-llm",
                "card": {
                    "name": "remote-llm",
                    "location": "remote",
                    "price_in_per_mtok": 0.15,
                    "price_out_per_mtok": 0.6,
                },
            },
        },
        "gateway": {"keys": [{"name": "bench", "key_sha256": hash_key(KEY)}]},
    }
    if detector:
        cfg["privacy"] = {"detector": detector}
    (work / "duetto.yaml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    # cProfile of the server's main thread (the event loop), written when it stops
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
    proc = subprocess.Popen(
        [
            sys.executable,
            *profiler,
            "-m",
            "duetto.cli.main",
            "serve",
            str(work / "duetto.yaml"),
            "--port",
            str(port),
            "--db",
            str(work / "traces.db"),
            "--log-level",
            "warning",
            "--answer-first" if answer_first else "--store-before-answer",
        ],
        stdout=(work / "duetto.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc)
    return proc, url + "/v1"


def start_litellm(work: Path, upstream: str, exe: str) -> tuple[subprocess.Popen[Any], str]:
    cfg = {
        "model_list": [
            {
                "model_name": "llm",
                "litellm_params": {
                    "model": "openai/fake-llm",
                    "api_base": upstream,
                    "api_key": "none",
                },
            }
        ],
        "general_settings": {"master_key": KEY},
        "litellm_settings": {"drop_params": True, "telemetry": False},
    }
    (work / "litellm.yaml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DISABLE_ADMIN_UI": "True",
    }
    proc = subprocess.Popen(
        [
            exe,
            "--config",
            str(work / "litellm.yaml"),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--num_workers",
            "1",
        ],
        stdout=(work / "litellm.log").open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness", proc, timeout=180)
    return proc, url + "/v1"


def served_with(log: Path) -> str:
    """uvicorn's loop and HTTP parser as `duetto serve` announced them ("uvloop + httptools")."""
    import re

    text = log.read_text() if log.exists() else ""  # rich may wrap the line
    found = re.search(r",\s+(\w+)\s+\+\s+(\w+)\)", text)
    return f"{found.group(1)} + {found.group(2)}" if found else "unknown"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and its children (LiteLLM's workers): the cost per
    request that a busy machine does not distort as it does wall-clock latency."""
    if pid is None:
        return 0.0
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def main_thread_cpu_seconds(pid: int | None) -> float:
    """User + system CPU of the process's main thread (the event loop); the rest of
    `cpu_seconds` is its other threads (the store's worker, uvloop's, ...)."""
    if pid is None:
        return 0.0
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        for t in psutil.Process(pid).threads():
            if t.id == pid:
                return float(t.user_time + t.system_time)
    return 0.0


async def run(
    base: str, n: int, concurrency: int, model: str, pid: int | None = None
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    body = {**BODY, "model": model}
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        for _ in range(min(50, n)):  # warm connections and code paths
            await client.post("/chat/completions", json=body)
        queue = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for _ in queue:
                t0 = time.perf_counter()
                r = await client.post("/chat/completions", json=body)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        cpu0, loop0 = cpu_seconds(pid), main_thread_cpu_seconds(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        loop_cpu = main_thread_cpu_seconds(pid) - loop0
    s = sorted(latencies)
    return {
        "p50_ms": s[len(s) // 2] * 1000,
        "p99_ms": s[int(len(s) * 0.99)] * 1000,
        "rps": n / elapsed,
        "cpu_ms_per_request": cpu / n * 1000,  # of the target's process(es)
        "main_thread_cpu_ms_per_request": loop_cpu / n * 1000,  # its first process's
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--litellm", default=shutil.which("litellm") or "/tmp/litellm-venv/bin/litellm")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--detector", choices=["regex", "presidio"], help="default: the config's")
    ap.add_argument(
        "--profile",
        type=Path,
        help="run `duetto serve` under cProfile (its main thread), write the stats here; "
        "1 client only",
    )
    ap.add_argument(
        "--answer-first",
        action="store_true",
        help="duetto answers before its record is committed (default: committed first)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="duetto-overhead-"))
    up = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert up.stdout is not None
    upstream = up.stdout.readline().strip()
    procs: list[subprocess.Popen[Any]] = [up]
    targets: dict[str, tuple[str, str, int | None]] = {"direct": (upstream, "fake-llm", up.pid)}
    notes: list[str] = []
    try:
        load_before = os.getloadavg()
        proc, url = start_duetto(work, upstream, args.detector, args.answer_first, args.profile)
        procs.append(proc)
        targets["duetto"] = (url, "llm", proc.pid)
        if Path(args.litellm).exists():
            try:
                proc, url = start_litellm(work, upstream, args.litellm)
                procs.append(proc)
                targets["litellm"] = (url, "llm", proc.pid)
            except (RuntimeError, TimeoutError) as exc:
                notes.append(f"LiteLLM proxy did not start: {exc}; see {work / 'litellm.log'}")
        else:
            notes.append(f"LiteLLM not found at {args.litellm}: compared without it")
        results: dict[str, Any] = {}
        levels = (1,) if args.profile else (1, 50)
        for concurrency in levels:
            n = args.requests if concurrency > 1 else max(200, args.requests // 4)
            for name, (base, model, pid) in targets.items():
                results[f"{name}@{concurrency}"] = asyncio.run(
                    run(base, n, concurrency, model, pid)
                )
        summary: dict[str, Any] = {
            "requests": args.requests,
            "detector": args.detector or "default (auto)",
            "store": "answer first" if args.answer_first else "committed before the answer",
            "duetto_io": served_with(work / "duetto.log"),
            "loadavg_before_after": [load_before[0], os.getloadavg()[0]],
            "results": results,
        }
        for c in levels:
            d, g = results[f"direct@{c}"], results[f"duetto@{c}"]
            summary[f"added_by_duetto@{c}"] = {
                "p50_ms": g["p50_ms"] - d["p50_ms"],
                "p99_ms": g["p99_ms"] - d["p99_ms"],
            }
            if f"litellm@{c}" in results:
                lite = results[f"litellm@{c}"]
                summary[f"added_by_litellm@{c}"] = {
                    "p50_ms": lite["p50_ms"] - d["p50_ms"],
                    "p99_ms": lite["p99_ms"] - d["p99_ms"],
                }
                summary[f"throughput_ratio_duetto_over_litellm@{c}"] = g["rps"] / lite["rps"]
        summary["notes"] = notes
    finally:
        for p in reversed(procs):
            if args.profile and p.pid == targets.get("duetto", ("", "", None))[2]:
                # uvicorn re-raises the signal once stopped: SIGINT lets cProfile write
                p.send_signal(signal.SIGINT)
            else:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
