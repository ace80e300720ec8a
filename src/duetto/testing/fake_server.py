"""A real HTTP server on loopback that speaks the OpenAI chat protocol, for tests and benchmarks.

`FakeOpenAIServer` runs uvicorn in a background thread (`ServerThread`) around a bare ASGI app
(no framework: the handler must stay cheap enough for ~10,000 requests at 200 concurrent
clients). It renders answers with `duetto.openai_wire`, as the gateway does. It answers
from a script, injects faults (latency, error statuses, hangs past the client's timeout, cut
streams) from a seeded generator or an exact queue, and records what it received.

    with FakeOpenAIServer(script={"2+2?": "4"}) as server:
        model = OpenAIModel(card, server.base_url, "fake-llm")
        server.fail_next(2, status=500)   # the next two requests get a 500

What it answers, beyond the script (deterministic, so a client run directly against it and
through duetto in front of it must see the same):

- tools: with `tools` and `tool_choice` other than "none", the answer is one tool call
  (finish_reason "tool_calls"), unless the last message is a tool result: then text (the
  script's, else "the tool returned: <result>"). The tool is the one `tool_choice` names,
  else the first whose name is in the last user message, else the first. Its arguments are
  `tool_arguments(name, parameters, messages)` if given, else a value valid for the tool's
  `parameters` schema made up from the last user message (`duetto.testing.instances`:
  "magic_function(3)" gives {"input": 3}). One call per answer, even with
  parallel_tool_calls. Streamed as OpenAI does: id and name first, arguments in pieces.
- response_format: `json_schema` → JSON valid for the schema; `json_object` → the script's
  text if it is a JSON object, else an instance of the first JSON schema written in the
  messages (instructor's JSON mode), else {"answer": text}. A plain request whose messages
  hold a JSON schema and no scripted answer gets an instance in a ```json block (MD_JSON).
- n: n choices (the same answer each), index 0..n-1, streamed too.
- logprobs / top_logprobs: `logprob` for every token, and top_logprobs alternatives (the
  token itself first, then "<token>~j" at logprob - j); streamed per delta.
- content parts: text, image_url, input_audio, file (and refusal) are accepted, unless
  missing from `parts` (then 400, as a text-only model answers); unknown part types: 400.
- usage: prompt/completion/total tokens (words) and OpenAI's token details (zeros);
  streamed as the separate usage chunk when `stream_options.include_usage` is set.
- malformed messages, tools, n: 400 with OpenAI's error body.
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
from duetto.messages import Choice, ToolCall, ToolCallDelta
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
from duetto.testing.instances import instance_for, schema_in
from duetto.testing.server_thread import ServerThread

Script = Callable[[list[dict[str, Any]]], str] | Mapping[str, str] | str | None
ToolArguments = Callable[[str, dict[str, Any], list[dict[str, Any]]], dict[str, Any]]
ALL_PARTS = ("text", "image_url", "input_audio", "file", "refusal")

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
    parts: frozenset[str] = frozenset(ALL_PARTS)
    forced: deque[Fault] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Reply:
    """One choice of an answer."""

    text: str
    finish: str
    tool_calls: tuple[ToolCall, ...] = ()

    def tokens(self) -> list[str]:
        return _tokens(self.text) if not self.tool_calls else []

    def token_count(self) -> int:
        return len(_tokens(self.text)) + sum(len(_tokens(c.arguments)) for c in self.tool_calls)


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
        tool_arguments: ToolArguments | None = None,
        parts: tuple[str, ...] = ALL_PARTS,
    ) -> None:
        self.script = script
        self.tool_arguments = tool_arguments
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
            parts=frozenset(parts),
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
            _check(body, self.settings.parts)
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
        replies = self._replies(body)
        broken = fault is not None and fault.kind == "broken"
        if body.get("stream"):
            self.counts["streams"] += 1
            await self._send_stream(send, exchange, body, replies, broken)
        else:
            await self._send_completion(send, exchange, body, replies, broken)

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

    def _replies(self, body: dict[str, Any]) -> list[_Reply]:
        """The n choices of the answer to `body` (see the module docstring)."""
        n = body.get("n") or 1
        messages: list[dict[str, Any]] = body["messages"]
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        last_role = messages[-1].get("role") if messages else None
        if tools and choice != "none" and last_role not in ("tool", "function"):
            self.counts["tool_calls"] += 1
            reply = _Reply("", "tool_calls", (self._tool_call(messages, tools, choice),))
        else:
            reply = _Reply(*self._answer(body))
        return [reply] * n

    def _tool_call(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], choice: Any
    ) -> ToolCall:
        wanted = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        user = _last_user(messages)
        fns = [t["function"] for t in tools]
        fn = next((f for f in fns if f["name"] == wanted), None) or next(
            (f for f in fns if f["name"] in user), fns[0]
        )
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if self.tool_arguments is not None:
            args = self.tool_arguments(fn["name"], params, messages)
        else:
            args = instance_for(params, user)
        self._ids += 1
        return ToolCall(f"call_fake_{self._ids}", fn["name"], json.dumps(args))

    def _answer(self, body: dict[str, Any]) -> tuple[str, str]:
        messages: list[dict[str, Any]] = body["messages"]
        last_user = _last_user(messages)
        s = self.script
        scripted = True
        if callable(s):
            text = s(messages)
        elif isinstance(s, str):
            text = s
        elif isinstance(s, Mapping) and last_user in s:
            text = s[last_user]
        elif messages and messages[-1].get("role") in ("tool", "function"):
            text = f"the tool returned: {_text(messages[-1].get('content'))}"
        else:
            text, scripted = f"echo: {last_user}", False
        structured = self._structured(body, text, scripted, last_user)
        if structured is not None:
            return structured, "stop"
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

    def _structured(self, body: dict[str, Any], text: str, scripted: bool, user: str) -> str | None:
        """JSON for a response_format (or a schema stated in the prompt), None for text."""
        fmt = body.get("response_format") or {}
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {}
            return json.dumps(instance_for(schema, user))
        if kind not in (None, "text", "json_object"):
            return None
        if kind == "json_object" and scripted and _is_json_object(text):
            return text
        if kind is None and scripted:
            return None
        schema_ = schema_in([_text(m.get("content")) for m in body["messages"]])
        if schema_ is None:
            return json.dumps({"answer": text}) if kind == "json_object" else None
        value = json.dumps(instance_for(schema_, user))
        return value if kind == "json_object" else f"```json\n{value}\n```"

    def _next_id(self) -> str:
        self._ids += 1
        return f"chatcmpl-fake-{self._ids}"

    def _usage(self, body: dict[str, Any], replies: list[_Reply]) -> dict[str, Any]:
        prompt = sum(len(_text(m.get("content")).split()) + 1 for m in body["messages"])
        out = sum(r.token_count() for r in replies)
        return wire.usage_block(prompt, out, {})

    def _logprobs(self, tokens: list[str], top: int = 0) -> dict[str, Any]:
        lp = self.settings.logprob
        alts = [
            [(t, lp)] + [(f"{t}~{j}", lp - j) for j in range(1, top)] if top else [] for t in tokens
        ]
        return wire.logprobs_block(tokens, [lp] * len(tokens), alts)

    async def _send_completion(
        self,
        send: Send,
        exchange: Exchange,
        body: dict[str, Any],
        replies: list[_Reply],
        broken: bool,
    ) -> None:
        want_logprobs, top = bool(body.get("logprobs")), int(body.get("top_logprobs") or 0)
        choices = []
        for i, reply in enumerate(replies):
            choice = Choice(reply.text, reply.finish, reply.tool_calls)
            block = wire.choice_block(i, choice)
            if want_logprobs:
                block["logprobs"] = self._logprobs(reply.tokens(), top)
            choices.append(block)
        payload = wire.completion_of(
            self._next_id(),
            body.get("model", self.settings.models[0]),
            choices,
            self._usage(body, replies),
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
        replies: list[_Reply],
        broken: bool,
    ) -> None:
        include_usage = wire.wants_usage(body)
        chunks = wire.Chunks(
            self._next_id(), body.get("model", self.settings.models[0]), include_usage
        )
        want_logprobs, top = bool(body.get("logprobs")), int(body.get("top_logprobs") or 0)

        async def emit(data: bytes) -> None:
            # counted before sending: a client that has read the last byte must find it counted
            exchange.response_body_bytes += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def reply_events(index: int, reply: _Reply, cut: bool) -> None:
            await emit(chunks.role(index))
            for k, call in enumerate(reply.tool_calls):  # id and name, then the arguments
                await emit(chunks.tool_calls([ToolCallDelta(k, call.id, call.name, "")], index))
                half = len(call.arguments) // 2
                await emit(
                    chunks.tool_calls([ToolCallDelta(k, arguments=call.arguments[:half])], index)
                )
                if cut:
                    raise CutConnection
                await emit(
                    chunks.tool_calls([ToolCallDelta(k, arguments=call.arguments[half:])], index)
                )
            tokens = reply.tokens()
            cut_at = max(1, len(tokens) // 2) if cut else -1
            for i, token in enumerate(tokens):
                if i == cut_at:
                    raise CutConnection
                if self.settings.chunk_delay_s:
                    await self._pause(self.settings.chunk_delay_s)
                lp = self._logprobs([token], top) if want_logprobs else None
                await emit(chunks.delta(token, lp, index))
            if cut:  # an answer too short to cut in the middle: cut before the finish
                raise CutConnection

        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await reply_events(0, replies[0], broken)
        for index, reply in enumerate(replies[1:], 1):
            await reply_events(index, reply, False)
            await emit(chunks.choice_finish(index, reply.finish))
        usage = self._usage(body, replies) if include_usage else None
        await emit(chunks.finish(replies[0].finish, usage))
        await emit(wire.DONE)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _text(content: Any) -> str:
    """The text of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text") or "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _check(body: dict[str, Any], parts: frozenset[str]) -> None:
    """Refuse what OpenAI refuses with a 400: bad messages, parts, tools, n."""
    for i, m in enumerate(body["messages"]):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
        ):
            raise ValueError(f"messages[{i}]: bad message")
        content = m.get("content")
        if isinstance(content, list):
            for p in content:
                kind = p.get("type") if isinstance(p, dict) else None
                if kind not in ALL_PARTS:
                    raise ValueError(f"messages[{i}]: unknown content part type {kind!r}")
                if kind not in parts:
                    raise ValueError(f"messages[{i}]: this model does not accept {kind} parts")
        elif content is not None and not isinstance(content, str):
            raise TypeError(f"messages[{i}].content must be a string or a list of parts")
        if m.get("role") == "tool" and not m.get("tool_call_id"):
            raise ValueError(f"messages[{i}]: a tool message needs tool_call_id")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise TypeError("tools must be a list")
        for t in tools:
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError("each tool needs function.name")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or not 1 <= n <= 16):
        raise ValueError("n must be an integer from 1 to 16")


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
