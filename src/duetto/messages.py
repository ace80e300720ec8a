"""Plain data exchanged between models: the OpenAI chat schema, kept small."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from duetto.trace import Step
    from duetto.usage import Usage

Role = Literal["system", "user", "assistant", "tool"]

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name; chat templates know "system"
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",  # the legacy function-result message
}

# Content part types OpenAI defines for chat messages; other types are refused at the edge.
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a multi-part message: `text` for text (and refusal) parts, `data` the
    payload under the key named by `type` for the others (image_url: {"url", "detail"},
    input_audio: {"data", "format"}, file: {"file_id" | "file_data", "filename"})."""

    type: str
    text: str = ""
    data: Any = field(default=None, hash=False)

    @classmethod
    def of_text(cls, text: str) -> ContentPart:
        return cls("text", text)

    @classmethod
    def image(cls, url: str, detail: str | None = None) -> ContentPart:
        return cls("image_url", data={"url": url, **({"detail": detail} if detail else {})})

    def to_dict(self) -> dict[str, Any]:
        if self.type in ("text", "refusal"):
            return {"type": self.type, self.type: self.text}
        return {"type": self.type, self.type: self.data}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContentPart:
        kind = d.get("type")
        if kind not in PART_TYPES:
            raise ValueError(f"content part type {kind!r}: expected one of {', '.join(PART_TYPES)}")
        if kind in ("text", "refusal"):
            value = d.get(kind)
            if not isinstance(value, str):
                raise ValueError(f"a {kind} part needs a string `{kind}`")
            return cls(kind, value)
        payload = d.get(kind)
        if not isinstance(payload, dict):
            raise ValueError(f"a {kind} part needs an object `{kind}`")
        return cls(kind, data=dict(payload))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """An assistant's call of a function tool; `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = "{}"
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        fn = d.get("function")
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise ValueError("a tool call needs `function.name`")
        args = fn.get("arguments")
        if args is None:
            args = "{}"
        elif not isinstance(args, str):  # some servers send an object: keep OpenAI's text form
            args = json.dumps(args)
        return cls(str(d.get("id") or ""), fn["name"], args, str(d.get("type") or "function"))


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: OpenAI sends the id and name once, then arguments in
    pieces, all under the call's `index`."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_dict(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            fn = {"name": self.name, **fn}
        out: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            out.update(id=self.id, type="function")
        out["function"] = fn
        return out


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. `content` is a string or a tuple of `ContentPart`s; `text` is its
    text view (what routers, PII detection and prompts read). An assistant message may carry
    `tool_calls`; a `tool` message answers the call named by `tool_call_id`."""

    role: Role
    content: str | tuple[ContentPart, ...] = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.content is None:
            object.__setattr__(self, "content", "")
        elif isinstance(self.content, list):
            object.__setattr__(self, "content", tuple(self.content))
        if isinstance(self.tool_calls, list):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))

    @property
    def text(self) -> str:
        """The text of the message: its string content, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text")

    @property
    def parts(self) -> tuple[ContentPart, ...]:
        if isinstance(self.content, str):
            return (ContentPart.of_text(self.content),) if self.content else ()
        return self.content

    @property
    def part_types(self) -> frozenset[str]:
        """The kinds of content the message holds ("text", "image_url", ...)."""
        return frozenset(p.type for p in self.parts)

    def with_text(self, text: str) -> Message:
        """This message with its text replaced (redaction, restoring): a string stays a string;
        parts keep their non-text parts, the text parts become one, where the first was."""
        if isinstance(self.content, str):
            return replace(self, content=text)
        out: list[ContentPart] = []
        for p in self.content:
            if p.type != "text":
                out.append(p)
            elif not any(q.type == "text" for q in out):
                out.append(ContentPart.of_text(text))
        return replace(self, content=tuple(out))

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's shape; only what is set (a plain message is {"role", "content"})."""
        content: Any = (
            self.content if isinstance(self.content, str) else [p.to_dict() for p in self.content]
        )
        if self.tool_calls and content == "":
            content = None  # OpenAI's form of an assistant turn that only calls tools
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        """A message from OpenAI's shape (`developer` is read as `system`, a legacy `function`
        message as a `tool` one). Raises ValueError on a malformed message."""
        given = d.get("role")
        role = _ROLES.get(given) if isinstance(given, str) else None
        if role is None:
            raise ValueError(f"message role {given!r} is not supported")
        raw = d.get("content")
        content: str | tuple[ContentPart, ...]
        if raw is None:
            content = ""
        elif isinstance(raw, str):
            content = raw
        elif isinstance(raw, list):
            content = tuple(ContentPart.from_dict(p) for p in raw)
        else:
            raise ValueError("message content must be a string, a list of parts or null")
        calls = d.get("tool_calls") or ()
        if not isinstance(calls, list | tuple):
            raise ValueError("tool_calls must be a list")
        name = d.get("name")
        tool_call_id = d.get("tool_call_id")
        if role == "tool" and tool_call_id is None and name is None:
            raise ValueError("a tool message needs `tool_call_id`")
        return cls(
            role,
            content,
            name=str(name) if name is not None else None,
            tool_calls=tuple(ToolCall.from_dict(c) for c in calls),
            tool_call_id=str(tool_call_id) if tool_call_id is not None else None,
        )


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str((t.get("function") or {}).get("name")) for t in tools]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request. `task` and `metadata` never leave the process.

    None means "not set": the answering model's own default applies (the gateway leaves
    unset what the client did not set; internal callers get deterministic defaults).
    OpenAI's request `metadata` travels as `client_metadata` (the `metadata` attribute is
    duetto's own: api key, item id). Options duetto does not use are kept in `extra` and sent
    as they came to the model that answers."""

    messages: tuple[Message, ...]
    max_tokens: int | None = 256
    temperature: float | None = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    task: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # OpenAI's `response_format`: {"type": "text" | "json_object"} or {"type": "json_schema",
    # "json_schema": {"name", "schema", "strict"}}. Local models enforce it with a grammar.
    response_format: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # Function tools as OpenAI defines them: {"type": "function", "function": {"name",
    # "description", "parameters", "strict"}}.
    tools: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    tool_choice: str | dict[str, Any] | None = field(default=None, hash=False)
    parallel_tool_calls: bool | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    client_metadata: dict[str, str] | None = field(default=None, compare=False, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.messages, list):
            object.__setattr__(self, "messages", tuple(self.messages))
        if isinstance(self.tools, list):
            object.__setattr__(self, "tools", tuple(self.tools))

    @classmethod
    def of(cls, prompt: str, system: str | None = None, **kw: Any) -> ChatRequest:
        msgs: list[Message] = []
        if system:
            msgs.append(Message("system", system))
        msgs.append(Message("user", prompt))
        return cls(messages=tuple(msgs), **kw)

    @classmethod
    def from_dicts(cls, messages: list[dict[str, Any]], **kw: Any) -> ChatRequest:
        return cls(messages=tuple(Message.from_dict(m) for m in messages), **kw)

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.text
        return ""

    @property
    def text(self) -> str:
        """The whole conversation as plain text (for routers, PII detection)."""
        return "\n".join(m.text for m in self.messages)

    @property
    def choices_wanted(self) -> int:
        return self.n or 1

    @property
    def tool_names(self) -> list[str]:
        return _tool_names(self.tools)

    def forced_tool(self) -> str | None:
        """The function the request makes the model call: the one `tool_choice` names, or with
        "required" the only tool (None when there are several: the model picks one)."""
        choice = self.tool_choice
        if not self.tools or choice in (None, "auto", "none"):
            return None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            return str(name) if name else None
        names = self.tool_names
        return names[0] if choice == "required" and len(names) == 1 else None

    @property
    def needs_tool_call(self) -> bool:
        """tool_choice makes the answer a tool call ("required" or a named function)."""
        return bool(self.tools) and (
            self.tool_choice == "required" or isinstance(self.tool_choice, dict)
        )

    @property
    def part_types(self) -> frozenset[str]:
        """Every kind of content part in the conversation."""
        out: set[str] = set()
        for m in self.messages:
            if not isinstance(m.content, str):
                out |= m.part_types
        return frozenset(out)

    def with_messages(self, messages: tuple[Message, ...] | list[Message]) -> ChatRequest:
        return replace(self, messages=tuple(messages))

    def key(self) -> str:
        """A stable hash of everything that changes a model's answer."""
        parts: list[Any] = [
            [m.to_dict() for m in self.messages],
            self.max_tokens,
            self.temperature,
            list(self.stop),
            self.seed,
        ]
        if self.response_format is not None:  # appended only when set: older keys stay valid
            parts.append(self.response_format)
        more = {
            "tools": list(self.tools) or None,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "n": self.n,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "extra": self.extra or None,
        }
        more = {k: v for k, v in more.items() if v is not None}
        if more:
            parts.append(more)
        payload = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(slots=True)
