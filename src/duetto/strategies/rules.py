"""Task allocation by rules: operators pin traffic before any learned scorer decides.

A `Rule` has conditions (`when`) and a target model name. All conditions of a rule must hold;
the first matching rule wins. Conditions:

    task       a task name or a list of names (matches `request.task`)
    min_chars  the conversation (all turns) has at least this many characters
    max_chars  ... at most this many characters
    has_pii    true/false: the PII detector finds (or does not find) an entity in the conversation
    api_key    a key or a list of keys (matches `request.metadata["api_key"]`)

`Route` and `Cascade` consult their `Rules` first and record the decision "rule" in the trace.
Matching is pure: no I/O, only the (regex by default) PII detector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from duetto.errors import ConfigError
from duetto.messages import ChatRequest
from duetto.scoring.pii import Entity, detect

CONDITIONS = ("task", "min_chars", "max_chars", "has_pii", "api_key")


def _as_names(value: Any, path: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ConfigError("expected a string or a list of strings", path)


@dataclass(frozen=True)
class Rule:
    """`Rule(when={"task": "math", "min_chars": 200}, target="llm")`."""

    when: Mapping[str, Any]
    target: str
    tasks: frozenset[str] | None = field(init=False, default=None)
    keys: frozenset[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        for key, value in self.when.items():
            path = f"when.{key}"
            if key not in CONDITIONS:
                raise ConfigError(f"unknown rule condition (known: {', '.join(CONDITIONS)})", path)
            if key in ("min_chars", "max_chars") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise ConfigError("expected a non-negative integer", path)
            if key == "has_pii" and not isinstance(value, bool):
                raise ConfigError("expected true or false", path)
        if not self.target:
            raise ConfigError("a rule needs a target model name", "target")
        if "task" in self.when:
            object.__setattr__(self, "tasks", _as_names(self.when["task"], "when.task"))
        if "api_key" in self.when:
            object.__setattr__(self, "keys", _as_names(self.when["api_key"], "when.api_key"))

    @property
    def needs_pii(self) -> bool:
        return "has_pii" in self.when

    def matches(self, request: ChatRequest, has_pii: bool | None = None) -> bool:
        """Whether every condition holds. `has_pii` must be given when the rule tests it."""
        w = self.when
        if self.tasks is not None and request.task not in self.tasks:
            return False
        if self.keys is not None and request.metadata.get("api_key") not in self.keys:
            return False
        n = len(request.text)
        if "min_chars" in w and n < w["min_chars"]:
            return False
        if "max_chars" in w and n > w["max_chars"]:
            return False
        if "has_pii" in w:
            if has_pii is None:
                raise ValueError("this rule tests has_pii: pass has_pii")
            if has_pii != w["has_pii"]:
                return False
        return True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        """`{"when": {...}, "target": "name"}` (the YAML form)."""
        if "target" not in d:
            raise ConfigError("a rule needs a target model name", "target")
        when = d.get("when", {})
        if not isinstance(when, Mapping):
            raise ConfigError("expected a mapping of conditions", "when")
        return cls(when=dict(when), target=str(d["target"]))


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
                raise ConfigError(str(e).split(": ", 1)[-1], f"rules[{i}].{e.path}") from e
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
