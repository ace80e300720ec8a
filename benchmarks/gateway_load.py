"""Load + faults against `duetto serve` on a real socket (issue #5, "Checks").

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/gateway_load.py \
        [--requests 10000] [--concurrency 200] [--kill9]

Three processes: the package's fake OpenAI upstream (injecting 10% HTTP 500s, 5% hangs past the
gateway's read timeout, 2% streams cut mid-way), the gateway (`duetto serve`, SQLite store,
fallback to a local model) and this load generator (half the requests streamed, half to the raw
remote model, half to a route strategy). Bounded in time: every client has a hard timeout.

Reports: status counts, well-formed answers, client timeouts, latency percentiles, requests in
the store vs accepted (exactly once), upstream failures the gateway saw vs rescued by the
fallback, and the gateway's RSS after warm-up, half-way and at the end. With --kill9 it then
kills the gateway with SIGKILL in the middle of a second load, restarts it on the same store
and checks that every answered request is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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

KEY = "sk-load-test"
UPSTREAM = """
import json, sys
from duetto.testing import FakeOpenAIServer
server = FakeOpenAIServer(error_rate={error}, timeout_rate={timeout}, broken_rate={broken},
                          hang_s={hang}, record=False, seed=7,
                          script=lambda m: "The answer is " + " ".join(["word"] * 12) + ".")
