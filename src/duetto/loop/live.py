"""The live loop of one gateway replica: `Loop.observe(served)` after each answered request.

    observe   (sync, never raises, never waits) samples the request for a shadow answer and,
              when it was answered locally, for an audit; each sampled job goes to a bounded
              queue (dropped and counted when full)
    workers   answer with the candidate (shadow) or the LLM (audit), store the answer and its
              labels (agreement, and the pairwise judge on a sampled share of the pairs)
    refresh   every `refresh_s`: the live estimate per audited strategy from the shared labels,
              and the controller's step (duetto.loop.controller)

Privacy: a request whose policy is not `allow` (redacted, or local only) is never sent to a
remote candidate, auditor or judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from duetto.calibrate import Target
from duetto.config import AuditConfig, ShadowConfig
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.loop.audit import Estimate, estimate, per_request
from duetto.loop.controller import Controller, threshold_of
from duetto.loop.labels import agreement_label, judge_label, judge_request, wants_judge
from duetto.loop.shadow import Background
from duetto.loop.store import Label, LoopStore, Shadow
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel
from duetto.store import TraceStore

log = logging.getLogger("duetto.loop")

DEFAULT_TARGET = 0.95  # quality as a fraction of LLM-only, when nothing else says
SHARE_WINDOW = 2000  # requests per strategy behind the local share and the saving


@dataclass(slots=True)
class Served:
    """An answered request, as the loop needs it (the gateway builds it in `finish`)."""

    trace_id: str
    requested: str  # the model or strategy asked for
    answered_by: str
    request: ChatRequest  # as the serving model got it
    text: str
    local: bool  # answered without any remote call
    remote_ok: bool  # its privacy policy lets it leave the trusted zone
    cost_usd: float = 0.0
    llm_only_cost_usd: float = 0.0


@dataclass(slots=True)
class _Job:
    kind: str  # "shadow" | "audit"
    served: Served
    model: ChatModel
    judge_share: float
    timeout_s: float


@dataclass
class LoopStats:
    sampled: dict[str, int] = field(default_factory=lambda: {"shadow": 0, "audit": 0})
    skipped_private: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    judge_calls: int = 0
    judge_cost_usd: float = 0.0
    cost_usd: dict[str, float] = field(default_factory=lambda: {"shadow": 0.0, "audit": 0.0})
    errors: int = 0


class Loop:
    def __init__(
        self,
        engine: Engine,
        traces: TraceStore,
        shadow: Mapping[str, ShadowConfig] | None = None,
        audit: AuditConfig | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.engine = engine
        self.store = LoopStore(traces)
        self.shadow_cfg = dict(shadow or {})
        self.audit_cfg = audit
        self.rng = random.Random(seed)
        self.stats = LoopStats()
        self.queues: dict[str, Background[_Job]] = {}
        self.candidates: dict[str, ChatModel] = {}
        self.auditor: ChatModel | None = None
        self.judge: ChatModel | None = None
        self.controller: Controller | None = None
        self.estimates: dict[str, Estimate] = {}
        self._window: dict[str, deque[tuple[bool, float, float]]] = {}
        self._refresher: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.shadow_cfg) or self.audit_cfg is not None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Loop:
        await self.store.start()
        for served, cfg in self.shadow_cfg.items():
            self.candidates[served] = self._candidate(served, cfg)
            self.queues[served] = Background(f"shadow:{served}", cfg.queue, cfg.workers, self._run)
        with contextlib.suppress(Exception):  # no LLM configured: no auditor, no judge
            self.auditor = self.engine.llm
        self.judge = self.auditor
        if self.audit_cfg is not None:
            if self.audit_cfg.judge:
                self.judge = self.engine.get(self.audit_cfg.judge)
            if self.auditor is None:
                raise ConfigError("the audit needs an LLM (`llm:`)", "gateway.audit")
            a = self.audit_cfg
            self.queues["audit"] = Background("audit", a.queue, a.workers, self._run)
            self.controller = Controller(
                self.store,
                self._thresholded(),
                self._targets(),
                step=a.step,
                min_labels=a.min_labels,
                window=a.window,
                enabled=a.control,
            )
            await self.controller.load()
            self._refresher = asyncio.create_task(self._refresh_forever(a.refresh_s))
        for q in self.queues.values():
            q.start()
        return self

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(BaseException):
                await self._refresher
            self._refresher = None
        for q in self.queues.values():
            await q.aclose()

    async def drain(self) -> None:
        """Wait for every queued job (tests; the benchmark between phases)."""
        for q in self.queues.values():
            await q.drain()

    def _candidate(self, served: str, cfg: ShadowConfig) -> ChatModel:
        if cfg.candidate != "first_stage":
            return self.engine.get(cfg.candidate)
        children = getattr(self.engine.get(served), "children", ())
        if not children:
            raise ConfigError(
                f"{served!r} is not a strategy: it has no first stage",
                f"gateway.shadow.{served}.candidate",
            )
        first: ChatModel = children[0]
        return first

    def _thresholded(self) -> dict[str, Any]:
        return {
            n: s
            for n, s in self.engine.strategies.items()
            if hasattr(s, "threshold") and (threshold_of(s) is not None)
        }

    def _targets(self) -> dict[str, float]:
        assert self.audit_cfg is not None
        out: dict[str, float] = {}
        for name in self.engine.strategies:
            sc = getattr(self.engine, "cfg", None)
            text = None
            if sc is not None and name in sc.strategies:
                text = sc.strategies[name].target or sc.target
            target = Target.parse(text) if text else None
            if self.audit_cfg.target is not None:
                out[name] = self.audit_cfg.target
            elif target is not None and target.kind == "quality":
                out[name] = target.value
            else:
                out[name] = DEFAULT_TARGET
        return out

    # ---- the request path: sample and enqueue, nothing else --------------------------------

    def observe(self, served: Served) -> None:
        try:
            self._observe(served)
        except Exception:  # the loop never fails a request
            self.stats.errors += 1
            log.warning("loop: observe failed", exc_info=True)

    def _observe(self, served: Served) -> None:
        window = self._window.get(served.requested)
        if window is None:
            window = self._window[served.requested] = deque(maxlen=SHARE_WINDOW)
        window.append((served.local, served.cost_usd, served.llm_only_cost_usd))
        cfg = self.shadow_cfg.get(served.requested)
        if cfg is not None and self.rng.random() < cfg.share:
            candidate = self.candidates[served.requested]
            if candidate.card.is_remote and not served.remote_ok:
                self.stats.skipped_private += 1
            else:
                self.stats.sampled["shadow"] += 1
                self.queues[served.requested].offer(
                    _Job("shadow", served, candidate, cfg.judge_share, cfg.timeout_s)
                )
        a = self.audit_cfg
        if a is not None and served.local and self.rng.random() < a.share:
            if not served.remote_ok:
                self.stats.skipped_private += 1
                return
            assert self.auditor is not None
            self.stats.sampled["audit"] += 1
            self.queues["audit"].offer(
                _Job("audit", served, self.auditor, a.judge_share, a.timeout_s)
            )

    # ---- the workers -----------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        s = job.served
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout_s):
                resp = await job.model.complete(s.request)
        except Exception as exc:
            await self.store.add_shadow(
                Shadow(s.trace_id, job.model.name, None, job.kind, {"error": str(exc)[:500]})
            )
            raise
        cost = resp.usage.cost_usd
        self.stats.cost_usd[job.kind] += cost
        await self.store.add_shadow(
            Shadow(
                s.trace_id,
                job.model.name,
                resp.text,
                job.kind,
                _features(resp),
                cost,
                (time.perf_counter() - t0) * 1000,
            )
        )
        # shadow: the candidate's answer is labelled against the served one; audit: the served
        # (local) answer is labelled against the LLM's
        if job.kind == "shadow":
            labelled, text, ref, ref_by = job.model.name, resp.text, s.text, s.answered_by
        else:
            labelled, text, ref, ref_by = s.answered_by, s.text, resp.text, job.model.name
        labels: list[Label] = []
        agreed = agreement_label(
            s.trace_id,
            labelled,
            text,
            ref,
            strategy=s.requested,
            kind=job.kind,
            reference_by=ref_by,
        )
        if agreed is not None:
            labels.append(agreed)
        judge = self.judge
        if (
            judge is not None
            and (s.remote_ok or not judge.card.is_remote)
            and wants_judge(job.judge_share, self.rng.random())
        ):
            async with asyncio.timeout(job.timeout_s):
                reply = await judge.complete(judge_request(s.request, text, ref))
            self.stats.judge_calls += 1
            self.stats.judge_cost_usd += reply.usage.cost_usd
            graded = judge_label(
                s.trace_id, labelled, reply, judge=judge.name, strategy=s.requested, kind=job.kind
            )
            if graded is not None:
                labels.append(graded)
        await self.store.add_labels(labels)
        for lb in labels:
            self.stats.labels[lb.source] = self.stats.labels.get(lb.source, 0) + 1

    # ---- the live estimate and the controller ----------------------------------------------

    def local_share(self, strategy: str) -> float:
        window = self._window.get(strategy)
        return sum(w[0] for w in window) / len(window) if window else 0.0

    async def refresh(self) -> dict[str, Estimate]:
        """The estimate of every audited strategy, and one controller step for each."""
        if self.controller is None or self.audit_cfg is None:
            return self.estimates
        for name in self.controller.strategies:
            self.estimates[name] = await self.controller.step_once(name, self.local_share(name))
        window = self.audit_cfg.window
        for name in list(self._window):  # audited models and strategies without a threshold
            if name in self.controller.strategies:
                continue
            labels = await self.store.labels(kind="audit", strategy=name, limit=window * 3)
            if labels:
                fallback = self.audit_cfg.target or DEFAULT_TARGET
                target = self.controller.targets.get(name, fallback)
                scores = per_request(labels)[-window:]
                self.estimates[name] = estimate(scores, self.local_share(name), target)
        return self.estimates

    async def _refresh_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
            except Exception:
                log.warning("loop: refresh failed", exc_info=True)

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready figures for /dashboard/data and /v1/loop."""
        strategies: dict[str, Any] = {}
        for name, window in self._window.items():
            n = len(window)
            cost = sum(w[1] for w in window)
            llm_only = sum(w[2] for w in window)
            strategies[name] = {
                "requests": n,
                "llm_share": 1.0 - self.local_share(name),
                "cost_usd": cost,
                "llm_only_cost_usd": llm_only,
                "saving": (1.0 - cost / llm_only) if llm_only > 0 else None,
            }
        for name, est in self.estimates.items():
            strategies.setdefault(name, {})["quality"] = est.to_dict()
        if self.controller is not None:
            for name, st in self.controller.state.items():
                entry = strategies.setdefault(name, {})
                entry.setdefault("quality", None)
                entry["threshold"] = threshold_of(self.controller.strategies[name])
                entry["threshold_moves"] = st.moves
                entry["last_move"] = st.reason
        loop_cost = sum(self.stats.cost_usd.values()) + self.stats.judge_cost_usd
        return {
            "strategies": strategies,
            "queues": {
                q.name: {
                    "depth": q.depth,
                    "size": q.size,
                    "offered": q.offered,
                    "dropped": q.dropped,
                    "done": q.done,
                    "failed": q.failed,
                }
                for q in self.queues.values()
            },
            "sampled": dict(self.stats.sampled),
            "skipped_private": self.stats.skipped_private,
            "labels": dict(self.stats.labels),
            "judge_calls": self.stats.judge_calls,
            "judge_cost_usd": self.stats.judge_cost_usd,
            "loop_cost_usd": loop_cost,
        }


def _features(resp: ChatResponse) -> dict[str, Any]:
    """What `duetto fit` may use of a background answer besides its text."""
    out: dict[str, Any] = {"usage": resp.usage.to_dict(), "finish_reason": resp.finish_reason}
    if resp.logprobs:
        out["logprob"] = sum(resp.logprobs) / len(resp.logprobs)
        out["confidence"] = resp.confidence
    elif resp.score is not None:
        out["confidence"] = resp.score
    return out
