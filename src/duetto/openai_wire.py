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

from duetto.messages import ChatRequest, Choice, ToolCall, ToolCallDelta

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


def _list_out(items: Sequence[Any]) -> list[Any] | None:
    return list(items) or None


def _tuple_in(items: Any) -> tuple[Any, ...]:
    return tuple(items or ())


REQUEST_FIELDS: tuple[WireField, ...] = (
    WireField("max_tokens", "max_tokens", also=("max_completion_tokens",)),
    WireField("temperature", "temperature"),
    WireField("stop", "stop", _stops_out, _stops_in),
    WireField("seed", "seed"),
    WireField("response_format", "response_format"),
    WireField("tools", "tools", _list_out, _tuple_in),
    WireField("tool_choice", "tool_choice"),
    WireField("parallel_tool_calls", "parallel_tool_calls"),
    WireField("n", "n"),
    WireField("logprobs", "logprobs"),
    WireField("top_logprobs", "top_logprobs"),
    WireField("user", "user"),
    WireField("client_metadata", "metadata"),
)

# Keys with a home of their own: everything else a client sends goes to `ChatRequest.extra`.
OWN_KEYS = frozenset(
    {"model", "messages", "stream", "stream_options"}
    | {f.key for f in REQUEST_FIELDS}
    | {k for f in REQUEST_FIELDS for k in f.also}
)


