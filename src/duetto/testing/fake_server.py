"""A real HTTP server on loopback that speaks the OpenAI chat protocol, for tests and benchmarks.

`FakeOpenAIServer` runs uvicorn in a background thread (`ServerThread`) around a bare ASGI app
(no framework: the handler must stay cheap enough for ~10,000 requests at 200 concurrent
clients). It renders answers with `duetto.openai_wire`, as the gateway does. It answers
from a script, injects faults (latency, error statuses, hangs past the client's timeout, cut
streams) from a seeded generator or an exact queue, and records what it received.

    with FakeOpenAIServer(script={"2+2?": "4"}) as server:
        model = OpenAIModel(card, server.base_url, "fake-llm")
        server.fail_next(2, status=500)   # the next two requests get a 500
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from duetto import openai_wire as wire
from duetto.testing.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    CutConnection,
    Exchange,
    FaultKind,
    QuietCut,
    Receive,
    Scope,
    Send,
    request_size,
    send_bytes,
    send_error,
    send_json,
)
from duetto.testing.server_thread import ServerThread

Script = Callable[[list[dict[str, Any]]], str] | Mapping[str, str] | str | None

_UVICORN: dict[str, Any] = {  # the handler must stay cheap: no logs, no lifespan, no date header
    "log_config": None,
    "log_level": None,
    "access_log": False,
    "lifespan": "off",
    "interface": "asgi3",
    "http": "h11",
    "proxy_headers": False,
    "backlog": 4096,
    "timeout_keep_alive": 30,
    "timeout_graceful_shutdown": 2,
    "server_header": False,
    "date_header": False,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure. `error`: answer `status`; `timeout`: hang for `hang_s` before
    answering; `broken`: cut the connection in the middle of the body."""

    kind: FaultKind = "error"
    status: int = 500
    retry_after: float | None = None  # sent as a Retry-After header with an error status


