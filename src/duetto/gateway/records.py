"""One request in the gateway as data: the accepted `Call`, its `Answer`, and the record the
trace store keeps for it (with every stored string redacted when the policy asks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from duetto.gateway.auth import ApiKey
from duetto.gateway.billing import Reservation
from duetto.gateway.leaks import sent_by_tier
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, ModelCard
from duetto.privacy.apply import PrivacyPlan
from duetto.store import TraceRecord


@dataclass(slots=True)
class Answer:
    response: ChatResponse
    answered_by: str
    fallback: bool = False
    primary_error: str | None = None


@dataclass(slots=True)
class Call:
    """One accepted request."""

    trace_id: str
    requested: str
    model: ChatModel
    request: ChatRequest
    who: ApiKey
    stream: bool
    session: str | None
    cards: list[ModelCard]
    reservation: Reservation | None
    stored_request: dict[str, Any]
    privacy: PrivacyPlan | None = None  # None: nothing to decide (allow, or all trusted)
    policy_mode: str = "allow"
    allow_fallback: bool = True  # False: the fallback is untrusted and the request local_only
    t0: float = field(default_factory=time.perf_counter)
    ttft_s: float | None = None
    streamed: list[str] = field(default_factory=list)
    finished: bool = False
    # {"calibration_version": hash | None, "canary": True when a canary decided}: stored
    calibration: dict[str, Any] = field(default_factory=dict)


def llm_only_cost(llm: ModelCard | None, response: ChatResponse) -> float:
    """The counterfactual: the first model call's prompt and the last one's answer, on the LLM.
    An estimate (tokenizers differ); without an LLM it is the actual cost."""
    calls = [s for s in response.trace.leaves() if s.kind == "model" and s.usage.calls]
    if llm is None or not calls:
        return response.usage.cost_usd
    return llm.cost(calls[0].usage.tokens_in, calls[-1].usage.tokens_out)


def trace_record(
    call: Call,
    answer: Answer | None,
    *,
    status: str,
    http_status: int,
    error: str | None,
    latency_s: float,
    counterfactual: float,
    redact: bool,
) -> TraceRecord:
    """The stored record of a call; `redact`: every string in its body through the detector."""
    body: dict[str, Any] = {"request": call.stored_request, "session": call.session}
    body.update(call.calibration)
    if answer is not None:
        r = answer.response
        body.update(
            response=r.text,
            finish_reason=r.finish_reason,
            usage=r.usage.to_dict(),
            trace=r.trace.to_dict(),
        )
        if tiers := sent_by_tier(r.trace):  # what left the device, by risk tier (counts only)
            body["pii_sent_by_tier"] = tiers
        if answer.primary_error:
            body["primary_error"] = answer.primary_error
    else:
        body["response"] = "".join(call.streamed) or None
    if error:
        body["error"] = error
    if redact:
        body = redact_for_storage(body)
    return TraceRecord(
        id=call.trace_id,
        model=call.requested,
        status=status,
        http_status=http_status,
        key=call.who.name,
        answered_by=answer.answered_by if answer else None,
        stream=call.stream,
        fallback=bool(answer and answer.fallback),
        cost_usd=answer.response.usage.cost_usd if answer else 0.0,
        llm_only_cost_usd=counterfactual,
        latency_ms=latency_s * 1000,
        body=body,
    )


def redact_for_storage(value: Any) -> Any:
    """Every string in a stored body with its PII replaced by typed placeholders."""
    from duetto.scoring.pii import detect
    from duetto.scoring.redact import redact

    if isinstance(value, str):
        entities = detect(value)
        return redact(value, entities)[0] if entities else value
    if isinstance(value, dict):
        return {k: redact_for_storage(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_for_storage(v) for v in value]
    return value