class Choice:
    """One more answer to an n > 1 request (the first is the ChatResponse itself)."""

    text: str
    finish_reason: str = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: list[float] | None = None
    token_logprobs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class ChatResponse:
    """A model's answer with its usage and trace. `logprobs` are per generated token;
    `token_logprobs` the same as OpenAI's `logprobs.content` entries (token, logprob, bytes,
    top_logprobs) where the model gave them. `tool_calls`: the functions the answer calls
    (finish_reason "tool_calls"). `text` is the first choice; `extra_choices` the others of an
    n > 1 request (`choices` lists them all)."""

    text: str
    model: str
    usage: Usage
    trace: Step
    finish_reason: str = "stop"
    logprobs: list[float] | None = None
    score: float | None = None  # a verifier/confidence score where the producer computed one
    tool_calls: tuple[ToolCall, ...] = ()
    token_logprobs: list[dict[str, Any]] | None = None
    extra_choices: list[Choice] = field(default_factory=list)

    @property
    def confidence(self) -> float | None:
        """exp(mean token log-probability): a length-normalised sequence probability."""
        if not self.logprobs:
            return None
        import math

        return math.exp(sum(self.logprobs) / len(self.logprobs))

    @property
    def choices(self) -> list[Choice]:
        """Every choice, the first built from this response's own fields."""
        first = Choice(
            self.text, self.finish_reason, self.tool_calls, self.logprobs, self.token_logprobs
        )
        return [first, *self.extra_choices]

    @property
    def message(self) -> Message:
        """The answer as an assistant message (to append to a conversation)."""
        return Message("assistant", self.text, tool_calls=self.tool_calls)


@dataclass(slots=True)
class StreamChunk:
    """A piece of a streamed answer; the last one carries the complete response. `tool_calls`:
    pieces of tool calls (OpenAI's streamed shape); `logprobs`: OpenAI `logprobs.content`
    entries of the tokens in this piece, when asked for."""

    delta: str
    response: ChatResponse | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: list[dict[str, Any]] | None = None


def add_system_note(request: ChatRequest, note: str) -> ChatRequest:
    """Add `note` to the first system message (created if absent): chat templates expect at
    most one system message, first."""
    msgs = list(request.messages)
    if msgs and msgs[0].role == "system":
        first = msgs[0].text
        msgs[0] = msgs[0].with_text(f"{first}\n\n{note}" if first else note)
    else:
        msgs.insert(0, Message("system", note))
    return request.with_messages(msgs)
