"""YAML → typed, validated configuration. Validated once at load; every error names its key.

Three sections, kept apart as in vLLM Semantic Router's config:
  endpoints:   where   (base URLs, the *name* of the env var holding the key, timeouts, retries)
  models:      what    (backend + model card: trust zone, prices, energy, capabilities)
  strategies:  how     (collaboration mode + the models or strategies it composes)
plus `target` (default calibration target) and `privacy` (default policy).

Every section is a pydantic model that forbids unknown keys; a strategy's options are typed per
mode (duetto.options), so a misspelt option or an unknown kind is an error naming its path.
A strategy refers to models and other strategies by name; unknown names and cycles are errors
here, never silent fallbacks at run time. `parse_config` reports every problem at once
(`ConfigError.errors`) and builds nothing. See examples/duetto.yaml for the full reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from duetto.calibrate import Target
from duetto.errors import ConfigError
from duetto.options import (
    AssistOptions,
    CascadeOptions,
    CompressAssistOptions,
    FallbackOptions,
    FuseOptions,
    HintAssistOptions,
    PipelineOptions,
    RedactAssistOptions,
    RouteOptions,
    StageOptions,
    StrategyConfig,
    StrategyOptions,
)
from duetto.privacy.policy import PolicyField, PolicyTable, PolicyTableSpec
from duetto.validation import Strict as _Strict
from duetto.validation import validate_as

__all__ = [  # the strategy options live in duetto.options and are re-exported here
    "AssistOptions",
    "CardConfig",
    "CascadeOptions",
    "CompressAssistOptions",
    "Config",
    "EndpointConfig",
    "FallbackOptions",
    "FuseOptions",
    "GatewayConfig",
    "GatewayKeyConfig",
    "HintAssistOptions",
    "ModelConfig",
    "PipelineOptions",
    "PrivacyConfig",
    "RedactAssistOptions",
    "RouteOptions",
    "StageOptions",
    "StrategyConfig",
    "StrategyOptions",
    "all_errors",
    "build_order",
    "load_config",
    "load_default_config",
    "parse_config",
    "validate",
]


class EndpointConfig(_Strict):
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)


class CardConfig(_Strict):
    name: str | None = None
    location: Literal["local", "remote"] | None = None
    trusted: bool | None = None
    price_in_per_mtok: float = Field(0.0, ge=0)
    price_out_per_mtok: float = Field(0.0, ge=0)
    energy_j_per_token_in: float | None = Field(None, ge=0)
    energy_j_per_token_out: float | None = Field(None, ge=0)
    watts_per_core: float | None = Field(None, ge=0)
    label: str = ""
    source: str = ""
    # Capabilities (routing respects them, docs/routing.md). None: the backend's default
    # (duetto.engine.BACKEND_CAPABILITIES); context_size defaults to n_ctx for the backends
    # that load the model themselves (local, standin), else 8192.
    context_size: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    tools: bool | None = None
    json_schema: bool | None = None
    vision: bool | None = None
    audio: bool | None = None
    logprobs: bool | None = None


class ModelConfig(_Strict):
    backend: Literal["local", "openai", "fake", "replay", "standin"]
    path: str | None = None  # local: "smollm2" (embedded) or a GGUF path; replay: a JSONL file
    endpoint: str | None = None  # openai: a key of `endpoints`
    model: str | None = None  # openai: the upstream model name
    size: str | None = None  # standin: "0.5b" or "1.5b"
    script: dict[str, str] | str | None = None  # fake: scripted answers
    n_ctx: int = Field(4096, gt=0)
    card: CardConfig = Field(default_factory=lambda: CardConfig())


class PrivacyConfig(PolicyTableSpec):
    """`privacy:` one policy for everything (`policy: redact`) or a table (docs/privacy.md):
    `{default, api_keys, routes, strategies}`; API key > route > strategy > default. A policy is
    a mode or `{mode, entity_types, min_score}`. Without any policy everything is `allow`, the
    one default of duetto.privacy.policy."""

    policy: PolicyField | None = None  # the older spelling of `default`
    default: PolicyField | None = None  # type: ignore[assignment]
    detector: Literal["regex", "presidio"] | None = None  # None: presidio if importable

    def table(self) -> PolicyTable:
        spec = self.default if self.default is not None else self.policy
        tables = {"api_keys": self.api_keys, "routes": self.routes, "strategies": self.strategies}
        default = {"default": spec} if spec is not None else {}
        return PolicyTableSpec(**tables, **default).table()


class GatewayKeyConfig(_Strict):
    """One API key of `duetto serve`: the key itself is never in the config, only its env var
    or its SHA-256."""

    name: str
    key_env: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    budget_usd: float | None = Field(None, ge=0)  # None: no budget
    rpm: int | None = Field(None, gt=0)  # requests per minute, per replica; None: no limit
    admin: bool = False  # may load a calibration (POST /admin/calibration)


class ShadowConfig(_Strict):
    """Shadow mode for one served model or strategy (`gateway.shadow.<name>`): users keep its
    answer; a sampled `share` of its requests is also answered in the background by
    `candidate` (a model, a strategy, or "first_stage": the served strategy's first model),
    from a queue of `queue` jobs that drops when full. Both answers are stored and labelled."""

    candidate: str
    share: float = Field(0.2, ge=0, le=1)
    queue: int = Field(256, ge=1)
    workers: int = Field(1, ge=1)
    judge_share: float = Field(0.1, ge=0, le=1)  # of the pairs, judged too (LLM calls)
    timeout_s: float = Field(120.0, gt=0)


class AuditConfig(_Strict):
    """Continuous audit (`gateway.audit`): a `share` of locally answered requests is also sent
    to the LLM in the background and labelled; the live estimate (last `window` audits) is
    compared with the quality `target` (a fraction of LLM-only quality; default: the
    strategy's `quality=` target), and the controller moves a strategy's threshold `step`
    toward the LLM when the interval's lower bound falls below it (after `min_labels` audits
    since its last move)."""

    share: float = Field(0.1, ge=0, le=1)
    judge: str | None = None  # the judge model (default: the LLM)
    judge_share: float = Field(0.1, ge=0, le=1)
    queue: int = Field(256, ge=1)
    workers: int = Field(1, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    window: int = Field(500, ge=10)
    target: float | None = Field(None, ge=0, le=1)
    control: bool = True
    step: float = Field(0.05, gt=0, le=1)
    min_labels: int = Field(30, ge=1)
    refresh_s: float = Field(5.0, gt=0)


class GatewayConfig(_Strict):
    """`duetto serve` only: store, keys, fallback and failure handling (docs/gateway.md)."""

    db: str | None = None  # SQLAlchemy URL; default: SQLite file duetto-gateway.db
    keys: list[GatewayKeyConfig] = Field(default_factory=list)
    fallback: str | None = None  # model or strategy answering when the requested one fails
    request_timeout_s: float = Field(120.0, gt=0)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_s: float = Field(30.0, gt=0)
    affinity: bool = False
    redact_store: bool | None = None  # default: redact when privacy.policy is not "allow"
    # share of the text sent to untrusted models re-scanned off the request path by the
    # slower second opinion (the detector, or the local model's pass): residual leaks
    leak_rescan_share: float = Field(0.05, ge=0, le=1)
    leak_second_opinion: Literal["detector", "model"] = "detector"
    shadow: dict[str, ShadowConfig] = Field(default_factory=dict)  # served name -> its shadow
    audit: AuditConfig | None = None  # None: no continuous audit


class Config(_Strict):
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig]
    strategies: dict[str, StrategyConfig] = Field(default_factory=dict)
    target: str | None = None
    privacy: PrivacyConfig = Field(default_factory=lambda: PrivacyConfig())
    slm: str | None = None  # which model is "the SLM" for baselines (default: first local model)
    llm: str | None = None  # which model is "the LLM" (default: first remote model)
    gateway: GatewayConfig = Field(default_factory=lambda: GatewayConfig())

    def names(self) -> set[str]:
        return set(self.models) | set(self.strategies)

    def llm_name(self) -> str:
        if self.llm:
            return self.llm
        remote = [n for n, m in self.models.items() if m.card.location == "remote"]
        if not remote:
            raise ConfigError("no remote model: name one with `llm:`", "llm")
        return remote[0]

    def slm_name(self) -> str:
        if self.slm:
            return self.slm
        local = [n for n, m in self.models.items() if m.card.location != "remote"]
        if not local:
            raise ConfigError("no local model: name one with `slm:`", "slm")
        return local[0]

    def with_llm_endpoint(self, base_url: str, model: str, api_key_env: str | None) -> Config:
        """The same config with its LLM replaced by a real OpenAI-compatible endpoint."""
        cfg = self.model_copy(deep=True)
        name = cfg.llm_name()
        old = cfg.models[name].card
        cfg.endpoints["llm-endpoint"] = EndpointConfig(base_url=base_url, api_key_env=api_key_env)
        cfg.models[name] = ModelConfig(
            backend="openai",
            endpoint="llm-endpoint",
            model=model,
            card=old.model_copy(
                update={
                    "name": model,
                    "location": "remote",
                    "trusted": False,
                    "label": f"remote LLM at {base_url}",
                }
            ),
        )
        validate(cfg)
        return cfg


Errors = list[tuple[str, str]]  # (path, message)


def validate(cfg: Config) -> None:
    """The checks across sections (names, references, cycles); raises one ConfigError that
    lists every problem found."""
    errors: Errors = []
    names = cfg.names()
    for name in cfg.strategies:
        if name in cfg.models:
            errors.append((f"strategies.{name}", "a strategy cannot share its name with a model"))
    for ename, m in cfg.models.items():
        if m.backend == "openai":
            if not m.endpoint:
                errors.append((f"models.{ename}.endpoint", "an openai model needs `endpoint`"))
            elif m.endpoint not in cfg.endpoints:
                errors.append((f"models.{ename}.endpoint", f"unknown endpoint {m.endpoint!r}"))
    _check_target(cfg.target, "target", errors)
    for sname, s in cfg.strategies.items():
        errors += _check_strategy(cfg, sname, s, names)
    gw = cfg.gateway
    if gw.fallback is not None and gw.fallback not in names:
        errors.append(("gateway.fallback", f"unknown model or strategy {gw.fallback!r}"))
    for served, sh in gw.shadow.items():
        if served not in names:
            errors.append((f"gateway.shadow.{served}", f"unknown model or strategy {served!r}"))
        if sh.candidate != "first_stage" and sh.candidate not in names:
            errors.append((f"gateway.shadow.{served}.candidate", f"unknown {sh.candidate!r}"))
    if gw.audit is not None and gw.audit.judge is not None and gw.audit.judge not in names:
        errors.append(("gateway.audit.judge", f"unknown model or strategy {gw.audit.judge!r}"))
    for i, k in enumerate(gw.keys):
        if not (k.key_env or k.key_sha256):
            errors.append((f"gateway.keys[{i}]", "a key needs `key_env` or `key_sha256`"))
    errors += _check_privacy(cfg)
    for key in ("slm", "llm"):
        ref = getattr(cfg, key)
        if ref is not None and ref not in cfg.models:
            errors.append((key, f"unknown model {ref!r}"))
    if not errors:
        errors += _check_cycles(cfg)
    if errors:
        raise ConfigError(errors[0][1], errors[0][0], errors)


def _check_target(text: str | None, path: str, errors: Errors) -> None:
    if text:
        try:
            Target.parse(text)
        except ConfigError as exc:
            errors.append((path, exc.message))


def _check_strategy(cfg: Config, sname: str, s: StrategyOptions, names: set[str]) -> Errors:
    base = f"strategies.{sname}"
    errors: Errors = [(f"{base}.{sub}", msg) for sub, msg in s.problems()]
    for sub, ref in s.refs():
        if ref not in names:
            known = ", ".join(sorted(names))
            errors.append((f"{base}.{sub}", f"unknown model or strategy {ref!r} (known: {known})"))
    if isinstance(s, CascadeOptions | RouteOptions):
        _check_target(s.target, f"{base}.target", errors)
        for i, rule in enumerate(s.rules or []):
            if rule.target not in s.models:
                msg = f"rule target {rule.target!r} is not one of `models` ({', '.join(s.models)})"
                errors.append((f"{base}.rules[{i}].target", msg))
        # an N-model route picks argmax(quality - lambda*cost): it needs no threshold
        n_route = isinstance(s, RouteOptions) and len(s.models) > 2
        if s.threshold is None and not (s.target or cfg.target or n_route):
            msg = "needs `threshold` or a calibration `target` (here or at the top level)"
            errors.append((f"{base}.threshold", msg))
    return errors


def _check_privacy(cfg: Config) -> Errors:
    """A policy under an unknown name would silently never apply: an error instead."""
    errors: Errors = []
    if cfg.privacy.policy is not None and cfg.privacy.default is not None:
        errors.append(("privacy.policy", "give `default` or `policy` (the same thing), not both"))
    known = [
        ("api_keys", "gateway key", {k.name for k in cfg.gateway.keys}),
        ("routes", "model or strategy", cfg.names()),
        ("strategies", "strategy", set(cfg.strategies)),
    ]
    for section, what, names in known:
        for name in getattr(cfg.privacy, section):
            if name not in names:
                errors.append((f"privacy.{section}.{name}", f"unknown {what} {name!r}"))
    return errors


def _check_cycles(cfg: Config) -> Errors:
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    errors: Errors = []

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in cfg.strategies:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            errors.append((f"strategies.{name}", f"cycle between strategies: {cycle}"))
            return
        state[name] = 1
        for _, ref in cfg.strategies[name].refs():
            visit(ref, [*trail, name])
        state[name] = 2

    for name in cfg.strategies:
        visit(name, [])
    return errors[:1]


def build_order(cfg: Config) -> list[str]:
    """Strategies in dependency order (children first)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in cfg.strategies:
            return
        for _, ref in cfg.strategies[name].refs():
            visit(ref)
        order.append(name)

    for name in cfg.strategies:
        visit(name)
    return order


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate `data` (parsed YAML): every bad key, unknown kind or name is reported at once,
    in one ConfigError (`.errors`); no model is built."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    cfg = validate_as(Config, data)
    validate(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", str(p)) from exc
    return parse_config(data or {}, str(p))


def load_default_config() -> Config:
    """The embedded defaults that `duetto demo` and `duetto serve` run."""
    from importlib.resources import files

    text = files("duetto.data").joinpath("defaults.yaml").read_text()
    return parse_config(yaml.safe_load(text), "duetto/data/defaults.yaml")


def all_errors(path: str | Path) -> list[str]:
    """Every error `duetto validate` prints, as `path: message`."""
    try:
        load_config(path)
    except ConfigError as exc:
        return [f"{p}: {m}" if p else m for p, m in exc.errors]
    return []
