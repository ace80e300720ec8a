"""The privacy policy at the gateway's boundary:

- which model answers `local_only` requests (the local model, else a trusted fallback);
- a request's plan (detect once; redact, or keep it local) when the models that may answer it
  can reach an untrusted model;
- the answer as the client sees it: placeholders restored (streams too, even when one is split
  across deltas), the trace saying what the policy did (counts only, never values).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from duetto.errors import ConfigError
from duetto.gateway.breaker import leaves
from duetto.gateway.records import Answer, Call
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel
from duetto.privacy.apply import PrivacyPlan, detect_messages, plan_request
from duetto.privacy.policy import PolicyTable, PrivacyPolicy


def trusted_local(table: PolicyTable, candidates: Iterable[ChatModel | None]) -> ChatModel | None:
    """The first trusted candidate; None if there is none and no policy is `local_only`."""
    for model in candidates:
        if model is not None and model.card.trusted:
            return model
    policies = [
        table.default,
        *table.by_api_key.values(),
        *table.by_route.values(),
        *table.by_strategy.values(),
    ]
    if any(p.mode == "local_only" for p in policies):
        raise ConfigError(
            "a local_only policy needs a trusted local model (`slm:`) or a "
            "trusted `gateway.fallback`",
            "privacy",
        )
    return None


def plan_for(
    request: ChatRequest, policy: PrivacyPolicy, models: Iterable[ChatModel | None]
) -> PrivacyPlan | None:
    """Apply the policy only when one of `models` (the requested one, the fallback that may
    take over) can reach an untrusted model. `allow` needs no decision: the privacy axis
    counts what leaves (LeafModel.pii_sent)."""
    if policy.mode == "allow":
        return None
    candidates = [leaf for m in models if m is not None for leaf in leaves(m)]
    target = next((m.card for m in candidates if not m.card.trusted), None)
    if target is None:
        return None
    return plan_request(request, policy, target, detect_messages(request))


def shown(call: Call, answer: Answer) -> Answer:
    """The answer as the client sees it: placeholders restored, the trace saying what the
    privacy policy did."""
    plan = call.privacy
    if plan is None:
        return answer
    answer.response.text = plan.restore(answer.response.text)
    summary = plan.summary()
    if plan.local:
        summary["requested"] = call.requested
    answer.response.trace.extra["privacy"] = summary
    return answer


async def restored(call: Call, items: AsyncIterator[str | Answer]) -> AsyncIterator[str | Answer]:
    """A stream of deltas then one Answer, with placeholders restored."""
    restorer = call.privacy.restorer() if call.privacy is not None else None
    async for item in items:
        if isinstance(item, Answer):
            if restorer is not None and (tail := restorer.flush()):
                yield tail
            yield shown(call, item)
            return
        if restorer is None:
            yield item
        elif text := restorer.feed(item):
            yield text
