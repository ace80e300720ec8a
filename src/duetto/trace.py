"""Per-request trace: a tree of steps. Leaves are model calls; inner nodes are strategies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from duetto.usage import Usage


@dataclass(slots=True)
class Step:
    name: str  # model card name or strategy name
    kind: str = "model"  # "model" | "strategy"
    mode: str | None = None  # pipeline | route | cascade | assist | fuse | distill | baseline
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
                d[k] = v
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
            score=d.get("score"),
            threshold=d.get("threshold"),
            usage=Usage.from_dict(d.get("usage", {})),
            latency_ms=d.get("latency_ms"),
            children=[cls.from_dict(c) for c in d.get("children", [])],
            note=d.get("note"),
            extra=d.get("extra", {}),
        )


def new_trace_id() -> str:
    return "dt-" + uuid.uuid4().hex
