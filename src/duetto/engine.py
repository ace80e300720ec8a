"""Builds models and strategies from a validated Config; owns their lifetimes.

The engine is the one place that knows both the config schema and the constructors, so the
strategies stay free of YAML and the surfaces (CLI, gateway) stay free of constructors.
`cache=True` wraps every leaf model in the evaluator's call cache (duetto eval / demo).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from duetto.calibrate import AdaptiveThreshold, Target
from duetto.config import Config, ModelConfig, StrategyConfig, build_order
from duetto.errors import ConfigError
from duetto.models.base import ChatModel, ModelCard


def make_card(name: str, mc: ModelConfig) -> ModelCard:
    c = mc.card
    default_remote = mc.backend in ("openai", "standin")
    location = c.location or ("remote" if default_remote else "local")
    kw: dict[str, Any] = {
        "name": c.name or name,
        "location": location,
        "trusted": c.trusted if c.trusted is not None else location == "local",
        "price_in_per_mtok": c.price_in_per_mtok,
        "price_out_per_mtok": c.price_out_per_mtok,
        "context_size": c.context_size,
        "label": c.label,
        "source": c.source,
    }
    for key in ("energy_j_per_token_in", "energy_j_per_token_out", "watts_per_core"):
        if getattr(c, key) is not None:
            kw[key] = getattr(c, key)
    return ModelCard(**kw)


class Engine:
    def __init__(
        self, cfg: Config, *, cache: bool = False, fitted: Mapping[str, Any] | None = None
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        # What `duetto eval` calibrated (duetto.fitted), applied once the strategies exist.
        self.fitted = fitted
        self.models: dict[str, ChatModel] = {}
        self.strategies: dict[str, ChatModel] = {}
        self._stack = contextlib.AsyncExitStack()
        self._started = False
        # Applied to each model before strategies are built (the gateway's circuit breakers).
        self.model_wrappers: list[Callable[[str, ChatModel], ChatModel]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Engine:
        if self._started:
            return self
        try:
            for name, mc in self.cfg.models.items():
                model = await self._build_model(name, mc)
                if self.cache:
                    from duetto.eval.cache import CachedModel

                    model = CachedModel(model)
                for wrap in self.model_wrappers:
                    model = wrap(name, model)
                self.models[name] = model
            for name in build_order(self.cfg):
                self.strategies[name] = self._build_strategy(name, self.cfg.strategies[name])
            if self.fitted is not None:
                from duetto.fitted import apply_fitted

                apply_fitted(self.strategies, self.fitted)
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
    def get(self, name: str) -> ChatModel:
        if name in self.strategies:
            return self.strategies[name]
        if name in self.models:
            return self.models[name]
        raise KeyError(name)

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
            if text and strat is not None and getattr(strat, "threshold", 0.0) is None:
                out[name] = Target.parse(text)
        return out

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
            from duetto.models.fake import ScriptedModel

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
    def _ref(self, ref: str, path: str) -> ChatModel:
        try:
            return self.get(ref)
        except KeyError:
            raise ConfigError(f"unknown model or strategy {ref!r}", path) from None

    def _policy(self, name: str, sc: StrategyConfig) -> AdaptiveThreshold | None:
        if not sc.adaptive:
            return None
        text = sc.target or self.cfg.target
        if not text:
            raise ConfigError("an adaptive strategy needs a target", f"strategies.{name}.target")
        start = sc.threshold if sc.threshold is not None else 0.5
        return AdaptiveThreshold(Target.parse(text), start=start)

    def _build_strategy(self, name: str, sc: StrategyConfig) -> ChatModel:
        from duetto.build import build_strategy

        return build_strategy(name, sc, self._ref, self._policy(name, sc))