@dataclass(slots=True)
class _Settings:
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    chunk_delay_s: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    timeout_rate: float = 0.0
    broken_rate: float = 0.0
    hang_s: float = 30.0
    retry_after: float | None = None
    logprob: float = -0.1
    models: tuple[str, ...] = ("fake-llm",)
    record: bool = True
    forced: deque[Fault] = field(default_factory=deque)


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 (a free port), run in a background thread."""

    def __init__(
        self,
        script: Script = None,
        *,
        latency_s: float = 0.0,
        latency_jitter_s: float = 0.0,
        chunk_delay_s: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 500,
        timeout_rate: float = 0.0,
        broken_rate: float = 0.0,
        hang_s: float = 30.0,
        retry_after: float | None = None,
        seed: int = 0,
        logprob: float = -0.1,
        models: tuple[str, ...] = ("fake-llm",),
        record: bool = True,
    ) -> None:
        self.script = script
        self.settings = _Settings(
            latency_s=latency_s,
            latency_jitter_s=latency_jitter_s,
            chunk_delay_s=chunk_delay_s,
            error_rate=error_rate,
            error_status=error_status,
            timeout_rate=timeout_rate,
            broken_rate=broken_rate,
            hang_s=hang_s,
            retry_after=retry_after,
            logprob=logprob,
            models=models,
            record=record,
        )
        self.rng = random.Random(seed)
        self.exchanges: list[Exchange] = []
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._ids = 0
        self._runner: ServerThread | None = None
        self._stopping: asyncio.Event | None = None

    # ---- control -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed JSON bodies of the chat requests received, in arrival order."""
        return [e.body for e in self.exchanges if e.body is not None]

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        kind: FaultKind = "error",
        retry_after: float | None = None,
    ) -> None:
        """Make exactly the next `n` chat requests fail this way (before any random fault)."""
        for _ in range(n):
            self.settings.forced.append(Fault(kind, status, retry_after))

    def reset(self) -> None:
        """Forget recorded exchanges, counters and queued faults."""
        self.exchanges.clear()
        self.counts.clear()
        self.settings.forced.clear()

    def start(self) -> FakeOpenAIServer:
        if self._runner is not None:
            return self
        logging.getLogger("uvicorn.error").addFilter(_QUIET)
        self._stopping = asyncio.Event()  # bound to the server's loop when first awaited
        runner = ServerThread(
            self._app, config=_UVICORN, name="fake-openai", start_timeout_s=10, stop_timeout_s=10
        )
        try:
            runner.start()
        except RuntimeError as exc:
            raise RuntimeError(f"fake OpenAI server did not start: {exc}") from exc
        self._runner, self.port = runner, runner.port
        return self

    def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if runner.loop is not None and self._stopping is not None:
            runner.loop.call_soon_threadsafe(self._stopping.set)  # wake hanging handlers
        runner.stop()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAIServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # ---- the ASGI app --------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path: str = scope["path"]
        self.counts["requests"] += 1
        exchange = Exchange(path=path, body=None, request_bytes=request_size(scope, body))
        if self.settings.record:
            self.exchanges.append(exchange)
        if path.endswith("/v1/models") and scope["method"] == "GET":
            self.counts["models"] += 1
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "duetto"}
                for m in self.settings.models
            ]
            await send_json(send, exchange, 200, {"object": "list", "data": data})
        elif path.endswith("/v1/chat/completions") and scope["method"] == "POST":
            await self._chat(body, exchange, send)
        else:
            await send_error(send, exchange, 404, f"no route {scope['method']} {path}")

    async def _chat(self, raw: bytes, exchange: Exchange, send: Send) -> None:
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            self.counts["bad_requests"] += 1
            await send_error(send, exchange, 400, f"invalid request: {exc}")
            return
        exchange.body = body
        self.counts["chat"] += 1
        s = self.settings
        delay = s.latency_s + (self.rng.uniform(0, s.latency_jitter_s) if s.latency_jitter_s else 0)
        if delay:
            await self._pause(delay)
        fault = self._pick_fault()
        if fault is not None:
            exchange.fault = fault.kind
            self.counts[fault.kind] += 1
        if fault is not None and fault.kind == "error":
            headers = []
            if fault.retry_after is not None:
                headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
            await send_error(send, exchange, fault.status, "injected failure", headers)
            return
        if fault is not None and fault.kind == "timeout":
            await self._pause(s.hang_s)  # past the client's timeout
        text, finish = self._answer(body)
        broken = fault is not None and fault.kind == "broken"
        if body.get("stream"):
            self.counts["streams"] += 1
            await self._send_stream(send, exchange, body, text, finish, broken)
        else:
            await self._send_completion(send, exchange, body, text, finish, broken)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end at once when stop() is called (no waiting out a 30 s hang)."""
        assert self._stopping is not None
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _pick_fault(self) -> Fault | None:
        s = self.settings
        if s.forced:
            try:
                return s.forced.popleft()
            except IndexError:  # emptied by a concurrent request
                pass
        if not (s.error_rate or s.timeout_rate or s.broken_rate):
            return None
        r = self.rng.random()
        if r < s.error_rate:
            return Fault("error", s.error_status, s.retry_after)
        if r < s.error_rate + s.timeout_rate:
            return Fault("timeout")
        if r < s.error_rate + s.timeout_rate + s.broken_rate:
            return Fault("broken")
        return None

    def _answer(self, body: dict[str, Any]) -> tuple[str, str]:
        messages: list[dict[str, Any]] = body["messages"]
        last_user = next(
            (str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        s = self.script
        if callable(s):
            text = s(messages)
        elif isinstance(s, str):
            text = s
        elif isinstance(s, Mapping) and last_user in s:
            text = s[last_user]
        else:
            text = f"echo: {last_user}"
        finish = "stop"
        options = wire.request_options(body)
        for stop in options.get("stop", ()):
            if stop and stop in text:
                text = text[: text.index(stop)]
        max_tokens = options.get("max_tokens")
        words = _tokens(text)
        if isinstance(max_tokens, int) and len(words) > max_tokens:
            text, finish = "".join(words[:max_tokens]), "length"
        return text, finish

    def _next_id(self) -> str:
        self._ids += 1
        return f"chatcmpl-fake-{self._ids}"

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        prompt = sum(len(str(m.get("content") or "").split()) + 1 for m in body["messages"])
        return wire.usage_block(prompt, len(_tokens(text)))

    def _logprobs(self, tokens: list[str]) -> dict[str, Any]:
        return wire.logprobs_block(tokens, [self.settings.logprob] * len(tokens))

    async def _send_completion(
        self,
        send: Send,
        exchange: Exchange,
        body: dict[str, Any],
        text: str,
        finish: str,
        broken: bool,
    ) -> None:
        payload = wire.completion(
            self._next_id(),
            body.get("model", self.settings.models[0]),
            text,
            finish,
            self._usage(body, text),
            logprobs=self._logprobs(_tokens(text)) if body.get("logprobs") else None,
        )
        data = wire.encode(payload)
        if not broken:
            await send_bytes(send, exchange, 200, JSON_HEADERS, data)
            return
        headers = [*JSON_HEADERS, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = data[: len(data) // 2]
        exchange.response_body_bytes += len(half)
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise CutConnection

    async def _send_stream(
        self,
        send: Send,
        exchange: Exchange,
        body: dict[str, Any],
        text: str,
        finish: str,
        broken: bool,
    ) -> None:
        include_usage = wire.wants_usage(body)
        chunks = wire.Chunks(
            self._next_id(), body.get("model", self.settings.models[0]), include_usage
        )
        want_logprobs = bool(body.get("logprobs"))

        async def emit(data: bytes) -> None:
            # counted before sending: a client that has read the last byte must find it counted
            exchange.response_body_bytes += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await emit(chunks.role())
        tokens = _tokens(text)
        cut_at = max(1, len(tokens) // 2) if broken else -1
        for i, token in enumerate(tokens):
            if i == cut_at:
                raise CutConnection
            if self.settings.chunk_delay_s:
                await self._pause(self.settings.chunk_delay_s)
            await emit(chunks.delta(token, self._logprobs([token]) if want_logprobs else None))
        if broken:  # an answer too short to cut in the middle: cut before the finish
            raise CutConnection
        await emit(chunks.finish(finish, self._usage(body, text) if include_usage else None))
        await emit(wire.DONE)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


_QUIET = QuietCut()


def _tokens(text: str) -> list[str]:
    """Whitespace-preserving word pieces: "a b" -> ["a", " b"]; they concatenate to `text`."""
    out: list[str] = []
    start = 0
    for i in range(1, len(text)):
        if text[i].isspace() and not text[i - 1].isspace():
            out.append(text[start:i])
            start = i
    if text:
        out.append(text[start:])
    return out
