"""YAML → typed, validated configuration. Validated once at load; every error names its key.

Three sections, kept apart as in vLLM Semantic Router's config:
  endpoints:   where   (base URLs, the *name* of the env var holding the key, timeouts, retries)
  models:      what    (backend + model card: trust zone, prices, energy, context size)
  strategies:  how     (collaboration mode + the models or strategies it composes)
plus `target` (default calibration target) and `privacy` (default policy).

A strategy refers to models and other strategies by name; unknown names and cycles are errors
here, never silent fallbacks at run time. See examples/duetto.yaml for the full reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from duetto.calibrate import Target
from duetto.errors import ConfigError

if TYPE_CHECKING:
    from duetto.privacy.policy import PolicyTable

MODES = ("pipeline", "route", "cascade", "assist", "fuse")
# Keys of a strategy that hold references to models or strategies.
REF_KEYS = (
    "models",
    "answerer",
    "helper",
    "compressor",
    "teacher",
    "student",
    "judge",
    "aggregator",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    context_size: int = Field(8192, gt=0)
    label: str = ""
    source: str = ""


class ModelConfig(_Strict):
    backend: Literal["local", "openai", "fake", "replay", "standin"]
    path: str | None = None  # local: "smollm2" (embedded) or a GGUF path; replay: a JSONL file
    endpoint: str | None = None  # openai: a key of `endpoints`
    model: str | None = None  # openai: the upstream model name
    size: str | None = None  # standin: "0.5b" or "1.5b"
    script: dict[str, str] | str | None = None  # fake: scripted answers
    n_ctx: int = Field(4096, gt=0)
    card: CardConfig = Field(default_factory=lambda: CardConfig())


class StrategyConfig(BaseModel):
    """Common keys; mode-specific keys are kept as extras and checked by the engine's builders."""

    model_config = ConfigDict(extra="allow")
    mode: Literal["pipeline", "route", "cascade", "assist", "fuse"]
    threshold: float | None = None
    target: str | None = None
    adaptive: bool = False
    description: str = ""

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


PolicySpec = Literal["allow", "redact", "local_only"] | dict[str, Any]


class PrivacyConfig(_Strict):
    """`privacy:` one policy for everything (`policy: redact`) or a table (docs/privacy.md):
    `{default, api_keys, routes, strategies}`; API key > route > strategy > default. A policy is
    a mode or `{mode, entity_types, min_score}`. Without any policy everything is `allow`."""

    policy: PolicySpec | None = None  # the older spelling of `default`
    default: PolicySpec | None = None
    api_keys: dict[str, PolicySpec] = Field(default_factory=dict)  # gateway key name → policy
    routes: dict[str, PolicySpec] = Field(default_factory=dict)  # requested model name → policy
    strategies: dict[str, PolicySpec] = Field(default_factory=dict)
    detector: Literal["regex", "presidio"] | None = None  # None: presidio if importable

    @model_validator(mode="after")
    def _check_table(self) -> PrivacyConfig:
        if self.policy is not None and self.default is not None:
            raise ValueError("give `default` or `policy` (the same thing), not both")
        try:
            self.table()
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    def table(self) -> PolicyTable:
        from duetto.privacy.policy import PolicyTable

        spec = self.default if self.default is not None else self.policy
        return PolicyTable.parse(
            {
                "default": spec if spec is not None else "allow",
                "api_keys": self.api_keys,
                "routes": self.routes,
                "strategies": self.strategies,
            }
        )


class GatewayKeyConfig(_Strict):
    """One API key of `duetto serve`: the key itself is never in the config, only its env var
    or its SHA-256."""

    name: str
    key_env: str | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    budget_usd: float | None = Field(None, ge=0)  # None: no budget
    rpm: int | None = Field(None, gt=0)  # requests per minute, per replica; None: no limit


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


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _refs(value: Any) -> list[tuple[str, str]]:
    """(sub-path, name) for every reference inside a strategy option."""
    if isinstance(value, str):
        return [("", value)]
    if isinstance(value, list):
        out: list[tuple[str, str]] = []
        for i, v in enumerate(value):
            if isinstance(v, str):
                out.append((f"[{i}]", v))
            elif isinstance(v, dict) and isinstance(v.get("model"), str):
                out.append((f"[{i}].model", v["model"]))
        return out
    if isinstance(value, dict) and isinstance(value.get("model"), str):
        return [(".model", value["model"])]
    return []


