"""The gateway's side of the OpenAI wire format: the request schema (also the OpenAPI document),
its mapping to a `ChatRequest`, and answers rendered with duetto's own fields. The shapes
themselves live in `duetto.openai_wire` (shared with the client backend and the fake server)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from duetto import openai_wire as wire
from duetto.messages import ChatRequest, ChatResponse, Message
from duetto.openai_wire import error_body

__all__ = [
    "ChatCompletionRequest",
    "ChunkWriter",
    "ErrorBody",
    "completion",
    "duetto_block",
    "error_body",
    "to_chat_request",
]


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


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: local models enforce JSON with a decoding grammar, remote
    ones receive it as sent."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a `json_schema` object")
        return self


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
    response_format: ResponseFormat | None = None
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
    kw = {
        "max_tokens": default_max_tokens,
        **wire.request_options(body.model_dump(by_alias=True, exclude_none=True)),
    }
    return ChatRequest(messages=messages, **kw)


def completion_id(trace_id: str) -> str:
    return "chatcmpl-" + trace_id.removeprefix("dt-")


def usage_block(response: ChatResponse) -> dict[str, int]:
    return wire.usage_block(response.usage.tokens_in, response.usage.tokens_out)


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
    return wire.completion(
        completion_id(trace_id),
        model,
        response.text,
        response.finish_reason,
        usage_block(response),
        created=created,
        extra={"duetto": extra},
    )


class ChunkWriter(wire.Chunks):
    """Server-sent events of one streamed completion, as OpenAI sends them."""

    def __init__(self, trace_id: str, model: str, include_usage: bool) -> None:
        super().__init__(completion_id(trace_id), model, include_usage)

    def finish(  # type: ignore[override]
        self, response: ChatResponse, extra: dict[str, Any]
    ) -> bytes:
        """The finish chunk and the usage with duetto's fields (see `Chunks.finish`)."""
        return super().finish(response.finish_reason, usage_block(response), {"duetto": extra})
