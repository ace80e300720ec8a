"""What the gateway measures: Prometheus metrics for scrapers, live stats for the dashboard.

Both are fed from one `Outcome` per finished request. Each app owns its registry (no module
globals), so several apps can live in one process (tests). The LLM-only counterfactual is what
the same request would have cost on the configured LLM alone (same tokens in, same tokens out):
cost saved = counterfactual − actual. It is an estimate and labelled so on the dashboard.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from duetto.usage import Usage

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WINDOW_S = 300.0  # percentiles and rates over the last five minutes


@dataclass(slots=True)
class Outcome:
    strategy: str  # the requested model or strategy
    status: str  # ok | error | cancelled
    usage: Usage = field(default_factory=Usage)
    llm_only_cost_usd: float = 0.0
    latency_s: float = 0.0
    ttft_s: float | None = None
    fallback: str | None = None  # None | "rescued" | "failed"
    stream: bool = False
    # PII entities sent to untrusted models, {(model, tier): n} (gateway.leaks.sent_by_model)
    leaks: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    llm_requests: int = 0
    cost_usd: float = 0.0
    llm_only_cost_usd: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    energy_j: float = 0.0
    pii_sent: int = 0
    leaky_requests: int = 0
    fallbacks: int = 0
    rescued: int = 0
    pii_sent_by_tier: dict[str, int] = field(default_factory=dict)

    def add(self, o: Outcome) -> None:
        u = o.usage
        self.requests += 1
        self.errors += o.status == "error"
        self.cancelled += o.status == "cancelled"
        self.llm_requests += u.remote_calls > 0
        self.cost_usd += u.cost_usd
        self.llm_only_cost_usd += o.llm_only_cost_usd
        self.bytes_sent += u.bytes_sent
        self.bytes_received += u.bytes_received
        self.energy_j += u.energy_j
        self.pii_sent += u.pii_sent
        self.leaky_requests += u.pii_sent > 0
        self.fallbacks += o.fallback is not None
        self.rescued += o.fallback == "rescued"
        for (_, tier), n in o.leaks.items():
            self.pii_sent_by_tier[tier] = self.pii_sent_by_tier.get(tier, 0) + n

    def to_dict(self) -> dict[str, Any]:
        n = max(1, self.requests)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "cancelled": self.cancelled,
            "llm_requests": self.llm_requests,
            "llm_share": self.llm_requests / n,
            "cost_usd": self.cost_usd,
            "llm_only_cost_usd": self.llm_only_cost_usd,
            "saved_usd": self.llm_only_cost_usd - self.cost_usd,
            "remote_bytes": self.bytes_sent + self.bytes_received,
            "energy_j": self.energy_j,
            "pii_sent": self.pii_sent,
            "leak_rate": self.leaky_requests / n,
            "pii_sent_by_tier": dict(self.pii_sent_by_tier),
            "fallbacks": self.fallbacks,
            "rescued": self.rescued,
        }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class LiveStats:
    """Totals per strategy and a sliding window of latencies. Pure: the clock is passed in."""

    def __init__(self, now: float, window_s: float = WINDOW_S, max_samples: int = 20_000) -> None:
        self.started = now
        self.window_s = window_s
        self.total = _Totals()
        self.by_strategy: dict[str, _Totals] = {}
        self._recent: deque[tuple[float, str, float]] = deque(maxlen=max_samples)
        # the sampled re-scan (gateway.leaks): outcomes, and residual leaks by tier
        self.rescans: dict[str, int] = {"scanned": 0, "dropped": 0, "failed": 0}
        self.residual_by_tier: dict[str, int] = {}

    def add(self, o: Outcome, now: float) -> None:
        self.total.add(o)
        self.by_strategy.setdefault(o.strategy, _Totals()).add(o)
        if o.status == "ok":
            self._recent.append((now, o.strategy, o.latency_s * 1000))

    def snapshot(self, now: float) -> dict[str, Any]:
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()
        span = max(1e-9, min(self.window_s, now - self.started, 60.0))
        last_minute = sum(1 for t, _, _ in self._recent if t >= now - 60.0)
        every = sorted(ms for _, _, ms in self._recent)
        strategies = []
        for name, tot in sorted(self.by_strategy.items()):
            mine = sorted(ms for _, s, ms in self._recent if s == name)
            strategies.append(
                {
                    "name": name,
                    **tot.to_dict(),
                    "p50_ms": _percentile(mine, 0.5),
                    "p95_ms": _percentile(mine, 0.95),
                }
            )
        return {
            "uptime_s": now - self.started,
            "rate_rps": last_minute / span,
            "p50_ms": _percentile(every, 0.5),
            "p95_ms": _percentile(every, 0.95),
            **self.total.to_dict(),
            "leak_rescans": dict(self.rescans),
            "residual_leaks_by_tier": dict(self.residual_by_tier),
            "strategies": strategies,
        }


class GatewayMetrics:
    """Prometheus metrics in the app's own registry, plus `live` for the dashboard."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        s = ["strategy"]
        self.requests = Counter(
            "duetto_requests", "Accepted requests by outcome", ["strategy", "status"], registry=r
        )
        self.llm_requests = Counter(
            "duetto_llm_requests", "Requests that called a remote LLM at least once", s, registry=r
        )
        self.model_calls = Counter(
            "duetto_model_calls", "Model calls", ["strategy", "location"], registry=r
        )
        self.cost = Counter("duetto_cost_usd", "Cost in USD", s, registry=r)
        self.llm_only_cost = Counter(
            "duetto_llm_only_cost_usd",
            "Estimated cost of the same requests on the LLM alone (counterfactual)",
            s,
            registry=r,
        )
        self.latency = Histogram(
            "duetto_request_latency_seconds",
            "Gateway latency",
            s,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "duetto_ttft_seconds",
            "Time to first token (streams)",
            s,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.remote_bytes = Counter(
            "duetto_remote_bytes",
            "Bytes exchanged with remote models",
            ["strategy", "direction"],
            registry=r,
        )
        self.energy = Counter("duetto_energy_joules", "Estimated energy", s, registry=r)
        self.pii_sent = Counter(
            "duetto_pii_entities_sent", "PII entities sent outside the trusted zone", s, registry=r
        )
        self.leaky = Counter(
            "duetto_leaky_requests",
            "Requests that sent at least one PII entity outside",
            s,
            registry=r,
        )
        self.pii_by_tier = Counter(
            "duetto_pii_sent_by_tier",
            "PII entities sent to an untrusted model, by risk tier (inline rules)",
            ["tier", "model"],
            registry=r,
        )
        self.residual = Counter(
            "duetto_residual_leaks",
            "Entities the sampled re-scan found in what was sent and the inline rules missed",
            ["tier", "model"],
            registry=r,
        )
        self.rescans = Counter(
            "duetto_leak_rescans",
            "Sampled re-scans of sent text, by outcome (scanned, dropped: queue full, failed)",
            ["outcome"],
            registry=r,
        )
        self.rescan_queue = Gauge(
            "duetto_leak_rescan_queue", "Sent texts waiting for the re-scan", registry=r
        )
        self.fallbacks = Counter(
            "duetto_fallbacks", "Fallbacks taken, by outcome", ["strategy", "outcome"], registry=r
        )
        self.rejected = Counter(
            "duetto_rejected_requests", "Requests refused before any call", ["reason"], registry=r
        )
        self.in_flight = Gauge("duetto_requests_in_flight", "Requests being answered", registry=r)
        self.breaker_open = Gauge(
            "duetto_breaker_open", "1 when an upstream's breaker is open", ["upstream"], registry=r
        )
        self.live = LiveStats(time.time())
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _of(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus_client's lookup (a lock, label checks)
        was the larger part of observing a request."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, o: Outcome) -> None:
        u, s, of = o.usage, o.strategy, self._of
        of(self.requests, s, o.status).inc()
        if u.remote_calls:
            of(self.llm_requests, s).inc()
            of(self.model_calls, s, "remote").inc(u.remote_calls)
        if u.calls - u.remote_calls > 0:
            of(self.model_calls, s, "local").inc(u.calls - u.remote_calls)
        if u.cost_usd:
            of(self.cost, s).inc(u.cost_usd)
        if o.llm_only_cost_usd:
            of(self.llm_only_cost, s).inc(o.llm_only_cost_usd)
        if o.status == "ok":
            of(self.latency, s).observe(o.latency_s)
            if o.ttft_s is not None:
                of(self.ttft, s).observe(o.ttft_s)
        if u.bytes_sent:
            of(self.remote_bytes, s, "sent").inc(u.bytes_sent)
        if u.bytes_received:
            of(self.remote_bytes, s, "received").inc(u.bytes_received)
        if u.energy_j:
            of(self.energy, s).inc(u.energy_j)
        if u.pii_sent:
            of(self.pii_sent, s).inc(u.pii_sent)
            of(self.leaky, s).inc()
        for (model, tier), n in o.leaks.items():
            of(self.pii_by_tier, tier, model).inc(n)
        if o.fallback is not None:
            of(self.fallbacks, s, o.fallback).inc()
        self.live.add(o, time.time())

    def observe_rescan(
        self, outcome: str, model: str | None = None, missed: dict[str, int] | None = None
    ) -> None:
        """One sampled re-scan: its outcome and, when scanned, the residual leaks by tier."""
        self.rescans.labels(outcome).inc()
        self.live.rescans[outcome] = self.live.rescans.get(outcome, 0) + 1
        for tier, n in (missed or {}).items():
            self.residual.labels(tier, model or "").inc(n)
            self.live.residual_by_tier[tier] = self.live.residual_by_tier.get(tier, 0) + n

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
