"""Pipeline: models run in sequence, each a stage with a role; each stage's output feeds the next.

How a stage's output reaches the next stage is set by that stage's `pass_as`:

    "context"  the next stage gets the conversation so far plus a system message
               "Notes from <role>:\\n<output>" (e.g. an SLM extracts facts, the LLM answers).
    "draft"    the next stage gets the conversation plus a system message
               "Draft answer from <role>:\\n<output>\\n\\nCheck the draft against the
               conversation, fix it if it is wrong, and reply with the final answer only."
               (e.g. the LLM drafts, the SLM formats or validates).
    "replace"  the output becomes the new user prompt: the next stage gets the leading system
               messages of the conversation and one user message holding the output
               (e.g. an SLM rewrites the question).

A stage's own `instruction` is added as a system message to that stage's request only. System
notes are merged into the first system message (chat templates expect at most one, first).

A stage may `validate` its output: a callable `text -> bool`, a regex string (searched in the
output) or a JSON-schema dict (a small subset: type, properties, required, enum, items,
additionalProperties). On failure the stage's output is dropped, the previous stage's answer is
kept (and passed on) and the stage's trace node is marked `decision="invalid"`.

The answer is the last valid stage's output. When the last stage has no validator, `stream`
streams its output.

Capabilities and tools (duetto.capabilities): only the last stage shapes the answer. It alone
gets the request's tools, tool_choice, response_format and logprobs; the stages before it get
the conversation without them (their output is a note for the next stage, not the answer).
So every stage must be able to read the request (images, audio, a long enough context) and
the last one must also have what the answer needs (tools, JSON schema, log-probs); otherwise
the request is refused before any call: MissingCapability, a 400 naming the stage. A tool
call of the last stage is the answer (its validator checks text answers only).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from duetto.capabilities import combine
from duetto.errors import ConfigError
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk, add_system_note
from duetto.models.base import ChatModel
from duetto.strategies._compose import distinct, relay, trace_node
from duetto.strategies.base import Strategy
from duetto.strategies.capable import describe, intermediate

PassAs = Literal["context", "draft", "replace"]
Validator = Callable[[str], bool]

DRAFT_CHECK = (
    "Check the draft against the conversation, fix it if it is wrong, "
    "and reply with the final answer only."
)


# --- message forms ------------------------------------------------------------------------


def replace_prompt(request: ChatRequest, prompt: str) -> ChatRequest:
    """Keep the leading system messages; the conversation becomes one user message."""
    head: list[Message] = []
    for m in request.messages:
        if m.role != "system":
            break
        head.append(m)
    return request.with_messages([*head, Message("user", prompt)])


def pass_on(request: ChatRequest, output: str, role: str, pass_as: PassAs) -> ChatRequest:
    """The request the next stage starts from, given this stage's output."""
    if pass_as == "context":
        return add_system_note(request, f"Notes from {role}:\n{output}")
    if pass_as == "draft":
        return add_system_note(request, f"Draft answer from {role}:\n{output}\n\n{DRAFT_CHECK}")
    return replace_prompt(request, output)


# --- validators ------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_ok(value: Any, schema: dict[str, Any]) -> bool:
    """Whether `value` matches `schema` (the subset in the module docstring)."""
    t = schema.get("type")
    if t is not None:
        names = [t] if isinstance(t, str) else list(t)
        if not any(isinstance(value, _JSON_TYPES[n]) for n in names if n in _JSON_TYPES):
            return False
        if isinstance(value, bool) and not {"boolean"} & set(names):
            return False  # bool is an int in Python, not in JSON
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        if any(k not in value for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        if not all(schema_ok(value[k], s) for k, s in props.items() if k in value):
            return False
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(schema_ok(v, schema["items"]) for v in value)
    return True


def _strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    return m.group(1) if m else text


def json_validator(schema: dict[str, Any] | None = None) -> Validator:
    """Valid when the output (optionally inside a ``` fence) parses as JSON matching `schema`."""

    def check(text: str) -> bool:
        try:
            value = json.loads(_strip_fences(text).strip())
        except ValueError:
            return False
        return schema is None or schema_ok(value, schema)

    return check


def regex_validator(pattern: str) -> Validator:
    rx = re.compile(pattern, re.S)
    return lambda text: rx.search(text) is not None


def as_validator(spec: Validator | str | dict[str, Any] | None) -> Validator | None:
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str):
        return regex_validator(spec)
    if isinstance(spec, dict):
        return json_validator(spec)
    raise ConfigError("expected a regex string or a JSON schema mapping", "validate")


