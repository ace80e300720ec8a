"""The OpenAI wire format: the request schema (also the OpenAPI document) and the response,
chunk and error shapes. Pure functions over plain data."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from duetto.messages import ChatRequest, ChatResponse, Message

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "function_call")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Unknown fields are accepted and ignored, as OpenAI
    clients send many; fields duetto cannot honour (n > 1, tools) are refused."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=4096)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=1, description="only 1 is supported")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(None, max_length=512)
    logprobs: bool | None = None
    tools: list[Any] | None = Field(None, max_length=0, description="not supported")
    functions: list[Any] | None = Field(None, max_length=0, description="not supported")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _text(content: str | list[TextPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content)


def to_chat_request(body: ChatCompletionRequest, default_max_tokens: int) -> ChatRequest:
    """The whole conversation goes to the strategy (routers read all of it, not the last turn)."""
    messages = tuple(
        Message("system" if m.role == "developer" else m.role, _text(m.content))
        for m in body.messages
    )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    kw: dict[str, Any] = {
        "max_tokens": body.max_completion_tokens or body.max_tokens or default_max_tokens,
        "stop": stop,
    }
    if body.temperature is not None:
        kw["temperature"] = body.temperature
    if body.seed is not None:
        kw["seed"] = body.seed
    return ChatRequest(messages=messages, **kw)


def completion_id(trace_id: str) -> str:
    return "chatcmpl-" + trace_id.removeprefix("dt-")


def finish_reason(value: str | None) -> str:
    return value if value in FINISH_REASONS else "stop"


def usage_block(response: ChatResponse) -> dict[str, int]:
    u = response.usage
    return {
        "prompt_tokens": u.tokens_in,
        "completion_tokens": u.tokens_out,
        "total_tokens": u.tokens_in + u.tokens_out,
    }


def duetto_block(
    trace_id: str, response: ChatResponse, answered_by: str, fallback: bool
) -> dict[str, Any]:
    """duetto's own fields (clients ignore unknown fields): what answered and what it cost."""
    u = response.usage
    return {
        "trace_id": trace_id,
        "answered_by": answered_by,
        "fallback": fallback,
        "cost_usd": u.cost_usd,
        "llm_calls": u.remote_calls,
    }


def completion(
    trace_id: str,
    model: str,
    response: ChatResponse,
    extra: dict[str, Any],
    created: int | None = None,
) -> dict[str, Any]:
    return {
        "id": completion_id(trace_id),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(response.finish_reason),
            }
        ],
        "usage": usage_block(response),
        "system_fingerprint": None,
        "duetto": extra,
    }


class ChunkWriter:
    """Server-sent events of one streamed completion, as OpenAI sends them."""

    def __init__(self, trace_id: str, model: str, include_usage: bool) -> None:
        self.id = completion_id(trace_id)
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict[str, Any]], **more: Any) -> bytes:
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
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def role(self) -> bytes:
        return self._chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )

    def delta(self, text: str) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]
        )

    def finish(self, response: ChatResponse, extra: dict[str, Any]) -> bytes:
        """The finish chunk, then the usage: OpenAI's separate usage chunk when the client asked
        for it, else the usage rides on the finish chunk (clients ignore unknown fields)."""
        choice = [
            {
                "index": 0,
                "delta": {},
                "logprobs": None,
                "finish_reason": finish_reason(response.finish_reason),
            }
        ]
        if not self.include_usage:
            return self._chunk(choice, usage=usage_block(response), duetto=extra)
        return self._chunk(choice) + self._chunk([], usage=usage_block(response), duetto=extra)

    @staticmethod
    def error(message: str, kind: str = "server_error", code: str | None = None) -> bytes:
        return b"data: " + json.dumps(error_body(message, kind, code)).encode() + b"\n\n"

    DONE = b"data: [DONE]\n\n"
