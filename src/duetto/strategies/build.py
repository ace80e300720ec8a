"""Mode-specific builders: a StrategyConfig's options → a strategy object.

The engine resolves names (`ref(name, path)` returns a built model or strategy); these builders
only read options and call constructors, turning a bad option into a ConfigError whose path
names the key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from duetto.config import StrategyConfig
from duetto.errors import ConfigError
from duetto.models.base import ChatModel

Ref = Callable[[str, str], ChatModel]


class FittedTaskPrior:
    """P(cheap model is enough) per task type, learned from labelled outcomes.

    `fit(tasks, cheap_correct)` sets each task's prior to the cheap model's (Laplace-smoothed)
    accuracy on it; unseen tasks get the overall accuracy. The evaluator fits it on the
    calibration split before choosing the threshold."""

    def __init__(self, priors: dict[str, float] | None = None, default: float = 0.5) -> None:
        self.priors = dict(priors or {})
        self.default = default

    def fit(self, tasks: Sequence[str | None], correct: Sequence[float]) -> None:
        sums: dict[str, list[float]] = {}
        for t, c in zip(tasks, correct, strict=True):
            sums.setdefault(t or "", []).append(float(c))
        self.priors = {t: (sum(v) + 1) / (len(v) + 2) for t, v in sums.items()}
        n = sum(len(v) for v in sums.values())
        self.default = (sum(sum(v) for v in sums.values()) + 1) / (n + 2)

    def score(self, request: Any) -> float:
        return self.priors.get(request.task or "", self.default)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "task_prior", "priors": dict(self.priors), "default": self.default}

    def load_dict(self, d: dict[str, Any]) -> None:
        """Restore a fit saved by `to_dict` (duetto.fitted)."""
        self.priors = {str(k): float(v) for k, v in d["priors"].items()}
        self.default = float(d["default"])


def _refs(opts: dict[str, Any], key: str, ref: Ref, base: str) -> list[ChatModel]:
    value = opts.get(key)
    if not isinstance(value, list) or not value:
        raise ConfigError("expected a non-empty list of model or strategy names", f"{base}.{key}")
    return [ref(str(v), f"{base}.{key}[{i}]") for i, v in enumerate(value)]


def _one(opts: dict[str, Any], key: str, ref: Ref, base: str, required: bool = True) -> Any:
    value = opts.get(key)
    if value is None:
        if required:
            raise ConfigError("missing", f"{base}.{key}")
        return None
    return ref(str(value), f"{base}.{key}")


def _verifier(spec: Any, ref: Ref, base: str) -> Any:
    from duetto.scoring.verifiers import JudgeVerifier, LogprobVerifier, SelfVerifier

    spec = spec or {"kind": "logprob"}
    if not isinstance(spec, dict):
        raise ConfigError("expected a mapping with `kind`", f"{base}.verifier")
    kind = spec.get("kind", "logprob")
    if kind == "logprob":
        return LogprobVerifier(missing=spec.get("missing", 0.0))
    if kind in ("self", "judge"):
        model = _one(spec, "model", ref, f"{base}.verifier")
        return SelfVerifier(model) if kind == "self" else JudgeVerifier(model)
    if kind == "learned":
        from duetto.scoring.verifier_learned import LearnedVerifier

        return LearnedVerifier(l2=float(spec.get("l2", 1.0)))
    raise ConfigError(
        f"unknown verifier {kind!r} (logprob, self, judge, learned)", f"{base}.verifier.kind"
    )


def _scorer(spec: Any, base: str) -> Any:
    from duetto.strategies.route import LengthScorer, RouterScorer, TaskPriorScorer

    spec = spec or {"kind": "task_prior"}
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "task_prior":
        priors = spec.get("priors")
        return TaskPriorScorer(priors) if priors else FittedTaskPrior()
    if kind == "length":
        return LengthScorer(float(spec.get("scale_chars", 400.0)))
    if kind == "router":
        from duetto.scoring.routers import load_router

        if not spec.get("path"):
            raise ConfigError(
                "a router scorer needs `path` (a saved router)", f"{base}.scorer.path"
            )
        return RouterScorer(load_router(spec["path"]))  # type: ignore[arg-type]
    raise ConfigError(
        f"unknown scorer {kind!r} (task_prior, length, router)", f"{base}.scorer.kind"
    )


def _calibrator(spec: Any, base: str) -> Any:
    from duetto.scoring.verifiers import IsotonicCalibrator, PlattCalibrator

    if spec in (None, "none"):
        return None
    if spec == "isotonic":
        return IsotonicCalibrator()
    if spec == "platt":
        return PlattCalibrator()
    raise ConfigError("expected isotonic, platt or none", f"{base}.calibrator")


def build_strategy(name: str, sc: StrategyConfig, ref: Ref, policy: Any = None) -> ChatModel:
    from duetto import strategies as S

    base = f"strategies.{name}"
    o = sc.options()
    try:
        if sc.mode == "cascade":
            verifier = _verifier(o.get("verifier"), ref, base)
            # a learned verifier already outputs a fitted probability: no second calibration
            default_cal = "none" if hasattr(verifier, "fit") else "isotonic"
            return S.Cascade(
                name,
                _refs(o, "models", ref, base),
                verifier,
                threshold=sc.threshold,
                policy=policy,
                pass_draft=bool(o.get("pass_draft", False)),
                calibrator=_calibrator(o.get("calibrator", default_cal), base),
                rules=o.get("rules"),
            )
        if sc.mode == "route":
            return S.Route(
                name,
                _refs(o, "models", ref, base),
                _scorer(o.get("scorer"), base),
                threshold=sc.threshold,
                policy=policy,
                rules=o.get("rules"),
                lam=float(o.get("lam", 0.0)),
            )
        if sc.mode == "pipeline":
            stages = o.get("stages")
            if not isinstance(stages, list) or not stages:
                raise ConfigError("expected a list of stages", f"{base}.stages")
            return S.Pipeline(
                name,
                [
                    S.Stage(
                        ref(str(st.get("model")), f"{base}.stages[{i}].model"),
                        role=str(st.get("role", f"stage{i}")),
                        instruction=str(st.get("instruction", "")),
                        pass_as=st.get("pass_as", "context"),
                        validate=st.get("validate"),
                    )
                    for i, st in enumerate(stages)
                ],
            )
        if sc.mode == "fuse":
            return S.Fuse(
                name,
                _refs(o, "models", ref, base),
                method=o.get("method", "vote"),
                judge=_one(o, "judge", ref, base, required=False),
                aggregator=_one(o, "aggregator", ref, base, required=False),
                samples=int(o.get("samples", 1)),
            )
        if sc.mode == "assist":
            kind = o.get("kind")
            if kind == "redact":
                return S.RedactAssist(name, _one(o, "answerer", ref, base))
            if kind == "compress":
                return S.CompressAssist(
                    name,
                    _one(o, "compressor", ref, base, required=False),
                    _one(o, "answerer", ref, base),
                    mode=o.get("method", "extract"),
                )
            if kind in ("hints", "fewshot"):
                return S.HintAssist(
                    name, _one(o, "teacher", ref, base), _one(o, "student", ref, base), kind=kind
                )
            raise ConfigError("expected kind redact, compress, hints or fewshot", f"{base}.kind")
    except ConfigError as exc:
        if exc.path.startswith("strategies."):
            raise
        raise ConfigError(str(exc).split(": ", 1)[-1], f"{base}.{exc.path}") from exc
    raise ConfigError(f"unknown mode {sc.mode!r}", f"{base}.mode")
