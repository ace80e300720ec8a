"""Leakage measured where it happens: what each untrusted model received, by risk tier.

- Inline, once per call that reaches an untrusted model: the dependency-free rules
  (`duetto.privacy.rules.rules_detect`, well under a millisecond on a chat turn) count the
  entities of the text sent, by tier; the leaf's trace step keeps the counts (`pii_tiers`), so
  the stored trace, `/metrics` (`duetto_pii_sent_by_tier{tier,model}`) and the dashboard all read
  the same numbers from the response.
- Off the request path, a sampled share (`gateway.leak_rescan_share`, default 5%) of the texts
  sent goes through a bounded queue to one background worker that re-scans them with the slower
  second opinion (the process-wide detector when it is a stronger one, e.g. Presidio's NER; or
  the local model's pass, `duetto.privacy.model_pass`). Its entities that the inline rules did
  not cover are residual leaks (`duetto_residual_leaks{tier,model}`). A full queue drops the
  sample and counts it (`duetto_leak_rescans{outcome="dropped"}`); the request never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from duetto.gateway.metrics import GatewayMetrics
from duetto.models.base import ChatModel, LeafModel
from duetto.privacy.leaks import add_tiers, by_tier, residual, sent_entities
from duetto.scoring.pii import Entity, current_detector, regex_detect
from duetto.trace import Step

log = logging.getLogger("duetto.gateway")

SecondOpinion = Callable[[str], list[Entity] | Awaitable[list[Entity]]]


def leaf_models(models: Iterable[ChatModel]) -> list[LeafModel]:
    """Every LeafModel under `models` (through wrappers and strategies), once each."""
    out: dict[int, LeafModel] = {}
    todo = list(models)
    while todo:
        m = todo.pop()
        if isinstance(m, LeafModel):
            out.setdefault(id(m), m)
        todo.extend(m.children)
    return list(out.values())


def sent_by_model(trace: Step) -> dict[tuple[str, str], int]:
    """{(model, tier): count} over the trace's leaves (the steps' `pii_tiers`)."""
    out: dict[tuple[str, str], int] = {}
    for leaf in trace.leaves():
        for tier, n in (leaf.extra.get("pii_tiers") or {}).items():
            out[(leaf.name, tier)] = out.get((leaf.name, tier), 0) + int(n)
    return out


def sent_by_tier(trace: Step) -> dict[str, int]:
    total: dict[str, int] = {}
    for (_, tier), n in sent_by_model(trace).items():
        add_tiers(total, {tier: n})
    return total


class LeakMeter:
    """The inline per-tier counter installed on every untrusted leaf, and the sampled re-scan."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        share: float = 0.05,
        queue_size: int = 64,
        second_opinion: SecondOpinion | None = None,
        rng: random.Random | None = None,
    ) -> None:
        from duetto.privacy.rules import rules_detect

        self.metrics = metrics
        self.share = share
        self.second_opinion = second_opinion  # None at start(): the process-wide detector
        self.fast: Callable[[str], list[Entity]] = rules_detect
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[tuple[str, str, list[Entity]]] = asyncio.Queue(queue_size)
        self._worker: asyncio.Task[None] | None = None
        metrics.rescan_queue.set_function(self._queue.qsize)

    # ---- setup -----------------------------------------------------------------------------

    def install(self, models: Iterable[ChatModel]) -> int:
        """Count with this meter on every untrusted leaf; returns how many."""
        n = 0
        for leaf in leaf_models(models):
            if not leaf.card.trusted:
                leaf.pii_counter = self.counter_for(leaf.card.name)
                n += 1
        return n

    def start(self) -> None:
        if self.second_opinion is None:
            detector = current_detector()
            # the rules are the inline counter already: a second pass would find nothing new
            if detector is not regex_detect and detector is not self.fast:
                self.second_opinion = detector
        if self.second_opinion is None or self.share <= 0:
            log.info("leak re-scan off (no second opinion stronger than the inline rules)")
            self.share = 0.0
            return
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Wait until every queued re-scan is done (tests, shutdown)."""
        if self._worker is not None:
            await self._queue.join()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Finish the queued re-scans (up to `timeout_s`), then stop the worker."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout_s)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    # ---- inline ----------------------------------------------------------------------------

    def counter_for(self, model: str) -> Callable[[str], dict[str, int]]:
        def count(text: str) -> dict[str, int]:
            found = sent_entities(text, self.fast)
            if self.share > 0 and self._rng.random() < self.share:
                self._sample(model, text, found)
            return by_tier(found)

        return count

    def _sample(self, model: str, text: str, found: list[Entity]) -> None:
        try:
            self._queue.put_nowait((model, text, found))
        except asyncio.QueueFull:
            self.metrics.observe_rescan("dropped")

    # ---- off the request path --------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            model, text, found = await self._queue.get()
            try:
                missed = residual(await self._second(text), found)
                self.metrics.observe_rescan("scanned", model, by_tier(missed))
            except Exception:
                log.exception("leak re-scan failed")
                self.metrics.observe_rescan("failed")
            finally:
                self._queue.task_done()

    async def _second(self, text: str) -> list[Entity]:
        second = self.second_opinion
        assert second is not None
        if inspect.iscoroutinefunction(second):  # e.g. ModelPass(...).detect
            result: Any = await second(text)
        else:  # a CPU-bound detector (spaCy NER): in a thread, never on the event loop
            result = await asyncio.to_thread(second, text)
        return sent_entities(text, lambda _: list(result))