def request_payload(
    request: ChatRequest,
    model: str,
    *,
    stream: bool = False,
    logprobs: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a `/chat/completions` call for `request`: what it sets, its `extra`
    options as they came, then `extra` (the backend's own, e.g. `extra_body`) over all.
    `logprobs`: ask for them even when the request does not (for confidence scores)."""
    body: dict[str, Any] = {"model": model, "messages": [m.to_dict() for m in request.messages]}
    for key, value in request.extra.items():
        if key not in OWN_KEYS:
            body[key] = value
    for f in REQUEST_FIELDS:
        value = f.encode(getattr(request, f.attr))
        if value is not None:
            body[f.key] = value
    if logprobs and not body.get("logprobs"):
        body["logprobs"] = True
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra or {})
    return body


def request_options(body: Mapping[str, Any], *, keep_extra: bool = False) -> dict[str, Any]:
    """`ChatRequest` keyword arguments from a request body: the options it sets (not None);
    with `keep_extra`, the keys without a home of their own as `extra`."""
    out: dict[str, Any] = {}
    for f in REQUEST_FIELDS:
        value = next((body[k] for k in (*f.also, f.key) if body.get(k) is not None), None)
        if value is not None:
            out[f.attr] = f.decode(value)
    if keep_extra:
        extra = {k: v for k, v in body.items() if k not in OWN_KEYS}
        if extra:
            out["extra"] = extra
    return out


def wants_usage(body: Mapping[str, Any]) -> bool:
    """Did a streamed request ask for the separate usage chunk (`stream_options`)?"""
    return bool((body.get("stream_options") or {}).get("include_usage"))


# --- answers ----------------------------------------------------------------------------------


def finish_reason(value: str | None) -> str:
    return value if value in FINISH_REASONS else "stop"


# Usage fields of OpenAI's token details: (details block, key) -> duetto.usage.Usage field.
USAGE_DETAILS: dict[tuple[str, str], str] = {
    ("prompt_tokens_details", "cached_tokens"): "cached_tokens",
    ("prompt_tokens_details", "audio_tokens"): "audio_tokens_in",
    ("completion_tokens_details", "reasoning_tokens"): "reasoning_tokens",
    ("completion_tokens_details", "audio_tokens"): "audio_tokens_out",
    ("completion_tokens_details", "accepted_prediction_tokens"): "accepted_prediction_tokens",
    ("completion_tokens_details", "rejected_prediction_tokens"): "rejected_prediction_tokens",
}


def usage_block(
    tokens_in: int, tokens_out: int, details: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """OpenAI's `usage`; with `details` (Usage field -> tokens, e.g. `usage_details(usage)`)
    also its `prompt_tokens_details` and `completion_tokens_details`, as OpenAI sends them."""
    out: dict[str, Any] = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    if details is not None:
        for (block, key), attr in USAGE_DETAILS.items():
            out.setdefault(block, {})[key] = int(details.get(attr, 0))
    return out


def usage_details(usage: Any) -> dict[str, int]:
    """The token details of a `Usage` or of an OpenAI `usage` block, by Usage field name
    (only those present in a block)."""
    if isinstance(usage, Mapping):
        out: dict[str, int] = {}
        for (block, key), attr in USAGE_DETAILS.items():
            value = (usage.get(block) or {}).get(key)
            if isinstance(value, int):
                out[attr] = value
        return out
    return {attr: getattr(usage, attr, 0) for attr in USAGE_DETAILS.values()}


def logprob_entry(
    token: str, logprob: float, top: Sequence[tuple[str, float]] = ()
) -> dict[str, Any]:
    """One entry of OpenAI's `logprobs.content`; `top` the most likely alternatives."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
    }


def logprobs_block(
    tokens: Sequence[str],
    logprobs: Sequence[float],
    top: Sequence[Sequence[tuple[str, float]]] | None = None,
) -> dict[str, Any]:
    """An OpenAI `logprobs` block: one entry per token (`top`: alternatives per token)."""
    tops = top if top is not None else [()] * len(tokens)
    return {
        "content": [
            logprob_entry(t, lp, alt) for t, lp, alt in zip(tokens, logprobs, tops, strict=True)
        ],
        "refusal": None,
    }


def logprobs_of(block: Any) -> list[float] | None:
    """Per-token log-probabilities from an OpenAI `logprobs` block, or None."""
    entries = logprob_entries(block)
    out = [float(t["logprob"]) for t in entries or () if "logprob" in t]
    return out or None


def logprob_entries(block: Any) -> list[dict[str, Any]] | None:
    """The `content` entries of an OpenAI `logprobs` block (token, logprob, top_logprobs)."""
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None
    return [t for t in block["content"] if isinstance(t, dict)] or None


def tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """The tool calls of an answer's message (a legacy `function_call` becomes one)."""
    if not isinstance(message, dict):
        return ()
    calls = message.get("tool_calls") or []
    out = [ToolCall.from_dict(c) for c in calls if isinstance(c, dict)]
    legacy = message.get("function_call")
    if not out and isinstance(legacy, dict) and legacy.get("name"):
        out.append(ToolCall.from_dict({"id": "call_0", "function": legacy}))
    return tuple(out)


def choice_of(choice: Mapping[str, Any]) -> Choice:
    """A `Choice` from one entry of a completion's `choices`. Raises on a malformed one."""
    message = choice["message"]
    entries = logprob_entries(choice.get("logprobs"))
    return Choice(
        text=message.get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        tool_calls=tool_calls_of(message),
        logprobs=logprobs_of(choice.get("logprobs")),
        token_logprobs=entries,
    )


def choice_block(index: int, choice: Choice, *, with_logprobs: bool = False) -> dict[str, Any]:
    """One entry of a completion's `choices` (its logprobs only when asked for)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text if (choice.text or not choice.tool_calls) else None,
        "refusal": None,
    }
    if choice.tool_calls:
        message["tool_calls"] = [c.to_dict() for c in choice.tool_calls]
    lp = None
    if with_logprobs:
        lp = {"content": list(choice.token_logprobs or ()), "refusal": None}
    finish = "tool_calls" if choice.tool_calls and choice.finish_reason == "stop" else None
    return {
        "index": index,
        "message": message,
        "logprobs": lp,
        "finish_reason": finish or finish_reason(choice.finish_reason),
    }


def completion(
    cid: str,
    model: str,
    text: str,
    finish: str | None,
    usage: dict[str, Any] | None,
    *,
    created: int | None = None,
    logprobs: dict[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    tool_calls: Sequence[ToolCall] = (),
    more: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A `chat.completion` object; `extra` adds top-level fields (clients ignore unknown ones).
    `more`: the other choices of an n > 1 answer (`choice_block`s, index 1 on)."""
    first = choice_block(0, Choice(text, finish or "stop", tuple(tool_calls)))
    first["logprobs"] = logprobs
    return completion_of(cid, model, [first, *more], usage, created=created, extra=extra)


def completion_of(
    cid: str,
    model: str,
    choices: Sequence[dict[str, Any]],
    usage: dict[str, Any] | None,
    *,
    created: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `chat.completion` object from rendered `choice_block`s."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": list(choices),
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
    def _choice(
        delta: dict[str, Any], finish: str | None = None, lp: Any = None, index: int = 0
    ) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}

    def role(self, index: int = 0) -> bytes:
        return self.chunk([self._choice({"role": "assistant", "content": ""}, index=index)])

    def delta(self, text: str, logprobs: dict[str, Any] | None = None, index: int = 0) -> bytes:
        return self.chunk([self._choice({"content": text}, None, logprobs, index)])

    def tool_calls(self, calls: Sequence[ToolCallDelta], index: int = 0) -> bytes:
        """A chunk with pieces of tool calls (the first piece of each carries id and name)."""
        return self.chunk(
            [self._choice({"tool_calls": [c.to_dict() for c in calls]}, None, None, index)]
        )

    def whole_tool_calls(self, calls: Sequence[ToolCall], index: int = 0) -> bytes:
        """Complete tool calls as OpenAI streams them: id and name, then the arguments."""
        out = b""
        for i, call in enumerate(calls):
            out += self.tool_calls([ToolCallDelta(i, call.id, call.name, "")], index)
            if call.arguments:
                out += self.tool_calls([ToolCallDelta(i, arguments=call.arguments)], index)
        return out

    def choice_finish(self, index: int, reason: str | None) -> bytes:
        return self.chunk([self._choice({}, finish_reason(reason), None, index)])

    def finish(
        self,
        reason: str | None,
        usage: dict[str, Any] | None = None,
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
class ChoiceState:
    """What a stream has delivered for one choice."""

    parts: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    finish: str | None = None
    calls: dict[int, list[Any]] = field(default_factory=dict)  # index -> [id, name, [args]]

    def take_calls(self, pieces: Any) -> tuple[ToolCallDelta, ...]:
        out: list[ToolCallDelta] = []
        for piece in pieces if isinstance(pieces, list) else ():
            if not isinstance(piece, dict):
                continue
            i = int(piece.get("index", len(self.calls)))
            fn = piece.get("function") or {}
            call = self.calls.setdefault(i, ["", None, []])
            if piece.get("id"):
                call[0] = str(piece["id"])
            if fn.get("name"):
                call[1] = str(fn["name"])
            raw = fn.get("arguments")
            args = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, dict) else ""
            call[2].append(args)
            out.append(ToolCallDelta(i, piece.get("id"), fn.get("name"), args))
        return tuple(out)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(cid or f"call_{i}", name or "", "".join(args) or "{}")
            for i, (cid, name, args) in sorted(self.calls.items())
        )

    def choice(self) -> Choice:
        return Choice(
            "".join(self.parts),
            self.finish or "stop",
            self.tool_calls(),
            self.logprobs or None,
            self.entries or None,
        )


