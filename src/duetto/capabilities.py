"""What a request needs from the model that answers it, and whether a model card has it.

    required_capabilities(request)  the features a request needs: "tools" (it offers tools, and
                                    tool_choice is not "none"), "json_schema" (response_format
                                    json_schema or json_object), "vision" (image or file
                                    parts), "audio" (input_audio parts), "logprobs"
    context_needed(request)         estimated prompt tokens + max_tokens (answers.estimate_tokens:
                                    the 4-characters-a-token rule, plus a few tokens per message
                                    for the chat template, plus the tools' JSON)
    lacking(card, request)          what a card lacks for a request, as short reasons
                                    ("vision", "context: needs ~3100 tokens, has 2048")
    card_capabilities(card)         a card's capabilities as JSON-ready data (GET /v1/models)

Plain data: the card is anything with the capability attributes of `ModelCard`, so this layer
depends on no model. Strategies combine these per candidate (duetto.strategies.capable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from duetto.answers import estimate_tokens
from duetto.messages import ChatRequest

# The boolean capabilities of a card, in the order they are reported.
FEATURES = ("tools", "json_schema", "vision", "audio", "logprobs")
# Content part types and the capability each needs. A `file` part (a PDF) is read by OpenAI's
# vision models (the text and an image of each page), so it needs vision.
PART_NEEDS = {
    "image_url": "vision",
    "input_image": "vision",
    "file": "vision",
    "input_audio": "audio",
}
TOKENS_PER_MESSAGE = 4  # role markers and separators of a chat template


class CapabilityCard(Protocol):
    """The capability attributes of a `duetto.models.base.ModelCard`."""

    @property
    def tools(self) -> bool: ...
    @property
    def json_schema(self) -> bool: ...
    @property
    def vision(self) -> bool: ...
    @property
    def audio(self) -> bool: ...
    @property
    def logprobs(self) -> bool: ...
    @property
    def context_size(self) -> int: ...
    @property
    def max_output_tokens(self) -> int | None: ...


def _part_type(part: Any) -> str | None:
    kind = part.get("type") if isinstance(part, Mapping) else getattr(part, "type", None)
    return kind if isinstance(kind, str) else None


def content_parts(request: ChatRequest) -> Iterable[Any]:
    """Every non-text content part of every message (a plain string content has none)."""
    for m in request.messages:
        content = getattr(m, "content", "")
        if isinstance(content, str) or content is None:
            continue
        yield from content


def _json_size(value: Any) -> int:
    if not value:
        return 0
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return len(str(value))


def required_capabilities(request: ChatRequest) -> set[str]:
    """The features `request` needs (see the module docstring); context is `context_needed`."""
    needs: set[str] = set()
    # Offered tools need a model that can call them (unless tool_choice is "none"); a history
    # of tool calls and results alone does not: any model can read it as text.
    if getattr(request, "tools", None) and getattr(request, "tool_choice", None) != "none":
        needs.add("tools")
    fmt = request.response_format or {}
    if fmt.get("type") in ("json_schema", "json_object"):
        needs.add("json_schema")
    for part in content_parts(request):
        kind = _part_type(part)
        if kind in PART_NEEDS:
            needs.add(PART_NEEDS[kind])
    if getattr(request, "logprobs", None) or getattr(request, "top_logprobs", None):
        needs.add("logprobs")
    return needs


def prompt_tokens(request: ChatRequest) -> int:
    """Estimated tokens of the prompt: the text, the template, the tool calls and schemas."""
    chars = len(request.text)
    chars += sum(_json_size(getattr(m, "tool_calls", None)) for m in request.messages)
    chars += _json_size(getattr(request, "tools", None))
    return estimate_tokens(chars) + TOKENS_PER_MESSAGE * len(request.messages)


def context_needed(request: ChatRequest) -> int:
    """Estimated prompt tokens + the tokens the answer may take (`max_tokens`; at least 1)."""
    return prompt_tokens(request) + max(1, request.max_tokens or 0)


def lacking(card: CapabilityCard, request: ChatRequest) -> list[str]:
    """What `card` lacks to answer `request` (empty: capable), one short reason each."""
    out = [f for f in FEATURES if f in required_capabilities(request) and not getattr(card, f)]
    need = context_needed(request)
    if need > card.context_size:
        out.append(f"context: needs ~{need} tokens, has {card.context_size}")
    cap = card.max_output_tokens
    if cap is not None and request.max_tokens and request.max_tokens > cap:
        out.append(f"max_output_tokens: asks {request.max_tokens}, allows {cap}")
    return out


def card_capabilities(card: CapabilityCard) -> dict[str, Any]:
    """A card's capabilities, JSON-ready: each feature, context size and max output."""
    out: dict[str, Any] = {f: bool(getattr(card, f)) for f in FEATURES}
    out["context_tokens"] = card.context_size
    out["max_output_tokens"] = card.max_output_tokens
    return out


def combine(caps: list[dict[str, Any]], how: str) -> dict[str, Any]:
    """The capabilities of a strategy from its candidates' (`card_capabilities` dicts):
    "union" (a chooser: some candidate offers it) or "intersection" (every one must)."""
    if not caps:
        return {f: False for f in FEATURES} | {"context_tokens": 0, "max_output_tokens": None}
    pick_any = how == "union"
    join = any if pick_any else all
    out: dict[str, Any] = {f: join(c[f] for c in caps) for f in FEATURES}
    ctx = [int(c["context_tokens"]) for c in caps]
    out["context_tokens"] = max(ctx) if pick_any else min(ctx)
    limits = [c["max_output_tokens"] for c in caps]
    known = [int(x) for x in limits if x is not None]
    if pick_any:
        out["max_output_tokens"] = None if None in limits or not known else max(known)
    else:
        out["max_output_tokens"] = min(known) if known else None
    return out
