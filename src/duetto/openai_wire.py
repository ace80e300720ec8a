"""The OpenAI Chat Completions wire format, in one place: the client backend
(`models/openai.py`) builds requests and parses answers with it, the gateway
(`gateway/protocol.py`) and the fake server (`testing/fake_server.py`) render answers with it.
Pure functions over plain data (no I/O, no HTTP library).

Request options are data: `REQUEST_FIELDS` maps each `ChatRequest` attribute to its JSON key
once, and both directions (`request_payload`, `request_options`) walk that table. A new option
(tools, response_format, n, ...) is one `WireField` row plus its `ChatRequest` attribute.

Answers: `completion(...)` is a whole `chat.completion` object; `Chunks` renders the SSE events
of a streamed one (role, deltas, finish, usage, [DONE]) as OpenAI sends them. `StreamState`
parses those events back, one line at a time.

Byte sizes: `head_size` counts an HTTP/1.1 start line and headers as they go over the wire;
`request_size` / `response_head_size` apply it to httpx objects.

SSE parsing handles single-line `data:` events only (multi-line events are not joined as the
SSE spec allows; OpenAI-compatible servers never send them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from duetto.messages import ChatRequest

if TYPE_CHECKING:
    import httpx

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")
DONE = b"data: [DONE]\n\n"


# --- requests ---------------------------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _stops_out(stop: Sequence[str]) -> list[str] | None:
    return list(stop) or None


def _stops_in(stop: Any) -> tuple[str, ...]:
    return (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop or ())


@dataclass(frozen=True, slots=True)
class WireField:
    """One request option: the `ChatRequest` attribute `attr` travels as JSON key `key`.
    `encode` maps the attribute to JSON (None: not sent); `decode` maps JSON back. `also` are
    other keys a server reads for it, before `key` (OpenAI's newer spellings)."""

    attr: str
    key: str
    encode: Callable[[Any], Any] = _same
    decode: Callable[[Any], Any] = _same
    also: tuple[str, ...] = ()


REQUEST_FIELDS: tuple[WireField, ...] = (
    WireField("max_tokens", "max_tokens", also=("max_completion_tokens",)),
    WireField("temperature", "temperature"),
    WireField("stop", "stop", _stops_out, _stops_in),
    WireField("seed", "seed"),
    WireField("response_format", "response_format"),
)


def request_payload(
    request: ChatRequest,
    model: str,
    *,
    stream: bool = False,
    logprobs: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a `/chat/completions` call for `request` (`extra` wins over all)."""
    body: dict[str, Any] = {"model": model, "messages": [m.to_dict() for m in request.messages]}
    for f in REQUEST_FIELDS:
        value = f.encode(getattr(request, f.attr))
        if value is not None:
            body[f.key] = value
    if logprobs:
        body["logprobs"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra or {})
    return body


def request_options(body: Mapping[str, Any]) -> dict[str, Any]:
    """`ChatRequest` keyword arguments from a request body: the options it sets (not None)."""
    out: dict[str, Any] = {}
    for f in REQUEST_FIELDS:
        value = next((body[k] for k in (*f.also, f.key) if body.get(k) is not None), None)
        if value is not None:
            out[f.attr] = f.decode(value)
    return out


def wants_usage(body: Mapping[str, Any]) -> bool:
    """Did a streamed request ask for the separate usage chunk (`stream_options`)?"""
    return bool((body.get("stream_options") or {}).get("include_usage"))


# --- answers ----------------------------------------------------------------------------------


def finish_reason(value: str | None) -> str:
    return value if value in FINISH_REASONS else "stop"


def usage_block(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


def logprobs_block(tokens: Sequence[str], logprobs: Sequence[float]) -> dict[str, Any]:
    """An OpenAI `logprobs` block: one entry per token (no alternatives)."""
    return {
        "content": [
            {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
            for t, lp in zip(tokens, logprobs, strict=True)
        ]
    }


def logprobs_of(block: Any) -> list[float] | None:
    """Per-token log-probabilities from an OpenAI `logprobs` block, or None."""
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None
    out = [float(t["logprob"]) for t in block["content"] if isinstance(t, dict) and "logprob" in t]
    return out or None


def completion(
    cid: str,
    model: str,
    text: str,
    finish: str | None,
    usage: dict[str, int] | None,
    *,
    created: int | None = None,
    logprobs: dict[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `chat.completion` object; `extra` adds top-level fields (clients ignore unknown ones)."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish_reason(finish),
            }
        ],
        "usage": usage,
        "system_fingerprint": None,
    }
    body.update(extra or {})
    return body


def error_body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def encode(payload: Any) -> bytes:
    """JSON as duetto sends it: compact, UTF-8."""
    return json.dumps(payload, separators=(",", ":")).encode()


def sse(payload: Any) -> bytes:
    """One server-sent event carrying `payload` as JSON."""
    return b"data: " + encode(payload) + b"\n\n"


class Chunks:
    """The server-sent events of one streamed completion, as OpenAI sends them."""

    def __init__(
        self, cid: str, model: str, include_usage: bool, created: int | None = None
    ) -> None:
        self.id = cid
        self.model = model
        self.created = created or int(time.time())
        self.include_usage = include_usage

    def chunk(self, choices: list[dict[str, Any]], **more: Any) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            payload["usage"] = None
        payload.update(more)
        return sse(payload)

    @staticmethod
    def _choice(delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}

    def role(self) -> bytes:
        return self.chunk([self._choice({"role": "assistant", "content": ""})])

    def delta(self, text: str, logprobs: dict[str, Any] | None = None) -> bytes:
        return self.chunk([self._choice({"content": text}, None, logprobs)])

    def finish(
        self,
        reason: str | None,
        usage: dict[str, int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The finish chunk, then the usage: OpenAI's separate usage chunk when the client asked
        for it, else the usage (if any) rides on the finish chunk (clients ignore unknown
        fields). `extra`: more top-level fields on the chunk that carries the usage."""
        choice = [self._choice({}, finish_reason(reason))]
        more = dict(extra or {})
        if not self.include_usage:
            return self.chunk(choice, **({"usage": usage} if usage else {}), **more)
        return self.chunk(choice) + self.chunk([], usage=usage, **more)

    @staticmethod
    def error(message: str, kind: str = "server_error", code: str | None = None) -> bytes:
        return sse(error_body(message, kind, code))

    DONE = DONE


@dataclass(slots=True)
class StreamState:
    """What one streamed answer has delivered so far: `feed` it each SSE line."""

    parts: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None
    usage: Any = None
    done: bool = False
    error: str | None = None
    ttft_ms: float | None = None

    def feed(self, line: str) -> str:
        """Take one SSE line; return the text delta it carried ("" if none)."""
        line = line.strip()
        if not line.startswith("data:"):
            return ""  # blank separators, comments (":"), `event:`/`id:` fields
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            self.error = f"undecodable event: {data[:200]}"
            return ""
        if not isinstance(chunk, dict):
            return ""
        if "error" in chunk:
            self.error = json.dumps(chunk["error"])
            return ""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        delta = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
            lps = logprobs_of(choice.get("logprobs"))
            if lps:
                self.logprobs.extend(lps)
        if delta:
            self.parts.append(delta)
        return delta


# --- bytes on the wire ------------------------------------------------------------------------


def head_size(start_line: bytes | str, headers: Iterable[tuple[bytes | str, bytes | str]]) -> int:
    """Bytes of an HTTP/1.1 start line and headers, with their CRLFs and the blank line."""
    return len(start_line) + 2 + sum(len(k) + 2 + len(v) + 2 for k, v in headers) + 2


def request_size(request: httpx.Request) -> int:
    """Bytes of an HTTP/1.1 request on the wire: request line, headers, blank line, body."""
    line = request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"
    return head_size(line, request.headers.raw) + len(request.content)


def response_head_size(response: httpx.Response) -> int:
    """Bytes of a response's status line and headers (the body is counted as it arrives)."""
    line = f"{response.http_version} {response.status_code} {response.reason_phrase}"
    return head_size(line, response.headers.raw)
