"""Capability filtering shared by the strategies: pure decisions, no model call.

    sort_capable(models, request)   (indices of the models that can answer, {index: what the
                                    others lack}) from each model's `lacks(request)`
    skipped(models, lacks)          trace notes: ["skipped slm: lacks vision"]
    pinned_refusal(owner, ...)      the refusal when a rule pins a model that cannot answer
    refusal(owner, mode, ...)       the MissingCapability (a 400) to raise when none can
    intermediate(request)           the request an intermediate step gets (a pipeline stage
                                    before the last): without what shapes only the final answer
                                    (tools, tool_choice, response_format, logprobs)

What each strategy requires of its candidates is in its docstring and docs/routing.md
("Capabilities"): choosers (route, cascade, fuse, fallback) choose among the capable ones;
a pipeline needs every stage to read the request and its last stage to shape the answer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from duetto.capabilities import FEATURES
from duetto.errors import MissingCapability
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel

# What shapes only the answer (not what a model must read): an intermediate step goes without.
ANSWER_FIELDS = ("tools", "tool_choice", "response_format", "logprobs", "top_logprobs")
_NAMES = (*FEATURES, "context", "max_output_tokens")


def sort_capable(
    models: Sequence[ChatModel], request: ChatRequest
) -> tuple[list[int], dict[int, list[str]]]:
    """(indices of the capable models in order, {index of an incapable model: its lacks})."""
    ok: list[int] = []
    lacks: dict[int, list[str]] = {}
    for i, m in enumerate(models):
        missing = m.lacks(request)
        if missing:
            lacks[i] = missing
        else:
            ok.append(i)
    return ok, lacks


def describe(model: ChatModel, missing: Sequence[str]) -> str:
    return f"{model.name}: lacks {', '.join(missing)}"


def skipped(models: Sequence[ChatModel], lacks: dict[int, list[str]]) -> list[str]:
    """One trace note per skipped candidate."""
    return [f"skipped {describe(models[i], m)}" for i, m in sorted(lacks.items())]


def reasons(models: Sequence[ChatModel], lacks: dict[int, list[str]]) -> list[str]:
    """`lacks` of the incapable models as "name: lacks x, y" (what a parent strategy reports)."""
    return [describe(models[i], m) for i, m in sorted(lacks.items())]


def capability_of(reasons: Sequence[str]) -> str:
    """The capability names the reasons mention, in FEATURES order ("vision", "context")."""
    text = " ".join(reasons)
    found = [n for n in _NAMES if re.search(rf"\b{n}\b", text)]
    return " and ".join(found) if found else "a capability"


def refusal(owner: str, mode: str, why: Sequence[str]) -> MissingCapability:
    """The 400 a strategy raises when no candidate can answer: names capability and owner."""
    return MissingCapability(owner, mode, capability_of(why), list(why))


def intermediate(request: ChatRequest) -> ChatRequest:
    """`request` with the fields that shape only the final answer back at their defaults."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(request):
        if f.name not in ANSWER_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            changes[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            changes[f.name] = f.default_factory()
    return dataclasses.replace(request, **changes) if changes else request


def pinned_refusal(
    owner: str, mode: str, model: ChatModel, missing: Sequence[str]
) -> MissingCapability:
    """A rule pinned `model`, which cannot answer: refused, not re-routed (an operator's pin
    may be a privacy pin, e.g. `has_pii -> slm`)."""
    return refusal(owner, mode, [f"a rule pins {describe(model, missing)}"])