server.start()
print(server.base_url, flush=True)
for line in sys.stdin:
    print(json.dumps(dict(server.counts)), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(path: Path, upstream_url: str, read_timeout: float) -> None:
    from duetto.gateway.auth import hash_key

    cfg = {
        "endpoints": {
            "up": {
                "base_url": upstream_url,
                "timeout_s": read_timeout,
                "connect_timeout_s": 1.0,
                "retries": 1,
            }
        },
        "models": {
            "slm": {
                "backend": "fake",
                "script": "a local fallback answer",
                "card": {"name": "local-slm"},
            },
            "llm": {
                "backend": "openai",
                "endpoint": "up",
                "model": "fake-llm",
                "card": {
                    "name": "remote-llm",
                    "location": "remote",
                    "trusted": False,
                    "price_in_per_mtok": 0.15,
                    "price_out_per_mtok": 0.6,
                },
            },
        },
        "strategies": {
            "route": {
                "mode": "route",
                "models": ["slm", "llm"],
                "threshold": 0.5,
                "scorer": {"kind": "length", "scale_chars": 30},
            }
        },
        "gateway": {
            "fallback": "slm",
            "request_timeout_s": 10.0,
            "breaker_failures": 1_000_000,  # faults are random, not an outage
            "keys": [{"name": "load", "key_sha256": hash_key(KEY)}],
        },
    }
    path.write_text(yaml.safe_dump(cfg))


class Gateway:
    def __init__(self, config: Path, db: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "duetto.cli.main",
                "serve",
                str(config),
                "--port",
                str(self.port),
                "--db",
                str(db),
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}); see {log}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("gateway did not start")

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and line.split(" ")[0] != name:
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def load(
    url: str,
    n: int,
    concurrency: int,
    client_timeout: float,
    start: int = 0,
    on_progress: Any = None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url + "/v1",
        limits=limits,
        timeout=client_timeout,
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:

        async def one(i: int) -> None:
            stream = i % 2 == 0
            model = "llm" if i % 4 < 2 else "route"
            prompt = f"question {i}: explain the load test result in detail please"
            body = {
                "model": model,
                "stream": stream,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}],
            }
            out: dict[str, Any] = {"i": i, "stream": stream}
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/chat/completions", json=body)
                    out["status"] = r.status_code
                    out["trace_id"] = r.headers.get("x-duetto-trace-id")
                    if stream and r.status_code == 200:
                        out["ok"] = r.text.rstrip().endswith("data: [DONE]")
                    else:
                        data = r.json()
                        out["ok"] = (
                            ("choices" in data)
                            if r.status_code == 200
                            else (bool(data.get("error", {}).get("message")))
                        )
                except httpx.TimeoutException:
                    out["status"], out["ok"], out["timeout"] = 0, False, True
                except httpx.HTTPError as exc:
                    out["status"], out["ok"], out["error"] = 0, False, type(exc).__name__
                out["latency_s"] = time.perf_counter() - t0
            results.append(out)
            if on_progress is not None:
                on_progress(len(results))

        await asyncio.gather(*[one(start + i) for i in range(n)])
    return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def stored_ids(db: Path) -> list[str]:
    from duetto.store import TraceStore

    store = TraceStore(str(db))
    await store.start()
    try:
        return await store.ids()
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--read-timeout", type=float, default=1.0, help="gateway → upstream")
    ap.add_argument("--client-timeout", type=float, default=30.0)
    ap.add_argument("--kill9", action="store_true", help="then the kill -9 durability check")
    ap.add_argument("--out", type=Path, help="write the JSON summary here too")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="duetto-load-"))
    up = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM.format(error=0.10, timeout=0.05, broken=0.02, hang=5.0)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert up.stdout is not None and up.stdin is not None
    upstream_url = up.stdout.readline().strip()

    def upstream_counts() -> dict[str, int]:
        assert up.stdin is not None and up.stdout is not None
        up.stdin.write("stats\n")
        up.stdin.flush()
        return dict(json.loads(up.stdout.readline()))

    config, db = work / "gateway.yaml", work / "traces.db"
    write_config(config, upstream_url, args.read_timeout)
    gw = Gateway(config, db, work / "gateway.log")
    summary: dict[str, Any] = {"requests": args.requests, "concurrency": args.concurrency}
    try:
        asyncio.run(load(gw.url, args.warmup, args.concurrency, args.client_timeout, start=10**7))
        summary["rss_mb_after_warmup"] = rss_mb(gw.proc.pid)
        before = upstream_counts()
        rescued0 = gw.metric("duetto_fallbacks_total", outcome="rescued")
        failed0 = gw.metric("duetto_fallbacks_total", outcome="failed")
        half: dict[str, float] = {}

        def progress(done: int) -> None:
            if done == args.requests // 2:
                half["rss"] = rss_mb(gw.proc.pid)

        t0 = time.perf_counter()
        cpu0 = (cpu_s(gw.proc.pid), cpu_s(up.pid), time.process_time())
        results = asyncio.run(
            load(gw.url, args.requests, args.concurrency, args.client_timeout, on_progress=progress)
        )
        elapsed = time.perf_counter() - t0
        cpu1 = (cpu_s(gw.proc.pid), cpu_s(up.pid), time.process_time())
        summary["cpu_ms_per_request"] = {
            name: round((b - a) / args.requests * 1000, 2)
            for name, a, b in zip(
                ("gateway", "upstream", "load_generator"), cpu0, cpu1, strict=True
            )
        }
        summary["rss_mb_half_way"] = half.get("rss")
        summary["rss_mb_after"] = rss_mb(gw.proc.pid)
        after = upstream_counts()
        injected = {k: after.get(k, 0) - before.get(k, 0) for k in ("error", "timeout", "broken")}
        rescued = gw.metric("duetto_fallbacks_total", outcome="rescued") - rescued0
        failed = gw.metric("duetto_fallbacks_total", outcome="failed") - failed0
        statuses: dict[int, int] = {}
        for r in results:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        latencies = [r["latency_s"] for r in results]
        accepted = [r["trace_id"] for r in results if r.get("trace_id")]
        gw.stop()
        ids = asyncio.run(stored_ids(db))
        in_store = set(ids)  # warm-up requests are in the store too
        summary.update(
            {
                "elapsed_s": round(elapsed, 2),
                "throughput_rps": round(len(results) / elapsed, 1),
                "statuses": statuses,
                "well_formed": sum(bool(r["ok"]) for r in results),
                "client_timeouts": sum(bool(r.get("timeout")) for r in results),
                "client_errors": sorted({r["error"] for r in results if r.get("error")}),
                "latency_s": {
                    "p50": pct(latencies, 0.5),
                    "p99": pct(latencies, 0.99),
                    "max": max(latencies),
                },
                "upstream_faults_injected": injected,
                "upstream_calls": after.get("chat", 0) - before.get("chat", 0),
                "upstream_failures_seen_by_gateway": rescued + failed,
                "rescued_by_fallback": rescued,
                "rescue_rate": rescued / (rescued + failed) if rescued + failed else 1.0,
                "accepted": len(accepted),
                "accepted_in_store": sum(1 for t in accepted if t in in_store),
                "store_rows": len(ids),
                "store_rows_expected": len(accepted) + args.warmup,
                "duplicates_in_store": len(ids) - len(set(ids)),
            }
        )
        if args.kill9:
            summary["kill9"] = kill9_check(config, work, args)
    finally:
        gw.stop()
        up.terminate()
        up.wait(10)
    text = json.dumps(summary, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text)


def kill9_check(config: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """SIGKILL the gateway mid-load; every answered request must be in the store."""
    db = work / "kill9.db"
    gw = Gateway(config, db, work / "gateway-kill9.log")
    answered: list[str] = []

    async def run() -> None:
        def progress(_: int) -> None:
            pass

        task = asyncio.create_task(
            load(gw.url, 4000, args.concurrency, args.client_timeout, on_progress=progress)
        )
        await asyncio.sleep(3.0)
        os.kill(gw.proc.pid, signal.SIGKILL)
        results = await task
        answered.extend(r["trace_id"] for r in results if r["status"] == 200 and r["ok"])

    asyncio.run(run())
    gw.proc.wait()
    gw.log.close()
    restarted = Gateway(config, db, work / "gateway-kill9.log")  # restart on the same store
    restarted.stop()
    ids = set(asyncio.run(stored_ids(db)))
    missing = [t for t in answered if t not in ids]
    return {
        "answered_before_kill": len(answered),
        "missing_after_restart": len(missing),
        "rows_in_store": len(ids),
    }


if __name__ == "__main__":
    main()
