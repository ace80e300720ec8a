"""The life of one request in the gateway, free of HTTP:

    admit     model lookup, session affinity, rate limit, privacy policy (detect once; redact
              the request, or hand it to the trusted local model), capabilities (a request the
              model cannot serve is a 400 MissingCapability), budget reservation
    complete  / stream: the requested model or strategy under a deadline, wrapped in a
              `Fallback` strategy when a fallback is configured: on any failure it answers (a
              stream cut mid-way is continued), and the trace says so; redacted answers are
              restored (streams too)
    finish    settle (actual cost) or release the reservation, metrics, and exactly one record
              in the store (committed before the client gets the end of the answer, unless
              `store_before_answer` is off: then right after, from a task of its own)

The HTTP layer (app.py) calls these in order and only shapes bytes. The parts live apart:
callers and rate limits in auth.py, budgets in billing.py, session pins in affinity.py, the
call, its answer and its stored record in records.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from duetto.errors import (
    ConfigError,
    FallbackFailed,
    GatewayFailure,
    ModelError,
    OverBudget,
    Rejected,
)
from duetto.gateway.affinity import Affinity
from duetto.gateway.auth import ApiKey, KeyRing
from duetto.gateway.billing import Billing, Budgets, partial_cost, worst_case_cost
from duetto.gateway.boundary import plan_for, restored, shown, trusted_local
from duetto.gateway.breaker import BreakerModel, CircuitBreaker, leaves
from duetto.gateway.calibration import Calibrations
from duetto.gateway.leaks import LeakMeter, sent_by_model
from duetto.gateway.metrics import GatewayMetrics, Outcome
from duetto.gateway.records import Answer, Call, llm_only_cost, trace_record
from duetto.gateway.settings import GatewaySettings
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, ModelCard
from duetto.privacy.apply import use_detector
from duetto.store import TraceStore
from duetto.strategies.capable import refusal
from duetto.strategies.fallback import Fallback, deltas, describe, rescued
from duetto.trace import new_trace_id
from duetto.usage import Usage

if TYPE_CHECKING:
    from duetto.engine import Engine

__all__ = ["Answer", "Call", "Gateway", "GatewayFailure", "Rejected"]

log = logging.getLogger("duetto.gateway")


class Gateway:
    def __init__(
        self, engine: Engine, settings: GatewaySettings, store: TraceStore, metrics: GatewayMetrics
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.billing = Billing(store)
        self.keys = KeyRing(self.billing, settings.keys)
        self.budgets = Budgets(self.billing)
        self.affinity = Affinity(settings.max_sessions)
        self.breakers: dict[str, CircuitBreaker] = {}
        self.fallback: ChatModel | None = None
        self.local: ChatModel | None = None  # answers local_only requests
        self.llm_card: ModelCard | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.leaks = LeakMeter(
            metrics, share=settings.leak_rescan_share, queue_size=settings.leak_rescan_queue
        )
        # which calibration decides each request; reloaded without a restart (admin.py)
        self.calibrations = Calibrations(
            engine,
            store,
            settings.calibration_poll_s,
            shadow=frozenset(shadow_candidates(settings)),
        )
        # called with each answered call once its record is stored (the live loop): must not
        # block or raise; they only enqueue background work
        self.after_finish: list[Callable[[Call, Answer], None]] = []

    # ---- setup -----------------------------------------------------------------------------

    def wrap_model(self, name: str, model: ChatModel) -> ChatModel:
        """Engine hook: a circuit breaker in front of every remote model (one per upstream)."""
        if not model.card.is_remote:
            return model
        breaker = CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_reset_s)
        self.breakers[name] = breaker
        self.metrics.breaker_open.labels(name).set_function(
            lambda: 1.0 if breaker.state == "open" else 0.0
        )
        return BreakerModel(model, breaker)

    async def start(self) -> None:
        await self.billing.start()
        await self.keys.start()
        swept = await self.billing.sweep(self.settings.reservation_ttl_s)
        if swept:
            log.warning("released %d reservations left by a crashed replica", swept)
        await self._calibrate()
        if self.settings.fallback:
            self.fallback = self.engine.get(self.settings.fallback)
        with contextlib.suppress(Exception):  # no LLM configured: no counterfactual
            self.llm_card = self.engine.llm.card
        self.affinity.index(self.engine.models)
        if self.settings.detector is not None:
            used = await asyncio.to_thread(use_detector, self.settings.detector)
            log.info("PII detector: %s", used)
        names = (self.settings.local_model, self.settings.fallback)
        self.local = trusted_local(self.settings.privacy, [self.lookup(n) for n in names if n])
        self._start_leak_meter()
        if self.keys.open:
            log.warning("no API keys configured: the gateway accepts every caller")

    def _start_leak_meter(self) -> None:
        """Inline per-tier counting on every untrusted leaf, and the sampled re-scan by the
        second opinion (gateway.leaks)."""
        self.leaks.install(self.engine.models.values())
        if self.settings.leak_second_opinion == "model" and self.leaks.second_opinion is None:
            if self.local is None:
                log.warning("leak_second_opinion: model, but no trusted local model: detector")
            else:
                from duetto.privacy.model_pass import ModelPass
                from duetto.scoring.pii import detect

                self.leaks.second_opinion = ModelPass(self.local, base=detect).detect
        self.leaks.start()

    async def _calibrate(self) -> None:
        """The calibration to serve: the one given, else the shipped one for the embedded
        defaults, then the last one promoted in the store (newer). A thresholded strategy still
        without a threshold refuses to start (ConfigError), unless it only runs in shadow."""
        from duetto.gateway.settings import is_embedded_defaults

        engine: Any = self.engine
        cfg = getattr(engine, "cfg", None)
        if (
            getattr(engine, "fitted", True) is None
            and cfg is not None
            and is_embedded_defaults(cfg)
        ):
            from duetto.fitted import default_calibration

            engine.use_calibration(default_calibration())
            log.info("embedded defaults: shipped calibration %s", engine.calibration_version)
        await self.calibrations.start()
        uncalibrated = engine.uncalibrated() if hasattr(engine, "uncalibrated") else []
        shadow = self._shadow_only()
        refused = [n for n in uncalibrated if n not in shadow]
        if refused:
            raise ConfigError(
                f"{', '.join(map(repr, refused))} has neither a threshold nor a calibration and "
                "would serve an arbitrary one: fit one on your traffic (`duetto fit STORE`, then "
                "`duetto serve --calibration FILE` or POST /admin/calibration), give it a fixed "
                "`threshold:`, or run it only as a shadow candidate",
                f"strategies.{refused[0]}",
            )
        self._adapt_shadow([n for n in uncalibrated if n in shadow])

    def _shadow_only(self) -> set[str]:
        return shadow_candidates(self.settings)

    def _adapt_shadow(self, names: list[str]) -> None:
        """A shadow candidate without a threshold gets an online adaptive one (from 0.5)."""
        from duetto.calibrate import Target, online_policy

        for name in names:
            strategy = self.engine.strategies[name]
            target = self.engine.targets().get(name) or Target.parse("quality=0.95")
            strategy.policy = online_policy(target)  # type: ignore[attr-defined]
            log.warning("strategy %r is uncalibrated: it runs as a shadow candidate only", name)

    async def aclose(self) -> None:
        await self.calibrations.aclose()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
        await self.leaks.aclose()

    def names(self) -> list[tuple[str, ChatModel]]:
        return [*self.engine.strategies.items(), *self.engine.models.items()]

    def lookup(self, name: str) -> ChatModel | None:
        try:
            model: ChatModel = self.engine.get(name)
            return model
        except KeyError:
            return None

    # ---- admit -----------------------------------------------------------------------------

    async def admit(
        self,
        who: ApiKey,
        requested: str,
        request: ChatRequest,
        *,
        stream: bool,
        session: str | None,
        stored_request: dict[str, Any],
    ) -> Call:
        model = self.lookup(requested)
        if model is None:
            self.metrics.rejected.labels("model_not_found").inc()
            raise Rejected(
                404,
                f"The model `{requested}` does not exist (see GET /v1/models)",
                "invalid_request_error",
                "model_not_found",
            )
        wait = self.keys.rate_limit(who)
        if wait > 0:
            self.metrics.rejected.labels("rate_limit").inc()
            raise Rejected(
                429,
                f"Rate limit of {who.rpm} requests per minute reached",
                "rate_limit_error",
                "rate_limit_exceeded",
                retry_after=wait,
            )
        if self.settings.affinity and session:
            pinned = self.affinity.pinned((who.name, requested, session), model)
            if pinned is not None:
                model = self.engine.get(pinned)
        model, calibration = self.calibrations.choose(requested, model)
        policy = self.settings.privacy.for_request(
            api_key=who.name,
            route=requested,
            strategy=requested if requested in self.engine.strategies else None,
        )
        plan = plan_for(request, policy, [model, self._fallback_for(model)])
        allow_fallback = True
        if plan is not None and plan.local:
            if self.local is None:  # start() refuses such a config; settings changed since
                raise Rejected(
                    400,
                    "local_only policy and no trusted local model configured",
                    "invalid_request_error",
                    "privacy_local_only",
                )
            model = self.local
            allow_fallback = self.fallback is not None and self.fallback.card.trusted
        if plan is not None:
            request = plan.request
        if missing := model.lacks(request):  # needs tools, images, a longer context, ...
            self.metrics.rejected.labels("capability").inc()
            raise refusal(model.name, getattr(model, "mode", ""), missing)
        cards = [m.card for m in leaves(model, distinct=False)]
        fallback = self._fallback_for(model) if allow_fallback else None
        if fallback is not None:
            cards += [m.card for m in leaves(fallback, distinct=False)]
        try:
            reservation = await self.budgets.reserve(
                who, worst_case_cost(cards, request, self.settings.default_max_tokens)
            )
        except OverBudget:
            self.metrics.rejected.labels("budget").inc()
            raise
        self.metrics.in_flight.inc()
        return Call(
            new_trace_id(),
            requested,
            model,
            request,
            who,
            stream,
            session,
            cards,
            reservation,
            stored_request,
            plan,
            policy.mode,
            allow_fallback,
            calibration=calibration,
        )

    # ---- answer ----------------------------------------------------------------------------

    def _fallback_for(self, model: ChatModel) -> ChatModel | None:
        return self.fallback if self.fallback is not None and self.fallback is not model else None

    def _call_fallback(self, call: Call) -> ChatModel | None:
        return self._fallback_for(call.model) if call.allow_fallback else None

    async def complete(self, call: Call) -> Answer:
        return shown(call, await self._complete(call))

    def stream(self, call: Call) -> AsyncIterator[str | Answer]:
        """Text deltas (placeholders restored, even when split across deltas), then one Answer.
        Raises GatewayFailure when nothing can answer."""
        return restored(call, self._stream(call))

    def _answering(self, call: Call) -> tuple[ChatModel, ChatModel | None]:
        """(what answers the call, the fallback if any): the requested model, wrapped in a
        `Fallback` strategy (deadlines, rescue, continuation of a cut stream) when a fallback
        may take over."""
        fb = self._call_fallback(call)
        if fb is None:
            return call.model, None
        wrapped = Fallback(
            "gateway",
            call.model,
            fb,
            timeout_s=self.settings.request_timeout_s,
            backup_timeout_s=self.settings.fallback_timeout_s,
        )
        return wrapped, fb

    def _answer(self, call: Call, response: ChatResponse, fb: ChatModel | None) -> Answer:
        rescue = rescued(response) if fb is not None else None
        if rescue is None:
            return Answer(response, call.model.name)
        primary_error = rescue[1].removeprefix(f"{call.model.name} failed: ")
        return Answer(response, fb.name if fb is not None else rescue[0], True, primary_error)

    def _failure(self, call: Call, error: Exception) -> GatewayFailure:
        """What the client gets when nothing could answer (both failed, or no fallback)."""
        if isinstance(error, FallbackFailed):
            return GatewayFailure(str(error), 504 if error.timed_out else 502)
        self._log_failure(call, error)
        return GatewayFailure(describe(call.model, error), _status(error))

    async def _complete(self, call: Call) -> Answer:
        model, fb = self._answering(call)
        try:  # a Fallback holds its own deadlines
            async with asyncio.timeout(None if fb else self.settings.request_timeout_s):
                response = await model.complete(call.request)
        except Exception as exc:
            raise self._failure(call, exc) from exc
        return self._answer(call, response, fb)

    async def _stream(self, call: Call) -> AsyncIterator[str | Answer]:
        """The answering model's own deltas (placeholders as sent: a fallback's continuation
        gets them so), then one Answer."""
        model, fb = self._answering(call)
        deadline = (
            None if fb else asyncio.get_running_loop().time() + self.settings.request_timeout_s
        )
        try:
            async for item in deltas(model, call.request, deadline):
                if isinstance(item, ChatResponse):
                    yield self._answer(call, item, fb)
                    return
                self._first_token(call)
                call.streamed.append(item)
                yield item
            raise ModelError(f"{model.name}: stream ended without a response")
        except Exception as exc:
            raise self._failure(call, exc) from exc

    def _first_token(self, call: Call) -> None:
        if call.ttft_s is None:
            call.ttft_s = time.perf_counter() - call.t0

    def _log_failure(self, call: Call, error: BaseException) -> None:
        if isinstance(error, ModelError | TimeoutError):
            log.info("%s %s failed: %s", call.trace_id, call.model.name, error)
        else:  # a bug in a strategy: rescued, but loudly
            log.error("%s %s raised", call.trace_id, call.model.name, exc_info=error)

    # ---- finish ----------------------------------------------------------------------------

    async def finish(
        self,
        call: Call,
        answer: Answer | None,
        *,
        status: str = "ok",
        http_status: int = 200,
        error: str | None = None,
    ) -> None:
        """Settle or release, observe, and store the request (exactly once per Call)."""
        if call.finished:
            return
        call.finished = True
        self.metrics.in_flight.dec()
        latency_s = time.perf_counter() - call.t0
        if answer is not None:
            response = answer.response
            usage = response.usage
            cost = usage.cost_usd
            counterfactual = llm_only_cost(self.llm_card, response)
        else:
            usage, response, counterfactual = Usage(), None, 0.0
            cost = (
                partial_cost(call.cards, call.request, sum(map(len, call.streamed)))
                if status == "cancelled"
                else 0.0
            )
            usage.cost_usd = cost
        try:
            if status == "error":
                await self.budgets.release(call.reservation)
            else:
                await self.budgets.settle(call.reservation, cost)
        except Exception:
            log.exception("%s: could not settle the budget reservation", call.trace_id)
        fallback = None
        if answer is not None and answer.fallback:
            fallback = "rescued"
        elif status == "error" and self._call_fallback(call) is not None:
            fallback = "failed"
        self.metrics.observe(
            Outcome(
                call.requested,
                status,
                usage,
                counterfactual,
                latency_s,
                call.ttft_s,
                fallback,
                call.stream,
                sent_by_model(response.trace) if response is not None else {},
            )
        )
        if answer is not None and status == "ok" and self.settings.affinity and call.session:
            self.affinity.pin((call.who.name, call.requested, call.session), answer.response)
        record = trace_record(
            call,
            answer,
            status=status,
            http_status=http_status,
            error=error,
            latency_s=latency_s,
            counterfactual=counterfactual,
            redact=self.settings.redact_store or call.policy_mode != "allow",
        )
        try:
            if status == "cancelled":
                self.store.append_nowait(record)
            else:
                await self.store.append(record)
        except Exception:
            log.exception("%s: could not store the trace", call.trace_id)
        if answer is not None and status == "ok":
            for hook in self.after_finish:
                try:
                    hook(call, answer)
                except Exception:
                    log.exception("%s: an after-finish hook failed", call.trace_id)

    def finish_cancelled(self, call: Call) -> None:
        """The client went away: account for it from a task of its own (the caller is being
        cancelled and cannot await)."""
        if call.finished:
            return
        self._spawn(
            self.finish(
                call, None, status="cancelled", http_status=499, error="client disconnected"
            )
        )

    def finish_later(self, call: Call, answer: Answer) -> None:
        """`store_before_answer: false`: finish (store, settle, metrics, hooks) in a task of
        its own while the client gets its answer. The record is still written once; shutdown
        waits for it (aclose); only a crash in the milliseconds between loses it."""
        self._spawn(self.finish(call, answer))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def shadow_candidates(settings: GatewaySettings) -> set[str]:
    """Strategies configured as shadow candidates (they never answer a user), which may run
    uncalibrated: their answers are what a calibration is fitted on."""
    shadow = getattr(settings, "shadow", None) or {}
    return {str(getattr(s, "candidate", s)) for s in dict(shadow).values()}


def _status(error: BaseException) -> int:
    return 504 if isinstance(error, TimeoutError) else 502
