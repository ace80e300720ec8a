"""The typed options of each strategy mode, as written under `strategies:` in YAML.

`StrategyConfig` is a union discriminated by `mode` (the assist mode again by `kind`); every
model forbids unknown keys, so a misspelt option is an error naming its path, never ignored.
Verifiers, scorers and rules are typed the same way. Each options model lists the models and
strategies it refers to (`refs()`), which the config checks for unknown names and cycles.
`duetto.build` maps each model to its constructor; examples/duetto.yaml shows every key.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from duetto.privacy.tiers import Tier
from duetto.strategies.rules import RuleSpec
from duetto.validation import Strict

Refs = list[tuple[str, str]]  # (sub-path, name), e.g. ("models[1]", "llm")


def _default_kind(kind: str) -> BeforeValidator:
    """A mapping without `kind` means `kind`; `None` means the default spec."""

    def fill(value: Any) -> Any:
        if value is None:
            return {"kind": kind}
        return {"kind": kind, **value} if isinstance(value, dict) else value

    return BeforeValidator(fill)


def _listed(key: str, names: list[str]) -> Refs:
    return [(f"{key}[{i}]", n) for i, n in enumerate(names)]


# --- verifiers (cascade) ----------------------------------------------------------------------


class LogprobVerifierSpec(Strict):
    kind: Literal["logprob"] = "logprob"
    missing: float = 0.0  # the score of an answer without token log-probabilities


class SelfVerifierSpec(Strict):
    kind: Literal["self"]
    model: str  # AutoMix-style: this model checks the draft


class JudgeVerifierSpec(Strict):
    kind: Literal["judge"]
    model: str  # this model grades the draft


class LearnedVerifierSpec(Strict):
    kind: Literal["learned"]
    l2: float = Field(1.0, ge=0)  # ridge penalty of the logistic fit


VerifierSpec = Annotated[
    LogprobVerifierSpec | SelfVerifierSpec | JudgeVerifierSpec | LearnedVerifierSpec,
    Field(discriminator="kind"),
    _default_kind("logprob"),
]

# --- scorers (route) --------------------------------------------------------------------------


class TaskPriorScorerSpec(Strict):
    kind: Literal["task_prior"] = "task_prior"
    priors: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None  # None: fitted


class LengthScorerSpec(Strict):
    kind: Literal["length"]
    scale_chars: float = Field(400.0, gt=0)


class RouterScorerSpec(Strict):
    kind: Literal["router"]
    path: str = Field(min_length=1)  # a router saved with Router.save


ScorerSpec = Annotated[
    TaskPriorScorerSpec | LengthScorerSpec | RouterScorerSpec,
    Field(discriminator="kind"),
    _default_kind("task_prior"),
]

Calibrator = Literal["isotonic", "platt", "none"]

# --- the modes --------------------------------------------------------------------------------


class _Options(Strict):
    description: str = ""  # for people (reports, docs); duetto does not act on it

    def refs(self) -> Refs:
        return []

    def problems(self) -> Refs:
        """(sub-path, message) for keys that are valid alone but not together."""
        return []


class _Fixed(_Options):
    """A mode without a threshold: `threshold`, `target` and `adaptive` are not its keys."""

    threshold: ClassVar[float | None] = None
    target: ClassVar[str | None] = None
    adaptive: ClassVar[bool] = False


class _Thresholded(_Options):
    threshold: float | None = None  # fixed; otherwise calibrated to `target`
    target: str | None = None  # calibration target (default: the top-level `target`)
    adaptive: bool = False  # hold the target online
    models: list[str] = Field(min_length=2)
    rules: list[RuleSpec] | None = None  # targets are names from `models`

    def refs(self) -> Refs:
        return _listed("models", self.models)


class CascadeOptions(_Thresholded):
    mode: Literal["cascade"]
    verifier: VerifierSpec = Field(default_factory=LogprobVerifierSpec)
    calibrator: Calibrator | None = None  # None: isotonic, or none for a learned verifier
    pass_draft: bool = False

    def refs(self) -> Refs:
        out = super().refs()
        if isinstance(self.verifier, SelfVerifierSpec | JudgeVerifierSpec):
            out.append(("verifier.model", self.verifier.model))
        return out


class RouteOptions(_Thresholded):
    mode: Literal["route"]
    scorer: ScorerSpec = Field(default_factory=TaskPriorScorerSpec)
    lam: float = 0.0  # N models: argmax(quality - lam * cost)


class StageOptions(Strict):
    model: str
    role: str | None = None  # default: stage<i>
    instruction: str = ""
    pass_as: Literal["context", "draft", "replace"] = "context"
    # a regex or a JSON schema the stage's output must satisfy
    check: str | dict[str, Any] | None = Field(None, alias="validate")


class PipelineOptions(_Fixed):
    mode: Literal["pipeline"]
    stages: list[StageOptions] = Field(min_length=1)

    def refs(self) -> Refs:
        return [(f"stages[{i}].model", s.model) for i, s in enumerate(self.stages)]


class FuseOptions(_Fixed):
    mode: Literal["fuse"]
    models: list[str] = Field(min_length=1)
    method: Literal["vote", "weighted", "judge", "aggregate"] = "vote"
    judge: str | None = None  # method judge
    aggregator: str | None = None  # method aggregate
    samples: int = Field(1, ge=1)  # answers per model
    normalise: Literal["text", "number", "choice"] = "text"  # how votes are compared

    def refs(self) -> Refs:
        out = _listed("models", self.models)
        out += [(k, v) for k, v in (("judge", self.judge), ("aggregator", self.aggregator)) if v]
        return out

    def problems(self) -> Refs:
        out: Refs = []
        if self.method == "judge" and self.judge is None:
            out.append(("judge", "method judge needs a judge model"))
        if self.method == "aggregate" and self.aggregator is None:
            out.append(("aggregator", "method aggregate needs an aggregator model"))
        if len(self.models) * self.samples < 2:
            out.append(("samples", "a fusion needs at least two candidates (models × samples)"))
        return out


class RedactAssistOptions(_Fixed):
    mode: Literal["assist"]
    kind: Literal["redact"]
    answerer: str
    tiers: list[Tier] | None = None  # what is replaced (duetto.privacy.tiers); None: every tier

    def refs(self) -> Refs:
        return [("answerer", self.answerer)]


class CompressAssistOptions(_Fixed):
    mode: Literal["assist"]
    kind: Literal["compress"]
    answerer: str
    compressor: str | None = None  # needed by method llm
    method: Literal["extract", "llm"] = "extract"

    def refs(self) -> Refs:
        out = [("answerer", self.answerer)]
        return out + ([("compressor", self.compressor)] if self.compressor else [])

    def problems(self) -> Refs:
        if self.method == "llm" and self.compressor is None:
            return [("compressor", "method llm needs a compressor model")]
        return []


class HintAssistOptions(_Fixed):
    mode: Literal["assist"]
    kind: Literal["hints", "fewshot"]
    teacher: str
    student: str

    def refs(self) -> Refs:
        return [("teacher", self.teacher), ("student", self.student)]


AssistOptions = Annotated[
    RedactAssistOptions | CompressAssistOptions | HintAssistOptions,
    Field(discriminator="kind"),
]


class FallbackOptions(_Fixed):
    """`primary` answers under `timeout_s`; on failure `backup` does (and continues a broken
    stream when `continue_streams`)."""

    mode: Literal["fallback"]
    primary: str
    backup: str
    timeout_s: float | None = Field(None, gt=0)
    continue_streams: bool = True

    def refs(self) -> Refs:
        return [("primary", self.primary), ("backup", self.backup)]


StrategyConfig = Annotated[
    CascadeOptions | RouteOptions | PipelineOptions | FuseOptions | AssistOptions | FallbackOptions,
    Field(discriminator="mode"),
]
StrategyOptions = (
    CascadeOptions
    | RouteOptions
    | PipelineOptions
    | FuseOptions
    | RedactAssistOptions
    | CompressAssistOptions
    | HintAssistOptions
    | FallbackOptions
)