# --- the strategy -----------------------------------------------------------------------------


@dataclass
class Stage:
    model: ChatModel
    role: str
    instruction: str = ""
    pass_as: PassAs = "context"
    validate: Validator | str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.pass_as not in ("context", "draft", "replace"):
            raise ConfigError("expected context, draft or replace", "pass_as")
        self.check = as_validator(self.validate)

    def request(self, current: ChatRequest) -> ChatRequest:
        return add_system_note(current, self.instruction) if self.instruction else current


class Pipeline(Strategy):
    mode = "pipeline"

    def __init__(self, name: str, stages: Sequence[Stage]) -> None:
        if not stages:
            raise ConfigError("a pipeline needs at least one stage", "stages")
        super().__init__(name, distinct([s.model for s in stages]))
        self.stages = list(stages)

    async def _run_stages(
        self, request: ChatRequest, stages: Sequence[Stage]
    ) -> tuple[ChatRequest, str | None, list[ChatResponse], int]:
        """Run `stages`; return the next request, the current answer, the stage nodes and the
        number of invalid outputs."""
        current, answer = request, None
        nodes: list[ChatResponse] = []
        invalid = 0
        last = len(self.stages) - 1
        for i, stage in enumerate(stages):
            t0 = time.perf_counter()
            # Only the last stage shapes the answer (tools, response_format, logprobs).
            asked = current if i == last else intermediate(current)
            out = await stage.model.complete(stage.request(asked))
            # A validator checks text answers; tool calls are the answer as they are.
            ok = stage.check is None or bool(getattr(out, "tool_calls", None))
            ok = ok or (stage.check is not None and stage.check(out.text))
            decision = "valid" if stage.check is not None and ok else None
            note = None
            if not ok:
                invalid += 1
                decision = "invalid"
                note = (
                    "validation failed: previous answer kept"
                    if answer is not None
                    else ("validation failed: no previous answer, output kept")
                )
            kept = out.text if ok or answer is None else answer
            nodes.append(self._node(i, stage, [out], kept, decision, note, t0))
            answer = kept
            current = pass_on(current, kept, stage.role, stage.pass_as)
        return current, answer, nodes, invalid

    def _node(
        self,
        i: int,
        stage: Stage,
        children: list[ChatResponse],
        text: str,
        decision: str | None,
        note: str | None,
        t0: float,
    ) -> ChatResponse:
        return trace_node(
            f"{self.name}.stage{i}",
            self.mode,
            children,
            text=text,
            role=stage.role,
            decision=decision,
            note=note,
            extra={"pass_as": stage.pass_as},
            t0=t0,
        )

    def lacks(self, request: ChatRequest) -> list[str]:
        """Every stage must read the request (images, audio, context); the last one must also
        shape the answer (tools, JSON schema, log-probs)."""
        out: list[str] = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            asked = request if i == last else intermediate(request)
            if missing := stage.model.lacks(asked):
                out.append(f"stage {i} ({stage.role}) {describe(stage.model, missing)}")
        return out

    def capabilities(self) -> dict[str, Any]:
        """What every stage reads (the intersection), and what the last stage answers with."""
        caps = combine([s.model.capabilities() for s in self.stages], "intersection")
        final = self.stages[-1].model.capabilities()
        for key in ("tools", "json_schema", "logprobs", "max_output_tokens"):
            caps[key] = final[key]
        return caps

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        self.require(request)
        _, answer, nodes, invalid = await self._run_stages(request, self.stages)
        return self.respond(
            answer or "",
            t0,
            nodes,
            decision="fallback" if invalid else "completed",
            extra={"stages": len(self.stages), "invalid": invalid},
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        last = self.stages[-1]
        if last.check is not None:  # must see the whole output before it can be shown
            async for chunk in super().stream(request):
                yield chunk
            return
        t0 = time.perf_counter()
        self.require(request)
        current, _, nodes, invalid = await self._run_stages(request, self.stages[:-1])
        t_last = time.perf_counter()

        def finish(out: ChatResponse) -> ChatResponse:
            i = len(self.stages) - 1
            nodes.append(self._node(i, last, [out], out.text, None, None, t_last))
            return self.respond(
                out.text,
                t0,
                nodes,
                decision="fallback" if invalid else "completed",
                extra={"stages": len(self.stages), "invalid": invalid},
            )

        async for chunk in relay(last.model.stream(last.request(current)), t0, finish, t_last):
            yield chunk
