"""Builds models and strategies from a validated Config; owns their lifetimes.

The engine is the one place that knows both the config schema and the constructors, so the
strategies stay free of YAML and the surfaces (CLI, gateway) stay free of constructors.
`cache=True` wraps every leaf model in the evaluator's call cache (duetto eval / demo); `wrap`
adds wrappers of its own (the gateway's circuit breakers), applied to each model, in order,
before the strategies are built. Every leaf gets `pii_counter` (duetto.privacy.leaks.count_by_tier,
the detector in use counted by risk tier, unless given): the privacy axis of everything it builds.

    engine = Engine.from_yaml("duetto.yaml")        # or Engine(load_config(path), ...)
    async with engine:
        cascade = engine.get("cascade", Cascade)   # typed: UserError if it is something else
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from duetto.calibrate import AdaptiveThreshold, Target
from duetto.capabilities import FEATURES
from duetto.config import Config, ModelConfig, StrategyConfig, build_order, load_config
from duetto.errors import ConfigError, UnknownModel, UserError
from duetto.models.base import ChatModel, LeafModel, ModelCard, PiiCounter
from duetto.strategies.base import Tunable

M = TypeVar("M", bound=ChatModel)
# Wraps the model configured under a name (e.g. in a circuit breaker); returns the wrapper.
Wrapper = Callable[[str, ChatModel], ChatModel]


# What each backend can do when its card does not say. local: llama.cpp in process, JSON and
# forced tool calls enforced by a decoding grammar, log-probs computed; openai/standin: an
# OpenAI-compatible server that takes tools, response_format and logprobs (the stand-in is
# served with a tool-calling chat format); replay answers recorded text only; fake (a test
# tool) claims all.
BACKEND_CAPABILITIES: dict[str, frozenset[str]] = {
    "local": frozenset({"tools", "json_schema", "logprobs"}),
    "openai": frozenset({"tools", "json_schema", "logprobs"}),
    "standin": frozenset({"tools", "json_schema", "logprobs"}),
    "replay": frozenset(),
    "fake": frozenset({"tools", "json_schema", "vision", "audio", "logprobs"}),
}


def make_card(name: str, mc: ModelConfig) -> ModelCard:
    c = mc.card
    default_remote = mc.backend in ("openai", "standin")
    location = c.location or ("remote" if default_remote else "local")
    own_ctx = mc.backend in ("local", "standin")  # the model is loaded with n_ctx
    kw: dict[str, Any] = {
        "name": c.name or name,
        "location": location,
        "trusted": c.trusted if c.trusted is not None else location == "local",
        "price_in_per_mtok": c.price_in_per_mtok,
        "price_out_per_mtok": c.price_out_per_mtok,
        # a model loaded with n_ctx holds no more, whatever the card says
        "context_size": min(c.context_size or mc.n_ctx, mc.n_ctx)
        if own_ctx
        else (c.context_size or 8192),
        "max_output_tokens": c.max_output_tokens,
        "label": c.label,
        "source": c.source,
    }
    offered = BACKEND_CAPABILITIES[mc.backend]
    for key in FEATURES:
        value = getattr(c, key)
        kw[key] = value if value is not None else key in offered
    for key in ("energy_j_per_token_in", "energy_j_per_token_out", "watts_per_core"):
        if getattr(c, key) is not None:
            kw[key] = getattr(c, key)
    return ModelCard(**kw)


class Engine:
    def __init__(
        self,
        cfg: Config,
        *,
        cache: bool = False,
        fitted: Mapping[str, Any] | None = None,
        wrap: Wrapper | Sequence[Wrapper] = (),
        pii_counter: PiiCounter | None = None,
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        # What `duetto eval` calibrated (duetto.fitted), applied once the strategies exist.
        self.fitted = fitted
        self.models: dict[str, ChatModel] = {}
        self.strategies: dict[str, ChatModel] = {}
        self._stack = contextlib.AsyncExitStack()
        self._started = False
        self._wrappers: list[Wrapper] = [wrap] if callable(wrap) else list(wrap)
        self._pii_counter = pii_counter

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Engine:
        """An engine over the YAML config at `path` (keyword arguments as for `Engine`)."""
        return cls(load_config(path), **kwargs)

    @property
    def started(self) -> bool:
        return self._started

    def add_wrapper(self, wrap: Wrapper) -> None:
        """One more model wrapper (after those given to the constructor): only before start,
        since the strategies hold the wrapped models."""
        if self._started:
            raise UserError("add_wrapper() after start(): the strategies are already built")
        self._wrappers.append(wrap)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Engine:
        if self._started:
            return self
        try:
            counter = self._pii_counter
            if counter is None:  # the configured detector's entities, by risk tier
                from duetto.privacy.leaks import count_by_tier

                counter = count_by_tier
            for name, mc in self.cfg.models.items():
                model = await self._build_model(name, mc)
                if isinstance(model, LeafModel):
                    model.pii_counter = counter
                if self.cache:
                    from duetto.models.cache import CachedModel

                    model = CachedModel(model)
                for wrap in self._wrappers:
                    model = wrap(name, model)
                self.models[name] = model
            self.strategies = self.build_strategies(self.fitted)
        except BaseException:
            await self.aclose()
            raise
        self._started = True
        return self

    async def aclose(self) -> None:
        for m in self.models.values():
            with contextlib.suppress(Exception):
                await m.aclose()
        await self._stack.aclose()

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- lookup ------------------------------------------------------------------------------
    @overload
    def get(self, name: str) -> ChatModel: ...

    @overload
    def get(self, name: str, cls: type[M]) -> M: ...

    def get(self, name: str, cls: type[ChatModel] = ChatModel) -> ChatModel:
        """The strategy or model called `name` (strategies first), checked to be a `cls`.
        Raises UnknownModel (a UserError and a KeyError) for an unknown name, UserError for
        one of another type."""
        model = self.strategies[name] if name in self.strategies else self.models.get(name)
        if model is None:
            known = ", ".join([*self.strategies, *self.models])
            raise UnknownModel(f"no model or strategy {name!r} (known: {known})")
        if not isinstance(model, cls):
            kind = type(model).__name__
            raise UserError(f"{name!r} is a {kind}, not a {cls.__name__}")
        return model

    @property
    def slm(self) -> ChatModel:
        return self.models[self.cfg.slm_name()]

    @property
    def llm(self) -> ChatModel:
        return self.models[self.cfg.llm_name()]

    def targets(self) -> dict[str, Target]:
        """Calibration target of every thresholded strategy that has no fixed threshold."""
        out: dict[str, Target] = {}
        for name, sc in self.cfg.strategies.items():
            text = sc.target or self.cfg.target
            strat = self.strategies.get(name)
            if text and isinstance(strat, Tunable) and strat.threshold is None:
                out[name] = Target.parse(text)
        return out

    def uncalibrated(self) -> list[str]:
        """Thresholded strategies that cannot decide: no threshold, no calibration, no policy."""
        return [
            name
            for name, strat in self.strategies.items()
            if isinstance(strat, Tunable)
            and strat.threshold is None
            and getattr(strat, "policy", None) is None
        ]

    @property
    def calibration_version(self) -> str | None:
        """The version of the calibration the strategies were built with (duetto.fitted)."""
        from duetto.fitted import version_of

        return version_of(self.fitted)

    def build_strategies(self, fitted: Mapping[str, Any] | None) -> dict[str, ChatModel]:
        """Every strategy, freshly built over this engine's models, with `fitted` applied: the
        way to load a new calibration while serving (build, then swap the dict: requests in
        flight keep the objects they hold). Raises ConfigError for a file that does not fit."""
        built: dict[str, ChatModel] = {}

        def ref(name: str, path: str) -> ChatModel:
            if name in built:
                return built[name]
            if name in self.models:
                return self.models[name]
            raise ConfigError(f"unknown model or strategy {name!r}", path)

        from duetto.build import build_strategy

        for name in build_order(self.cfg):
            sc = self.cfg.strategies[name]
            built[name] = build_strategy(name, sc, ref, self._policy(name, sc))
        if fitted is not None:
            from duetto.fitted import apply_fitted

            apply_fitted(built, fitted)
        return built

    def use_calibration(self, fitted: Mapping[str, Any] | None) -> dict[str, ChatModel]:
        """Build the strategies with `fitted` and make them the served ones (atomically: on
        any error the running strategies and calibration stay). Returns the new strategies."""
        built = self.build_strategies(fitted)
        self.strategies, self.fitted = built, fitted
        return built

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {
            n: {"hits": getattr(m, "hits", 0), "misses": getattr(m, "misses", 0)}
            for n, m in self.models.items()
        }

    # -- models ------------------------------------------------------------------------------
    async def _build_model(self, name: str, mc: ModelConfig) -> ChatModel:
        card = make_card(name, mc)
        if mc.backend == "local":
            from duetto.models.local import LlamaCppModel, smollm2_path

            path = smollm2_path() if mc.path in (None, "smollm2") else Path(str(mc.path))
            return LlamaCppModel(card, path, n_ctx=mc.n_ctx)
        if mc.backend == "openai":
            return self._openai(card, mc)
        if mc.backend == "standin":
            from duetto.models.openai import OpenAIModel
            from duetto.models.standin import StandinServer, fetch_standin

            path = fetch_standin(size=mc.size or "0.5b")
            server = await self._stack.enter_async_context(StandinServer(path, n_ctx=mc.n_ctx))
            return OpenAIModel(card, server.base_url, server.model_name, timeout=120.0, retries=1)
        if mc.backend == "fake":
            from duetto.models.fake import ScriptedModel  # `backend: fake`

            return ScriptedModel(card, mc.script if mc.script is not None else "ok")
        if mc.backend == "replay":
            from duetto.models.replay import ReplayModel

            if not mc.path:
                raise ConfigError("a replay model needs `path` (JSONL)", f"models.{name}.path")
            return ReplayModel.from_jsonl(card, mc.path)
        raise ConfigError(f"unknown backend {mc.backend!r}", f"models.{name}.backend")

    def _openai(self, card: ModelCard, mc: ModelConfig) -> ChatModel:
        import httpx

        from duetto.models.openai import OpenAIModel

        ep = self.cfg.endpoints[str(mc.endpoint)]
        return OpenAIModel(
            card,
            ep.base_url,
            mc.model or card.name,
            api_key_env=ep.api_key_env,
            timeout=httpx.Timeout(ep.timeout_s, connect=ep.connect_timeout_s),
            retries=ep.retries,
        )

    # -- strategies --------------------------------------------------------------------------
    def _policy(self, name: str, sc: StrategyConfig) -> AdaptiveThreshold | None:
        if not sc.adaptive:
            return None
        text = sc.target or self.cfg.target
        if not text:
            raise ConfigError("an adaptive strategy needs a target", f"strategies.{name}.target")
        start = sc.threshold if sc.threshold is not None else 0.5
        return AdaptiveThreshold(Target.parse(text), start=start)
