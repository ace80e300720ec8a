"""Typed strategy options (duetto.options) → strategy objects: a mechanical mapping.

The config has already checked every key, kind and name; the engine resolves names
(`ref(name, path)` returns a built model or strategy). Here each options model is mapped to its
constructor; an error a constructor raises (a relative path such as `samples`) is re-pathed under
`strategies.<name>`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duetto.errors import ConfigError
from duetto.models.base import ChatModel
from duetto.options import (
    CascadeOptions,
    CompressAssistOptions,
    FallbackOptions,
    FuseOptions,
    HintAssistOptions,
    JudgeVerifierSpec,
    LearnedVerifierSpec,
    LengthScorerSpec,
    LogprobVerifierSpec,
    PipelineOptions,
    RedactAssistOptions,
    RouteOptions,
    RouterScorerSpec,
    SelfVerifierSpec,
    StrategyOptions,
    TaskPriorScorerSpec,
)
from duetto.strategies.route import FittedTaskPrior
from duetto.strategies.rules import Rule, RuleSpec

Ref = Callable[[str, str], ChatModel]


def _models(names: list[str], ref: Ref, base: str, key: str = "models") -> list[ChatModel]:
    return [ref(n, f"{base}.{key}[{i}]") for i, n in enumerate(names)]


def _one(name: str | None, ref: Ref, path: str) -> ChatModel | None:
    return None if name is None else ref(name, path)


def _rules(specs: list[RuleSpec] | None, names: list[str], models: list[ChatModel]) -> Any:
    """Rule targets are config names from `models`; the strategy matches built models' names."""
    if specs is None:
        return None
    built = {n: m.name for n, m in zip(names, models, strict=True)}
    return [Rule(r.when.model_dump(exclude_none=True), built[r.target]) for r in specs]


def _verifier(o: CascadeOptions, ref: Ref, base: str) -> Any:
    from duetto.scoring import verifiers as V

    spec = o.verifier
    if isinstance(spec, LogprobVerifierSpec):
        return V.LogprobVerifier(missing=spec.missing)
    if isinstance(spec, SelfVerifierSpec):
        return V.SelfVerifier(ref(spec.model, f"{base}.verifier.model"))
    if isinstance(spec, JudgeVerifierSpec):
        return V.JudgeVerifier(ref(spec.model, f"{base}.verifier.model"))
    assert isinstance(spec, LearnedVerifierSpec)
    from duetto.scoring.verifier_learned import LearnedVerifier

    return LearnedVerifier(l2=spec.l2)


def _calibrator(o: CascadeOptions) -> Any:
    from duetto.scoring.verifiers import IsotonicCalibrator, PlattCalibrator

    # a learned verifier already outputs a fitted probability: no second calibration
    default = "none" if isinstance(o.verifier, LearnedVerifierSpec) else "isotonic"
    kind = o.calibrator or default
    return {"isotonic": IsotonicCalibrator, "platt": PlattCalibrator}.get(kind, lambda: None)()


def _scorer(o: RouteOptions) -> Any:
    from duetto.strategies.route import LengthScorer, RouterScorer, TaskPriorScorer

    spec = o.scorer
    if isinstance(spec, TaskPriorScorerSpec):
        return TaskPriorScorer(spec.priors) if spec.priors else FittedTaskPrior()
    if isinstance(spec, LengthScorerSpec):
        return LengthScorer(spec.scale_chars)
    assert isinstance(spec, RouterScorerSpec)
    from duetto.scoring.routers import load_router

    return RouterScorer(load_router(spec.path))  # type: ignore[arg-type]


def _normaliser(kind: str) -> Callable[[str], str | None]:
    from duetto.answers import extract_choice, number_key, text_key

    return {"text": text_key, "number": number_key, "choice": extract_choice}[kind]


def _build(name: str, o: StrategyOptions, ref: Ref, policy: Any) -> ChatModel:
    from duetto import strategies as S

    base = f"strategies.{name}"
    if isinstance(o, CascadeOptions):
        models = _models(o.models, ref, base)
        return S.Cascade(
            name,
            models,
            _verifier(o, ref, base),
            threshold=o.threshold,
            policy=policy,
            pass_draft=o.pass_draft,
            calibrator=_calibrator(o),
            rules=_rules(o.rules, o.models, models),
        )
    if isinstance(o, RouteOptions):
        models = _models(o.models, ref, base)
        return S.Route(
            name,
            models,
            _scorer(o),
            threshold=o.threshold,
            policy=policy,
            rules=_rules(o.rules, o.models, models),
            lam=o.lam,
        )
    if isinstance(o, PipelineOptions):
        stages = [
            S.Stage(
                ref(st.model, f"{base}.stages[{i}].model"),
                role=st.role if st.role is not None else f"stage{i}",
                instruction=st.instruction,
                pass_as=st.pass_as,
                validate=st.check,
            )
            for i, st in enumerate(o.stages)
        ]
        return S.Pipeline(name, stages)
    if isinstance(o, FuseOptions):
        return S.Fuse(
            name,
            _models(o.models, ref, base),
            method=o.method,
            judge=_one(o.judge, ref, f"{base}.judge"),
            aggregator=_one(o.aggregator, ref, f"{base}.aggregator"),
            samples=o.samples,
            normalise=_normaliser(o.normalise),
        )
    if isinstance(o, RedactAssistOptions):
        if o.tiers is None:
            return S.RedactAssist(name, ref(o.answerer, f"{base}.answerer"))
        from duetto.privacy.tiers import in_tiers
        from duetto.scoring.pii import detect

        return S.RedactAssist(name, ref(o.answerer, f"{base}.answerer"), in_tiers(detect, o.tiers))
    if isinstance(o, CompressAssistOptions):
        return S.CompressAssist(
            name,
            _one(o.compressor, ref, f"{base}.compressor"),
            ref(o.answerer, f"{base}.answerer"),
            mode=o.method,
        )
    if isinstance(o, HintAssistOptions):
        teacher = ref(o.teacher, f"{base}.teacher")
        return S.HintAssist(name, teacher, ref(o.student, f"{base}.student"), kind=o.kind)
    if isinstance(o, FallbackOptions):
        from duetto.strategies.fallback import Fallback

        fallback: ChatModel = Fallback(  # on branch i-seam until merged
            name,
            ref(o.primary, f"{base}.primary"),
            ref(o.backup, f"{base}.backup"),
            timeout_s=o.timeout_s,
            continue_streams=o.continue_streams,
        )
        return fallback
    raise ConfigError(f"no builder for mode {o.mode!r}", f"{base}.mode")


def build_strategy(name: str, o: StrategyOptions, ref: Ref, policy: Any = None) -> ChatModel:
    """The strategy `name` described by `o`; `policy` is the adaptive threshold, if any."""
    try:
        return _build(name, o, ref, policy)
    except ConfigError as exc:
        if exc.path.startswith("strategies."):
            raise
        raise exc.under(f"strategies.{name}") from exc
