"""The gateway's side of the OpenAI wire format: the request schema (also the OpenAPI document),
its mapping to a `ChatRequest`, and answers rendered with duetto's own fields. The shapes
themselves live in `duetto.openai_wire` (shared with the client backend and the fake server)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from duetto import openai_wire as wire
from duetto.messages import ChatRequest, ChatResponse, Choice, Message
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


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class RefusalPart(_Open):
    type: Literal["refusal"]
    refusal: str


class ImageUrl(_Open):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Open):
    data: str
    format: str = Field(min_length=1, max_length=16)


class AudioPart(_Open):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Open):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _something(self) -> FileRef:
        if self.file_id is None and self.file_data is None:
            raise ValueError("a file part needs `file_id` or `file_data`")
        return self


class FilePart(_Open):
    type: Literal["file"]
    file: FileRef


ContentPartIn = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]


class FunctionCallIn(_Open):
    name: str = Field(min_length=1, max_length=256)
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Open):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPartIn] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _roles(self) -> ChatMessageIn:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs `tool_call_id`")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry `tool_calls`")
        return self


class FunctionDef(_Open):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(_Open):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Open):
    include_usage: bool = False


class JsonSchemaFormat(_Open):
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


class ChatCompletionRequest(_Open):
    """OpenAI's chat completion request. Fields duetto does not use (reasoning_effort,
    service_tier, top_p, ... any unknown key) are kept and forwarded to the model that
    answers; malformed ones are refused with a 400."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=4096)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    user: str | None = Field(None, max_length=512)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs `logprobs: true`")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("tool_choice is only allowed when tools are given")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names {self.tool_choice.function.name!r}, not one of the tools"
                )
        return self


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def to_chat_request(
    body: ChatCompletionRequest, default_max_tokens: int | None = None
) -> ChatRequest:
    """The whole conversation goes to the strategy (routers read all of it, not the last turn).
    What the client did not set stays unset (None: the answering model's own default);
    `default_max_tokens`, if given, is used when the client set no limit."""
    data = body.model_dump(by_alias=True, exclude_none=True)
    messages = tuple(Message.from_dict(m) for m in data["messages"])
    kw: dict[str, Any] = {"max_tokens": default_max_tokens, "temperature": None, "seed": None}
    kw.update(wire.request_options(data, keep_extra=True))
    return ChatRequest(messages=messages, **kw)


def completion_id(trace_id: str) -> str:
    return "chatcmpl-" + trace_id.removeprefix("dt-")


def usage_block(response: ChatResponse) -> dict[str, Any]:
    u = response.usage
    return wire.usage_block(u.tokens_in, u.tokens_out, wire.usage_details(u))


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
    *,
    logprobs: bool = False,
) -> dict[str, Any]:
    """The `chat.completion` for `response`: every choice, tool calls, logprobs if asked for."""
    choices = [
        wire.choice_block(i, c, with_logprobs=logprobs) for i, c in enumerate(response.choices)
    ]
    return wire.completion_of(
        completion_id(trace_id),
        model,
        choices,
        usage_block(response),
        created=created,
        extra={"duetto": extra},
    )


class ChunkWriter(wire.Chunks):
    """Server-sent events of one streamed completion, as OpenAI sends them. Text deltas are
    written as they come; what the gateway's stream carries only in the final response (tool
    calls, the logprobs when asked for, the other choices of n > 1) is written before the
    finish chunk, in OpenAI's streamed shape."""

    def __init__(
        self, trace_id: str, model: str, include_usage: bool, *, logprobs: bool = False
    ) -> None:
        super().__init__(completion_id(trace_id), model, include_usage)
        self.logprobs = logprobs

    def finish(  # type: ignore[override]
        self, response: ChatResponse, extra: dict[str, Any]
    ) -> bytes:
        """The rest of the answer, the finish chunk and the usage with duetto's fields (see
        `Chunks.finish`)."""
        out = self._tail(0, response.choices[0])
        for i, choice in enumerate(response.extra_choices, 1):
            out += self.role(i)
            if choice.text:
                out += self.delta(choice.text, None, i)
            out += self._tail(i, choice) + self.choice_finish(i, _reason(choice))
        reason = _reason(response.choices[0])
        return out + super().finish(reason, usage_block(response), {"duetto": extra})

    def _tail(self, index: int, choice: Choice) -> bytes:
        out = self.whole_tool_calls(choice.tool_calls, index) if choice.tool_calls else b""
        if self.logprobs and choice.token_logprobs:
            out += self.delta("", {"content": choice.token_logprobs, "refusal": None}, index)
        return out


def _reason(choice: Choice) -> str:
    return (
        "tool_calls"
        if choice.tool_calls and choice.finish_reason == "stop"
        else choice.finish_reason
    )
