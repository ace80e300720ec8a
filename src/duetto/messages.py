"""Plain data exchanged between models: the OpenAI chat schema, kept small."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from duetto.trace import Step
    from duetto.usage import Usage

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request. `task` and `metadata` never leave the process."""

    messages: tuple[Message, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = 0
    task: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # OpenAI's `response_format`: {"type": "text" | "json_object"} or {"type": "json_schema",
    # "json_schema": {"name", "schema", "strict"}}. Local models enforce it with a grammar.
    response_format: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @classmethod
    def of(cls, prompt: str, system: str | None = None, **kw: Any) -> ChatRequest:
        msgs: list[Message] = []
        if system:
            msgs.append(Message("system", system))
        msgs.append(Message("user", prompt))
        return cls(messages=tuple(msgs), **kw)

    @classmethod
    def from_dicts(cls, messages: list[dict[str, Any]], **kw: Any) -> ChatRequest:
        return cls(
            messages=tuple(Message(m["role"], str(m.get("content") or "")) for m in messages), **kw
        )

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    @property
    def text(self) -> str:
        """The whole conversation as plain text (for routers, PII detection)."""
        return "\n".join(m.content for m in self.messages)

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
        payload = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(slots=True)
class ChatResponse:
    """A model's answer with its usage and trace. `logprobs` are per generated token."""

    text: str
    model: str
    usage: Usage
    trace: Step
    finish_reason: str = "stop"
    logprobs: list[float] | None = None
    score: float | None = None  # a verifier/confidence score where the producer computed one

    @property
    def confidence(self) -> float | None:
        """exp(mean token log-probability): a length-normalised sequence probability."""
        if not self.logprobs:
            return None
        import math

        return math.exp(sum(self.logprobs) / len(self.logprobs))


@dataclass(slots=True)
class StreamChunk:
    """A piece of a streamed answer; the last one carries the complete response."""

    delta: str
    response: ChatResponse | None = None


def add_system_note(request: ChatRequest, note: str) -> ChatRequest:
    """Add `note` to the first system message (created if absent): chat templates expect at
    most one system message, first."""
    msgs = list(request.messages)
    if msgs and msgs[0].role == "system":
        msgs[0] = Message("system", f"{msgs[0].content}\n\n{note}" if msgs[0].content else note)
    else:
        msgs.insert(0, Message("system", note))
    return request.with_messages(msgs)
