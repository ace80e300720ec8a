"""Task allocation by rules: operators pin traffic before any learned scorer decides.

A `Rule` has conditions (`when`) and a target model name. All conditions of a rule must hold;
the first matching rule wins. Conditions:

    task       a task name or a list of names (matches `request.task`)
    min_chars  the conversation (all turns) has at least this many characters
    max_chars  ... at most this many characters
    has_pii    true/false: the PII detector finds (or does not find) an entity in the conversation
    api_key    a key or a list of keys (matches `request.metadata["api_key"]`)

`Route` and `Cascade` consult their `Rules` first and record the decision "rule" in the trace.
Matching is pure: no I/O, only the (regex by default) PII detector. The conditions are a pydantic
model (`When`, `RuleSpec` for the YAML form): an unknown condition or a bad value is a
ConfigError naming `rules[i].when.<key>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, NonNegativeInt, StrictBool, StrictStr

from duetto.errors import ConfigError
from duetto.messages import ChatRequest
from duetto.scoring.pii import Entity, detect
from duetto.validation import Strict, validate_as

Names = StrictStr | list[StrictStr]


class When(Strict):
    """The conditions of a rule (all must hold); an unknown condition is an error."""

    task: Names | None = None
    min_chars: NonNegativeInt | None = None
    max_chars: NonNegativeInt | None = None
    has_pii: StrictBool | None = None
    api_key: Names | None = None


class RuleSpec(Strict):
    """A rule as written in YAML: `{when: {task: math}, target: llm}`."""

    when: When = Field(default_factory=When)
    target: StrictStr = Field(min_length=1)


def _names(value: str | list[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset([value] if isinstance(value, str) else value)


@dataclass(frozen=True)
class Rule:
    """`Rule(when={"task": "math", "min_chars": 200}, target="llm")`; `when` is checked by
    `When` (a bad condition raises a ConfigError naming `when.<key>`)."""

    when: Mapping[str, Any]
    target: str
    conditions: When = field(init=False, repr=False, compare=False)
    tasks: frozenset[str] | None = field(init=False, default=None)
    keys: frozenset[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        spec = validate_as(RuleSpec, {"when": dict(self.when), "target": self.target})
        object.__setattr__(self, "conditions", spec.when)
        object.__setattr__(self, "tasks", _names(spec.when.task))
        object.__setattr__(self, "keys", _names(spec.when.api_key))

    @property
    def needs_pii(self) -> bool:
        return self.conditions.has_pii is not None

    def matches(self, request: ChatRequest, has_pii: bool | None = None) -> bool:
        """Whether every condition holds. `has_pii` must be given when the rule tests it."""
        w = self.conditions
        if self.tasks is not None and request.task not in self.tasks:
            return False
        if self.keys is not None and request.metadata.get("api_key") not in self.keys:
            return False
        n = len(request.text)
        if w.min_chars is not None and n < w.min_chars:
            return False
        if w.max_chars is not None and n > w.max_chars:
            return False
        if w.has_pii is not None:
            if has_pii is None:
                raise ValueError("this rule tests has_pii: pass has_pii")
            if has_pii != w.has_pii:
                return False
        return True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        """`{"when": {...}, "target": "name"}` (the YAML form)."""
        spec = validate_as(RuleSpec, d)
        return cls(when=spec.when.model_dump(exclude_none=True), target=spec.target)


class Rules:
    """An ordered list of rules; `match` returns the first matching rule's target or None."""

    def __init__(
        self,
        rules: Sequence[Rule | Mapping[str, Any]],
        detector: Callable[[str], list[Entity]] = detect,
    ) -> None:
        built: list[Rule] = []
        for i, r in enumerate(rules):
            try:
                built.append(r if isinstance(r, Rule) else Rule.from_dict(r))
            except ConfigError as e:
                raise e.under(f"rules[{i}]") from e
        self.rules = built
        self.detector = detector

    @property
    def targets(self) -> set[str]:
        return {r.target for r in self.rules}

    def match(self, request: ChatRequest) -> str | None:
        has_pii: bool | None = None
        for rule in self.rules:
            if rule.needs_pii and has_pii is None:
                has_pii = bool(self.detector(request.text))  # detect once, only when asked
            if rule.matches(request, has_pii):
                return rule.target
        return None

    def check_targets(self, names: Sequence[str], owner: str) -> None:
        """Raise a ConfigError naming the rule whose target is not one of `names`."""
        for i, r in enumerate(self.rules):
            if r.target not in names:
                raise ConfigError(
                    f"rule target {r.target!r} is not a model of {owner!r} "
                    f"(models: {', '.join(names)})",
                    f"rules[{i}].target",
                )

    def __len__(self) -> int:
        return len(self.rules)