@dataclass(slots=True)
class StreamState:
    """What one streamed answer has delivered so far: `feed` it each SSE line. `parts`,
    `logprobs`, `finish` are the first choice's; `others` the rest of an n > 1 stream; after
    each `feed`, `last_tool_calls` / `last_logprobs` are what that event added to the first
    choice."""

    first: ChoiceState = field(default_factory=ChoiceState)
    others: dict[int, ChoiceState] = field(default_factory=dict)
    usage: Any = None
    done: bool = False
    error: str | None = None
    ttft_ms: float | None = None
    last_tool_calls: tuple[ToolCallDelta, ...] = ()
    last_logprobs: list[dict[str, Any]] | None = None

    @property
    def parts(self) -> list[str]:
        return self.first.parts

    @property
    def logprobs(self) -> list[float]:
        return self.first.logprobs

    @property
    def finish(self) -> str | None:
        return self.first.finish

    def choices(self) -> list[Choice]:
        """The choices after the first, in index order."""
        return [self.others[i].choice() for i in sorted(self.others)]

    def feed(self, line: str) -> str:
        """Take one SSE line; return the text delta it carried for the first choice."""
        self.last_tool_calls, self.last_logprobs = (), None
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
        text = ""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            state = self.first if index == 0 else self.others.setdefault(index, ChoiceState())
            delta = choice.get("delta") or {}
            piece = delta.get("content") or ""
            if piece:
                state.parts.append(piece)
            calls = state.take_calls(delta.get("tool_calls"))
            if choice.get("finish_reason"):
                state.finish = choice["finish_reason"]
            entries = logprob_entries(choice.get("logprobs"))
            if entries:
                state.entries.extend(entries)
                state.logprobs.extend(float(e["logprob"]) for e in entries if "logprob" in e)
            if index == 0:
                text, self.last_tool_calls, self.last_logprobs = piece, calls, entries
        return text


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
