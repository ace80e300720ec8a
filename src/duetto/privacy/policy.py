"""What may leave the device: `allow`, `redact` or `local_only`, decided per request.

The decision is a pure function of the detected entities and the target `ModelCard`:

- a trusted target (inside the trusted zone, e.g. the local SLM) always gets the text as is;
- a request with no entity that counts (type in `entity_types`, tier in `tiers`, score >=
  `min_score`) is sent as is;
- otherwise `allow` sends it anyway (the privacy axis counts the entities as leaked),
  `redact` replaces them with placeholders first, and `local_only` keeps the request on the
  device (the local model answers, zero bytes reach the remote one).

Which policy applies to a request is looked up in a `PolicyTable`: the API key's policy
beats the route's, which beats the strategy's, which beats the default. Each is optional.

The one default, everywhere (`PrivacyPolicy()`, `PolicyTable()`, a config without `privacy:`,
the gateway): **`allow`**, i.e. the text is sent as is and every entity sent to an untrusted
model is counted as a leak. Protection is opted into by naming `redact` or `local_only`.

From config, a policy is a mode name (`redact`) or a mapping that names its mode
(`{mode: redact, tiers: [secret, identifier], min_score: 0.5}`; tiers are those of
`duetto.privacy.tiers`: secret, identifier, contact, quasi); both are validated by pydantic
(`PolicySpec`, `PolicyTableSpec`): an unknown key, mode or table is a ConfigError naming its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field

from duetto.errors import ConfigError
from duetto.models.base import ModelCard
from duetto.privacy.tiers import Tier, tier_of
from duetto.scoring.pii import Entity
from duetto.validation import Strict, validate_as

Mode = Literal["allow", "redact", "local_only"]
MODES: tuple[str, ...] = get_args(Mode)


class Action(StrEnum):
    SEND = "send"  # send the request as is
    REDACT = "redact"  # send it with the entities replaced by placeholders
    LOCAL = "local"  # do not send it: answer with the local model


@dataclass(frozen=True, slots=True)
class PrivacyDecision:
    action: Action
    entities: tuple[Entity, ...]  # the entities that count for this decision
    reason: str

    @property
    def leaks(self) -> int:
        """Entities that reach an untrusted model if the caller follows the decision."""
        return len(self.entities) if self.action is Action.SEND else 0


@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    mode: Mode = "allow"  # the one default (module docstring)
    entity_types: frozenset[str] | None = None  # None: every detected type counts
    min_score: float = 0.0
    tiers: frozenset[str] | None = None  # None: every tier counts (privacy.tiers)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown privacy mode {self.mode!r}; expected one of {MODES}")

    def relevant(self, entities: Iterable[Entity]) -> tuple[Entity, ...]:
        return tuple(
            e
            for e in entities
            if e.score >= self.min_score
            and (self.entity_types is None or e.type in self.entity_types)
            and (self.tiers is None or tier_of(e.type) in self.tiers)
        )

    def decide(self, entities: Sequence[Entity], target: ModelCard) -> PrivacyDecision:
        found = self.relevant(entities)
        if target.trusted:
            return PrivacyDecision(Action.SEND, (), f"{target.name} is trusted")
        if not found:
            return PrivacyDecision(Action.SEND, (), "no personal data detected")
        types = ", ".join(sorted({e.type for e in found}))
        if self.mode == "allow":
            return PrivacyDecision(Action.SEND, found, f"policy allow: sending {types}")
        if self.mode == "redact":
            return PrivacyDecision(Action.REDACT, found, f"redacting {types}")
        return PrivacyDecision(Action.LOCAL, found, f"local_only: {types} stays on the device")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | PrivacyPolicy, path: str = "") -> PrivacyPolicy:
        """From config: "redact", or {mode: redact, entity_types: [...], min_score: 0.5}."""
        if isinstance(spec, PrivacyPolicy):
            return spec
        return validate_as(PolicySpec, _as_mapping(spec), path).policy()


def _as_mapping(spec: Any) -> Any:
    return {"mode": spec} if isinstance(spec, str) else spec


class PolicySpec(Strict):
    """One policy as written in config; `mode` is required in the mapping form."""

    mode: Mode
    entity_types: list[str] | None = None  # None: every detected type counts
    tiers: list[Tier] | None = None  # None: every tier counts
    min_score: float = 0.0

    def policy(self) -> PrivacyPolicy:
        types = frozenset(self.entity_types) if self.entity_types is not None else None
        tiers = frozenset(self.tiers) if self.tiers is not None else None
        return PrivacyPolicy(self.mode, entity_types=types, min_score=self.min_score, tiers=tiers)


# A mode name or a mapping, both validated as a PolicySpec.
PolicyField = Annotated[PolicySpec, BeforeValidator(_as_mapping)]


class PolicyTableSpec(Strict):
    """`{default, api_keys: {key: policy}, routes: {...}, strategies: {...}}`."""

    default: PolicyField = Field(default_factory=lambda: PolicySpec(mode="allow"))
    api_keys: dict[str, PolicyField] = Field(default_factory=dict)
    routes: dict[str, PolicyField] = Field(default_factory=dict)
    strategies: dict[str, PolicyField] = Field(default_factory=dict)

    def table(self) -> PolicyTable:
        def one(specs: Mapping[str, PolicySpec]) -> dict[str, PrivacyPolicy]:
            return {name: spec.policy() for name, spec in specs.items()}

        return PolicyTable(
            default=self.default.policy(),
            by_api_key=one(self.api_keys),
            by_route=one(self.routes),
            by_strategy=one(self.strategies),
        )


@dataclass(frozen=True, slots=True)
class PolicyTable:
    """The policy for each API key, route and strategy; the most specific one applies.
    `PolicyTable()` allows everything (the one default: see the module docstring)."""

    default: PrivacyPolicy = field(default_factory=PrivacyPolicy)
    by_api_key: Mapping[str, PrivacyPolicy] = field(default_factory=dict)
    by_route: Mapping[str, PrivacyPolicy] = field(default_factory=dict)
    by_strategy: Mapping[str, PrivacyPolicy] = field(default_factory=dict)

    def for_request(
        self, *, api_key: str | None = None, route: str | None = None, strategy: str | None = None
    ) -> PrivacyPolicy:
        for table, key in (
            (self.by_api_key, api_key),
            (self.by_route, route),
            (self.by_strategy, strategy),
        ):
            if key is not None and key in table:
                return table[key]
        return self.default

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, path: str = "privacy") -> PolicyTable:
        """From config: {default, api_keys: {key: policy}, routes: {...}, strategies: {...}};
        every key optional, the default policy `allow`."""
        return validate_as(PolicyTableSpec, spec or {}, path).table()
