"""The gateway on a real socket (uvicorn in a thread) in front of the package's fake OpenAI
upstream: the official `openai` client unmodified, fallback, circuit breaker, client-disconnect
cancellation, and a small load with injected faults (the 10,000-request run is
benchmarks/gateway_load.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import GatewaySettings, create_app
from duetto.gateway.auth import hash_key
from duetto.testing import FakeOpenAIServer, ServerThread

pytestmark = pytest.mark.timeout(120)

KEY = "sk-gateway-test"


def config(
    upstream: FakeOpenAIServer,
    *,
    timeout_s: float = 5.0,
    retries: int = 2,
    breaker_failures: int = 5,
    fallback: str | None = "slm",
) -> Any:
    return parse_config(
        {
            "endpoints": {
                "up": {
                    "base_url": upstream.base_url,
                    "timeout_s": timeout_s,
                    "connect_timeout_s": 1.0,
                    "retries": retries,
                }
            },
            "models": {
                "slm": {
                    "backend": "fake",
                    "script": "local fallback answer",
                    "card": {"name": "slm-card"},
                },
                "llm": {
                    "backend": "openai",
                    "endpoint": "up",
                    "model": "fake-llm",
                    "card": {
                        "name": "llm-card",
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
                    "scorer": {"kind": "length", "scale_chars": 40},
                }
            },
            "gateway": {
                "fallback": fallback,
                "breaker_failures": breaker_failures,
                "breaker_reset_s": 60,
                "keys": [{"name": "t", "key_sha256": hash_key(KEY)}],
            },
        }
    )


def serve(cfg: Any, tmp_path: Path, **kw: Any) -> ServerThread:
    settings = GatewaySettings.from_config(cfg, db=str(tmp_path / "gw.db"))
    for k, v in kw.items():
        setattr(settings, k, v)
    return ServerThread(create_app(Engine(cfg), settings))


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(script={"hello": "hi from the large model"}) as server:
        yield server


def store_of(server: ServerThread) -> Any:
    return server.app.state.store


def in_loop(server: ServerThread, coro: Any) -> Any:
    """Run a coroutine on the gateway's own loop (the store's futures live there)."""
    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, server.loop).result(30)


def test_the_official_openai_client_works_unmodified(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    with serve(config(upstream), tmp_path) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="llm", messages=[{"role": "user", "content": "hello"}]
        )
        trace_id = raw.headers["x-duetto-trace-id"]
        done = raw.parse()
        assert done.choices[0].message.content == "hi from the large model"
        assert done.choices[0].finish_reason == "stop"
        assert done.usage is not None and done.usage.total_tokens > 0
        chunks = list(
            client.chat.completions.create(
                model="llm",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "hi from the large model"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        plain = list(
            client.chat.completions.create(
                model="route", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert plain[-1].usage is not None  # usage in the final chunk even when not asked
        models = {m.id for m in client.models.list()}
        assert {"route", "slm", "llm"} <= models
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(
                base_url=gw.base_url, api_key="sk-wrong", max_retries=0
            ).chat.completions.create(model="llm", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError, match="temperature"):
            client.chat.completions.create(
                model="llm", temperature=7, messages=[{"role": "user", "content": "x"}]
            )
        r = httpx.post(
            gw.base_url + "/chat/completions",
            content=b"{oops",
            headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
        )
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
        trace = httpx.get(
            f"{gw.base_url}/traces/{trace_id}", headers={"Authorization": f"Bearer {KEY}"}
        ).json()
        assert trace["trace"]["name"] == "llm-card" and trace["trace"]["usage"]["bytes_sent"] > 0


def test_upstream_failures_fall_back_and_open_the_breaker(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    cfg = config(upstream, retries=0, breaker_failures=2)
    with serve(cfg, tmp_path) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
        upstream.fail_next(2, status=500)
        for _ in range(2):
            r = client.chat.completions.create(
                model="llm", messages=[{"role": "user", "content": "hello"}]
            )
            assert r.choices[0].message.content == "local fallback answer"
        assert httpx.get(gw.url + "/health").json()["breakers"] == {"llm": "open"}
        seen = upstream.counts["chat"]
        r = client.chat.completions.create(
            model="llm", messages=[{"role": "user", "content": "hello"}]
        )
        assert r.choices[0].message.content == "local fallback answer"
        assert upstream.counts["chat"] == seen  # the open breaker did not call the upstream
        assert 'duetto_breaker_open{upstream="llm"} 1.0' in httpx.get(gw.url + "/metrics").text


def test_a_cut_stream_is_completed_by_the_fallback(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    upstream.script = "one two three four five six seven eight"
    with serve(config(upstream), tmp_path) as gw:
        upstream.fail_next(1, kind="broken")
        client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="llm", messages=[{"role": "user", "content": "count"}], stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("one two three") and text.endswith("local fallback answer")


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_the_upstream_call(
    upstream: FakeOpenAIServer, tmp_path: Path, stream: bool
) -> None:
    upstream.settings.latency_s = 3.0
    with serve(config(upstream), tmp_path) as gw:
        body = {
            "model": "llm",
            "messages": [{"role": "user", "content": "hello"}],
            "stream": stream,
        }
        t0 = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                gw.base_url + "/chat/completions",
                json=body,
                timeout=0.5,
                headers={"Authorization": f"Bearer {KEY}"},
            )
        deadline = time.perf_counter() + 2.0
        records: list[Any] = []
        while time.perf_counter() < deadline and not records:
            time.sleep(0.05)
            records = in_loop(gw, store_of(gw).recent(5))
        assert records, "the cancelled request was not stored"
        assert records[0].status == "cancelled" and records[0].http_status == 499
        assert time.perf_counter() - t0 < 2.9  # recorded before the upstream would have answered
        assert gw.app.state.metrics.in_flight._value.get() == 0


def test_small_load_with_faults_every_request_answered_and_stored_once(
    upstream: FakeOpenAIServer,
    tmp_path: Path,
) -> None:
    """500 requests, 50 concurrent; 10% HTTP 500, 5% hangs past the timeout, 2% cut streams."""
    upstream.settings.error_rate = 0.10
    upstream.settings.timeout_rate = 0.05
    upstream.settings.broken_rate = 0.02
    upstream.settings.hang_s = 3.0
    upstream.settings.record = False
    cfg = config(upstream, timeout_s=0.5, retries=1, breaker_failures=10**6)
    with serve(cfg, tmp_path) as gw:

        async def run() -> list[tuple[int, str | None, bool]]:
            limits = httpx.Limits(max_connections=50)
            async with httpx.AsyncClient(
                base_url=gw.base_url,
                limits=limits,
                timeout=15,
                headers={"Authorization": f"Bearer {KEY}"},
            ) as c:
                sem = asyncio.Semaphore(50)

                async def one(i: int) -> tuple[int, str | None, bool]:
                    body = {
                        "model": "llm" if i % 2 else "route",
                        "stream": i % 3 == 0,
                        "messages": [{"role": "user", "content": f"hello {i}"}],
                    }
                    async with sem:
                        r = await c.post("/chat/completions", json=body)
                    well_formed = (
                        r.text.rstrip().endswith("[DONE]")
                        if body["stream"] and r.status_code == 200
                        else "choices" in r.json() or "error" in r.json()
                    )
                    return r.status_code, r.headers.get("x-duetto-trace-id"), well_formed

                return await asyncio.gather(*[one(i) for i in range(500)])

        t0 = time.perf_counter()
        results = asyncio.run(run())
        elapsed = time.perf_counter() - t0
        assert all(ok for _, _, ok in results)
        assert [s for s, _, _ in results].count(200) == 500  # every failure rescued
        ids = [t for _, t, _ in results if t]
        stored = in_loop(gw, store_of(gw).ids())
        assert len(ids) == 500 and sorted(stored) == sorted(ids)
        faults = upstream.counts["error"] + upstream.counts["timeout"] + upstream.counts["broken"]
        assert faults > 20  # the faults did happen (about 17% of the ~270 upstream calls)
        assert elapsed < 60


def test_response_format_reaches_the_upstream_as_sent_and_a_bad_one_is_a_400(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}
    with serve(config(upstream), tmp_path) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
        client.chat.completions.create(
            model="llm",
            messages=[{"role": "user", "content": "hello"}],
            response_format=fmt,  # type: ignore[arg-type]
        )
        assert upstream.requests[-1]["response_format"] == fmt
        client.chat.completions.create(model="llm", messages=[{"role": "user", "content": "hello"}])
        assert "response_format" not in upstream.requests[-1]  # never invented
        with pytest.raises(openai.BadRequestError, match="json_schema"):
            client.chat.completions.create(
                model="llm",
                messages=[{"role": "user", "content": "hello"}],
                response_format={"type": "json_schema"},  # type: ignore[typeddict-item]
            )
