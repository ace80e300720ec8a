"""The report as typed data: what `duetto eval` measured, ready for JSON, console, plots, HTML.

`Report.from_dict` reads the dict `duetto.eval.runner.evaluate` returns (plus what the CLI adds:
title, created, models, notes, elapsed_s); `Report.to_dict` gives back the same keys for
report.json. Keys the report does not model (e.g. the per-request "records") ride along in
`extra` untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BASELINE_LABELS",
    "Entry",
    "ModelInfo",
    "Quality",
    "Report",
    "Summary",
    "Workload",
    "fmt",
    "json_safe",
    "num",
]

BASELINE_LABELS = {
    "slm_only": "SLM only",
    "llm_only": "LLM only",
    "best_single": "best single model",
    "random": "random (equal LLM share)",
    "oracle": "oracle",
}
# The oracle is an upper bound nobody can deploy: it is drawn, but the Pareto front ignores it.
NOT_ON_FRONT = frozenset({"oracle"})

Number = float | int | None


@dataclass(slots=True)
class Quality:
    mean: Number = None
    ci_low: Number = None  # 95% bootstrap CI
    ci_high: Number = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Quality:
        d = d or {}
        return cls(d.get("mean"), d.get("ci_low"), d.get("ci_high"))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(slots=True)
class Summary:
    """One strategy or baseline on every axis (`duetto.eval.aggregate.summarize_strategy`)."""

    name: str
    mode: str | None = None
    quality: Quality = field(default_factory=Quality)
    llm_call_share: Number = None
    cost_usd: Number = None
    cost_usd_per_1k: Number = None
    latency_ms: dict[str, Number] = field(default_factory=dict)  # p50, p95, mean
    ttft_ms: dict[str, Number] = field(default_factory=dict)  # p50, p95
    remote_bytes: Number = None
    remote_bytes_per_request: Number = None
    energy_j: Number = None
    energy_j_per_request: Number = None
    privacy_leaks: int = 0
    privacy_leaks_by_tier: dict[str, int] = field(default_factory=dict)  # secret, identifier, ...
    leak_rate: Number = None
    n: int | None = None
    note: str | None = None  # e.g. the LLM share the random baseline was drawn at
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = (
        "name", "mode", "quality", "llm_call_share", "cost_usd", "cost_usd_per_1k", "latency_ms",
        "ttft_ms", "remote_bytes", "remote_bytes_per_request", "energy_j", "energy_j_per_request",
        "privacy_leaks", "privacy_leaks_by_tier", "leak_rate", "n",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        known = {k: d[k] for k in cls._KEYS if k in d}
        known["name"] = str(d.get("name", ""))
        known["quality"] = Quality.from_dict(d.get("quality"))
        known["latency_ms"] = dict(d.get("latency_ms") or {})
        known["ttft_ms"] = dict(d.get("ttft_ms") or {})
        known["privacy_leaks"] = d.get("privacy_leaks", 0)
        known["privacy_leaks_by_tier"] = dict(d.get("privacy_leaks_by_tier") or {})
        extra = {k: v for k, v in d.items() if k not in cls._KEYS and k != "note"}
        return cls(**known, note=d.get("note"), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self._KEYS}
        out["quality"] = self.quality.to_dict()
        if self.note is not None:
            out["note"] = self.note
        return {**out, **self.extra}


@dataclass(slots=True)
class Workload:
    name: str = ""
    n: int = 0
    calibration_n: int | None = None  # items the thresholds were calibrated on
    heldout_n: int | None = None  # items every summary is measured on

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Workload:
        d = d or {}
        name, n = str(d.get("name", "")), d.get("n", 0)
        return cls(name, n, d.get("calibration_n"), d.get("heldout_n"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "n": self.n}
        if self.calibration_n is not None:
            out["calibration_n"] = self.calibration_n
        if self.heldout_n is not None:
            out["heldout_n"] = self.heldout_n
        return out


@dataclass(slots=True)
class ModelInfo:
    """The parts of a `ModelCard.to_dict()` the report shows (the rest stays in `card`)."""

    name: str
    location: str = ""
    trusted: bool = False
    label: str = ""
    price_in_per_mtok: Number = None
    price_out_per_mtok: Number = None
    source: str = ""
    card: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelInfo:
        return cls(
            name=str(d.get("name", "")),
            location=str(d.get("location", "")),
            trusted=bool(d.get("trusted")),
            label=str(d.get("label") or ""),
            price_in_per_mtok=d.get("price_in_per_mtok"),
            price_out_per_mtok=d.get("price_out_per_mtok"),
            source=str(d.get("source") or ""),
            card=dict(d),
        )


@dataclass(slots=True)
class Entry:
    """A row of every table and chart: a strategy, or a baseline under its display label."""

    label: str
    summary: Summary
    baseline: str | None = None  # the baseline's key (slm_only, llm_only, random, oracle)

    @property
    def is_baseline(self) -> bool:
        return self.baseline is not None

    @property
    def short_label(self) -> str:
        """The label with a `*` marking a baseline (console and charts)."""
        return f"{self.label}*" if self.is_baseline else self.label


@dataclass(slots=True)
class Report:
    title: str = "duetto evaluation"
    created: str = ""
    workload: Workload = field(default_factory=Workload)
    models: list[ModelInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strategies: list[Summary] = field(default_factory=list)
    baselines: dict[str, Summary | None] = field(default_factory=dict)
    recommendation: dict[str, Any] | None = None  # `duetto.eval.aggregate.pick_recommendation`
    calibration: dict[str, Any] | None = None  # what each strategy's calibration fitted
    errors: int | None = None  # failed requests (scored 0)
    elapsed_s: float | None = None
    # The staged rollout's phases (`duetto demo`): name, requests, llm_call_share, cost_usd,
    # quality {mean, ci_low, ci_high}, and what each phase adds (labels, strategy, ...).
    phases: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. records, fitted_path, cache

    _KEYS = frozenset(
        {"title", "created", "workload", "models", "notes", "strategies", "baselines"}
        | {"recommendation", "calibration", "errors", "elapsed_s", "phases"}
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Report:
        return cls(
            title=str(d.get("title") or "duetto evaluation"),
            created=str(d.get("created", "")),
            workload=Workload.from_dict(d.get("workload")),
            models=[ModelInfo.from_dict(m) for m in d.get("models") or []],
            notes=[str(n) for n in d.get("notes") or []],
            strategies=[Summary.from_dict(s) for s in d.get("strategies") or []],
            baselines={
                k: Summary.from_dict(s) if s else None
                for k, s in (d.get("baselines") or {}).items()
            },
            recommendation=d.get("recommendation"),
            calibration=d.get("calibration"),
            errors=d.get("errors"),
            elapsed_s=d.get("elapsed_s"),
            phases=[dict(p) for p in d.get("phases") or []],
            extra={k: v for k, v in d.items() if k not in cls._KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The report.json content (NaN/inf still in: `json_safe` turns them into null)."""
        out: dict[str, Any] = {
            "title": self.title,
            "created": self.created,
            "workload": self.workload.to_dict(),
            "models": [m.card for m in self.models],
            "notes": list(self.notes),
            "strategies": [s.to_dict() for s in self.strategies],
            "baselines": {k: s.to_dict() if s else s for k, s in self.baselines.items()},
            "recommendation": self.recommendation,
        }
        for key in ("calibration", "errors", "elapsed_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.phases:
            out["phases"] = [dict(p) for p in self.phases]
        return {**out, **self.extra}

    def entries(self) -> list[Entry]:
        """Every strategy, then every baseline present."""
        out = [Entry(s.name, s) for s in self.strategies]
        for key, s in self.baselines.items():
            if s:
                out.append(Entry(BASELINE_LABELS.get(key, key), s, baseline=key))
        return out

    def recommendation_headline(self) -> str:
        """The recommendation in words with rounded numbers (never raw JSON)."""
        rec = self.recommendation or {}
        if rec.get("text"):
            return str(rec["text"])
        name = rec.get("strategy") or rec.get("name")
        if not name:
            return "no recommendation"
        q = Quality.from_dict(
            rec.get("quality") if isinstance(rec.get("quality"), Mapping) else None
        )
        parts: list[str] = []
        if q.mean is not None:
            parts.append(
                f"quality {fmt(q.mean, 2)} (95% CI {fmt(q.ci_low, 2)}–{fmt(q.ci_high, 2)})"
            )
        if rec.get("llm_only_quality") is not None:
            parts.append(f"LLM-only {fmt(rec['llm_only_quality'], 2)}")
        if rec.get("llm_call_share") is not None:
            parts.append(f"LLM calls on {fmt(rec['llm_call_share'], pct=True)} of requests")
        if rec.get("cost_fraction_of_llm_only") is not None:
            parts.append(f"{fmt(rec['cost_fraction_of_llm_only'], pct=True)} of LLM-only's cost")
        reason = rec.get("reason") or rec.get("summary")
        if reason:
            parts.append(str(reason))
        return f"Use {name}" + (": " + ", ".join(parts) if parts else "") + "."

    def phase_rows(self) -> list[dict[str, str]]:
        """One row of rounded figures per rollout phase (console and HTML)."""
        out = []
        for p in self.phases:
            q = Quality.from_dict(p.get("quality"))
            out.append(
                {
                    "name": str(p.get("name", "")),
                    "what": str(p.get("description", "")),
                    "requests": str(p.get("requests", "")),
                    "llm": fmt(p.get("llm_call_share"), pct=True),
                    "cost": fmt(p.get("cost_usd"), 4),
                    "quality": _ci_text(q.mean, q.ci_low, q.ci_high),
                }
            )
        return out

    def recommendation_rows(self) -> list[tuple[str, str]]:
        """(what, rounded figure) pairs for the recommendation box."""
        rec = self.recommendation or {}
        if not rec:
            return []
        out: list[tuple[str, str]] = []
        q = rec.get("quality")
        if isinstance(q, Mapping):
            out.append(
                ("quality [95% CI]", _ci_text(q.get("mean"), q.get("ci_low"), q.get("ci_high")))
            )
        if rec.get("llm_only_quality") is not None:
            out.append(("LLM-only quality", fmt(rec["llm_only_quality"], 2)))
        delta = rec.get("quality_delta_ci")
        if isinstance(delta, list | tuple) and len(delta) == 2:
            out.append(
                (
                    "quality − LLM-only, paired 95% CI",
                    _ci_text(rec.get("quality_delta"), delta[0], delta[1], digits=3),
                )
            )
        if "non_inferior" in rec:
            margin = rec.get("non_inferiority_margin")
            at = f" (margin {fmt(margin, 3)})" if margin is not None else ""
            out.append(("non-inferior to LLM-only", ("yes" if rec["non_inferior"] else "no") + at))
        if rec.get("llm_call_share") is not None:
            out.append(("LLM call share", fmt(rec["llm_call_share"], pct=True)))
        if rec.get("cost_fraction_of_llm_only") is not None:
            out.append(
                ("cost, fraction of LLM-only", fmt(rec["cost_fraction_of_llm_only"], pct=True))
            )
        oos = rec.get("oos")
        if isinstance(oos, Mapping) and oos.get("n"):
            out.append(
                (
                    "out-of-scope escalated or refused",
                    f"{fmt(oos.get('share'), pct=True)} of {oos['n']}",
                )
            )
        if rec.get("chosen_on"):
            out.append(("chosen on", str(rec["chosen_on"])))
        return out


def _ci_text(mean: Any, lo: Any, hi: Any, digits: int = 2) -> str:
    return f"{fmt(mean, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def json_safe(x: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); tuples become lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def num(x: Any) -> float:
    """A figure as a float; NaN when it is missing or not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fmt(x: Any, digits: int = 3, pct: bool = False) -> str:
    """A figure for a table: thousands separators, `–` when missing, or a whole percentage."""
    v = num(x)
    if math.isnan(v):
        return "–"
    if pct:
        return f"{v * 100:.0f}%"
    return f"{v:,.{digits}f}"
