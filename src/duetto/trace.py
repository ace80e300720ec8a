"""Per-request trace: a tree of steps. Leaves are model calls; inner nodes are strategies."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from duetto.usage import Usage


@dataclass(slots=True)
class Step:
    name: str  # model card name or strategy name
    kind: str = "model"  # "model" | "strategy"
    mode: str | None = None  # pipeline | route | cascade | assist | fuse | fallback | baseline
    role: str | None = None  # e.g. "draft", "verify", "answer", "redact", "judge"
    decision: str | None = None  # e.g. "accepted", "escalated", "chosen", "fallback"
    score: float | None = None
    threshold: float | None = None
    usage: Usage = field(default_factory=Usage)  # a leaf's own usage; a strategy's own overhead
    latency_ms: float | None = None  # wall time of this whole subtree
    children: list[Step] = field(default_factory=list)
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def total(self) -> Usage:
        """Usage summed over this subtree, with the subtree's measured wall time as latency."""
        u = Usage() + self.usage
        for c in self.children:
            u = u + c.total()
        if self.latency_ms is not None:
            u.latency_ms = self.latency_ms
        return u

    def leaves(self) -> list[Step]:
        if not self.children:
            return [self]
        out: list[Step] = []
        for c in self.children:
            out.extend(c.leaves())
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for k in ("mode", "role", "decision", "score", "threshold", "latency_ms", "note"):
            v = getattr(self, k)
            if v is not None:
                # JSON has no infinity: a threshold of inf (escalate all) is stored as "inf"
                d[k] = str(v) if isinstance(v, float) and not math.isfinite(v) else v
        d["usage"] = self.usage.to_dict()
        if self.extra:
            d["extra"] = self.extra
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(
            name=d["name"],
            kind=d.get("kind", "model"),
            mode=d.get("mode"),
            role=d.get("role"),
            decision=d.get("decision"),
            score=_float(d.get("score")),
            threshold=_float(d.get("threshold")),
            usage=Usage.from_dict(d.get("usage", {})),
            latency_ms=d.get("latency_ms"),
            children=[cls.from_dict(c) for c in d.get("children", [])],
            note=d.get("note"),
            extra=d.get("extra", {}),
        )


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, str) else v


def new_trace_id() -> str:
    return "dt-" + uuid.uuid4().hex


def service_latency_ms(step: Step) -> float:
    """Latency of a request rebuilt from its leaves' measured service times.

    Used by the evaluator, where model calls are cached and reused across strategies: a
    strategy's wall time then says nothing, but its leaves' recorded latencies do. Children of
    a step marked `extra["concurrent"]` ran at the same time (the slowest counts); other
    children ran one after the other (they add up)."""
    if not step.children:
        return step.usage.latency_ms if step.kind == "model" else (step.latency_ms or 0.0)
    parts = [service_latency_ms(c) for c in step.children]
    if step.extra.get("concurrent"):
        # Concurrent candidates, then any sequential tail (judge/aggregator) after them.
        tail_roles = ("judge", "aggregator", "aggregate")
        cand = [p for p, c in zip(parts, step.children, strict=True) if c.role not in tail_roles]
        rest = [p for p, c in zip(parts, step.children, strict=True) if c.role in tail_roles]
        return (max(cand) if cand else 0.0) + sum(rest)
    return sum(parts)


def service_ttft_ms(step: Step) -> float:
    """Time to first token: everything before the last model call, plus that call's TTFT."""
    leaves = [s for s in step.leaves() if s.kind == "model"]
    if not leaves:
        return service_latency_ms(step)
    last = leaves[-1]
    before = service_latency_ms(step) - last.usage.latency_ms
    ttft = last.usage.ttft_ms if last.usage.ttft_ms is not None else last.usage.latency_ms
    return max(0.0, before) + ttft