def strategy_refs(s: StrategyConfig) -> list[tuple[str, str]]:
    opts = s.options()
    out: list[tuple[str, str]] = []
    for key in (*REF_KEYS, "stages", "verifier", "scorer"):
        if key in opts:
            out += [(key + sub, name) for sub, name in _refs(opts[key])]
    return out


THRESHOLDED = ("route", "cascade")


def validate(cfg: Config) -> None:
    names = cfg.names()
    for name in cfg.strategies:
        if name in cfg.models:
            raise ConfigError("a strategy cannot share its name with a model", f"strategies.{name}")
    for ename, m in cfg.models.items():
        if m.backend == "openai":
            if not m.endpoint:
                raise ConfigError("an openai model needs `endpoint`", f"models.{ename}.endpoint")
            if m.endpoint not in cfg.endpoints:
                raise ConfigError(f"unknown endpoint {m.endpoint!r}", f"models.{ename}.endpoint")
    if cfg.target:
        Target.parse(cfg.target)
    for sname, s in cfg.strategies.items():
        for sub, ref in strategy_refs(s):
            if ref not in names:
                raise ConfigError(
                    f"unknown model or strategy {ref!r} (known: {', '.join(sorted(names))})",
                    f"strategies.{sname}.{sub}",
                )
        if s.target:
            Target.parse(s.target)
        if s.mode in THRESHOLDED and s.threshold is None and not (s.target or cfg.target):
            if s.mode == "route" and len(s.options().get("models", [])) > 2:
                continue  # an N-model route picks argmax(quality - lambda*cost): no threshold
            raise ConfigError(
                "needs `threshold` or a calibration `target` (here or at the top level)",
                f"strategies.{sname}.threshold",
            )
    gw = cfg.gateway
    if gw.fallback is not None and gw.fallback not in names:
        raise ConfigError(f"unknown model or strategy {gw.fallback!r}", "gateway.fallback")
    for i, k in enumerate(gw.keys):
        if not (k.key_env or k.key_sha256):
            raise ConfigError("a key needs `key_env` or `key_sha256`", f"gateway.keys[{i}]")
    _check_privacy_names(cfg)
    for key in ("slm", "llm"):
        ref = getattr(cfg, key)
        if ref is not None and ref not in cfg.models:
            raise ConfigError(f"unknown model {ref!r}", key)
    _check_cycles(cfg)


def _check_privacy_names(cfg: Config) -> None:
    """A policy under an unknown name would silently never apply: an error instead."""
    known = [
        ("api_keys", "gateway key", {k.name for k in cfg.gateway.keys}),
        ("routes", "model or strategy", cfg.names()),
        ("strategies", "strategy", set(cfg.strategies)),
    ]
    for section, what, names in known:
        for name in getattr(cfg.privacy, section):
            if name not in names:
                raise ConfigError(f"unknown {what} {name!r}", f"privacy.{section}.{name}")


def _check_cycles(cfg: Config) -> None:
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in cfg.strategies:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise ConfigError(f"cycle between strategies: {cycle}", f"strategies.{name}")
        state[name] = 1
        for _, ref in strategy_refs(cfg.strategies[name]):
            visit(ref, [*trail, name])
        state[name] = 2

    for name in cfg.strategies:
        visit(name, [])


def build_order(cfg: Config) -> list[str]:
    """Strategies in dependency order (children first)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in cfg.strategies:
            return
        for _, ref in strategy_refs(cfg.strategies[name]):
            visit(ref)
        order.append(name)

    for name in cfg.strategies:
        visit(name)
    return order


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(err["msg"], _path(tuple(err["loc"]))) from exc
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
    """Every error `duetto validate` prints (pydantic reports all field errors at once)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: {exc}"]
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        return [f"{_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
    try:
        parse_config(data, str(path))
    except ConfigError as exc:
        return [str(exc)]
    return []
