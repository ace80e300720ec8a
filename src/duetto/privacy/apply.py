"""Carry out a privacy decision on one request: what to send, what to restore, or answer locally.

    entities = detect_messages(request)                 # detect once, per message
    plan = plan_request(request, policy, target_card, entities)
    if plan.local:      ...answer with the trusted local model (plan.request is the original)
    else:               send plan.request; show plan.restore(answer) (or plan.restorer() chunks)

Pure apart from `detect_messages` (which runs the process-wide detector) and `use_detector`
(which installs one). The summary for the trace holds counts by type, never the values.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.privacy.policy import Action, PrivacyDecision, PrivacyPolicy
from duetto.scoring.pii import Entity, detect
from duetto.scoring.redact import StreamRestorer, redact_request, restore

log = logging.getLogger("duetto.privacy")

DetectorChoice = Literal["regex", "presidio", "auto"]


@dataclass(frozen=True, slots=True)
class PrivacyPlan:
    policy: PrivacyPolicy
    decision: PrivacyDecision
    request: ChatRequest  # what the chosen model receives (placeholders under REDACT)
    mapping: Mapping[str, str] = field(default_factory=dict)  # placeholder → original value

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def local(self) -> bool:
        """The request must not leave the device: a trusted local model answers."""
        return self.decision.action is Action.LOCAL

    def restore(self, text: str) -> str:
        return restore(text, self.mapping)

    def restorer(self) -> StreamRestorer:
        return StreamRestorer(self.mapping)

    def summary(self) -> dict[str, Any]:
        """For the trace: what was done and why, with counts only (no values)."""
        return {
            "policy": self.policy.mode,
            "action": self.decision.action.value,
            "reason": self.decision.reason,
            "entities": dict(Counter(e.type for e in self.decision.entities)),
            "placeholders": len(self.mapping),
            "leaks": self.decision.leaks,
        }


def detect_messages(
    request: ChatRequest, detector: Callable[[str], list[Entity]] = detect
) -> list[list[Entity]]:
    """The entities of each message (spans relative to that message's content)."""
    return [detector(m.text) if m.text else [] for m in request.messages]


def plan_request(
    request: ChatRequest,
    policy: PrivacyPolicy,
    target: ModelCard,
    entities: Sequence[Sequence[Entity]],
) -> PrivacyPlan:
    """Decide for `target` and apply: under REDACT every message has its counted entities
    replaced (one mapping for the whole conversation) and a system note asks the model to keep
    the placeholders; otherwise the request is unchanged. `entities[i]` belongs to message i."""
    flat = [e for msg in entities for e in msg]
    decision = policy.decide(flat, target)
    if decision.action is not Action.REDACT:
        return PrivacyPlan(policy, decision, request)
    safe, mapping = redact_request(request, [policy.relevant(found) for found in entities])
    return PrivacyPlan(policy, decision, safe, mapping)


def use_detector(choice: DetectorChoice) -> str:
    """Install the process-wide PII detector; returns the one in use ("presidio" or "regex").
    `regex` is every dependency-free rule (`duetto.privacy.rules.rules_detect`: identifiers,
    secrets, labelled fields, addresses, phones); `auto`: Presidio when the privacy extra is
    installed, else `regex`."""
    from duetto.errors import ConfigError
    from duetto.privacy.rules import rules_detect
    from duetto.scoring.pii import set_detector

    if choice == "regex":
        set_detector(rules_detect)
        return "regex"
    try:
        from duetto.privacy.presidio import install

        install()
    except (ConfigError, ImportError) as exc:
        if choice == "presidio":
            raise ConfigError(str(exc), "privacy.detector") from exc
        log.warning("PII detector: regex (Presidio unavailable: %s)", exc)
        set_detector(rules_detect)
        return "regex"
    return "presidio"
