"""The loop's HTTP side (issue 14): the hook that hands each answered request to the live
loop (`duetto.loop.live`), client feedback, the loop's figures, and its Prometheus metrics.

    POST /v1/feedback   {trace_id, score: 0..1 | true/false | "up"/"down", comment?}
                        authenticated like /v1/chat/completions; 404 for a trace the caller
                        does not own or that does not exist; 400 for a bad body
    GET  /v1/loop       live estimate per strategy, LLM share, saving, queues, controller

`install_loop` wires it into an app: create_app calls it once, and starts/stops the loop in
its lifespan. The hook runs in `Gateway.finish`, after the trace is stored, and only samples
and enqueues: the user's answer never waits for a shadow, an audit or a judge.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from duetto.gateway.protocol import error_body
from duetto.gateway.records import Answer, Call, llm_only_cost
from duetto.gateway.serving import Gateway
from duetto.loop.labels import feedback_score
from duetto.loop.live import Loop, Served
from duetto.loop.store import Label

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("duetto.gateway")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(min_length=1, max_length=64)
    score: float | bool | str
    comment: str | None = Field(None, max_length=4000)


def served_of(gw: Gateway, call: Call, answer: Answer) -> Served:
    response = answer.response
    return Served(
        trace_id=call.trace_id,
        requested=call.requested,
        answered_by=answer.answered_by,
        request=call.request,
        text=response.text,
        local=response.usage.remote_calls == 0,
        remote_ok=call.policy_mode == "allow",
        cost_usd=response.usage.cost_usd,
        llm_only_cost_usd=llm_only_cost(gw.llm_card, response),
    )


def install_loop(app: "FastAPI", gw: Gateway, caller: Callable[..., Any]) -> Loop:
    """The loop of this app: its hook in `gw`, its routes, its metrics (start it in the
    lifespan, after the gateway)."""
    from fastapi import Depends
    from fastapi.responses import JSONResponse

    s = gw.settings
    loop = Loop(gw.engine, gw.store, s.shadow, s.audit)
    app.state.loop = loop

    def hook(call: Call, answer: Answer) -> None:
        # The loop stores answers unredacted and may send them out: a request the privacy
        # policy redacts or keeps local (or a store that must be redacted) is left out.
        if call.policy_mode != "allow" or s.redact_store:
            loop.stats.skipped_private += 1
            return
        loop.observe(served_of(gw, call, answer))

    if loop.active:
        gw.after_finish.append(hook)
    gw.metrics.registry.register(LoopCollector(loop))

    @app.post("/v1/feedback", summary="Client feedback on an answer (a label)")
    async def feedback(body: FeedbackRequest, who: Annotated[Any, Depends(caller)]) -> JSONResponse:
        try:
            score = feedback_score(body.score)
        except ValueError as exc:
            return JSONResponse(
                error_body(str(exc), "invalid_request_error", "invalid_score", "score"), 400
            )
        record = await gw.store.get(body.trace_id)
        if record is None or (who.name is not None and record.key != who.name):
            return JSONResponse(
                error_body(f"No trace {body.trace_id!r}", "invalid_request_error", "not_found"),
                404,
            )
        label = Label(
            record.id,
            record.answered_by or record.model,
            "feedback",
            score,
            strategy=record.model,
            detail={"comment": body.comment, "key": who.name},
        )
        await loop.store.add_label(label)
        loop.stats.labels["feedback"] = loop.stats.labels.get("feedback", 0) + 1
        return JSONResponse(
            {"object": "feedback", "id": label.id, "trace_id": record.id, "score": score}
        )

    @app.get("/v1/loop", summary="The live loop: estimates, shares, queues, controller")
    async def loop_state(_: Annotated[Any, Depends(caller)]) -> dict[str, Any]:
        return loop.snapshot()

    return loop


class LoopCollector:
    """Prometheus metrics of the loop, read from its snapshot at scrape time."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.loop.snapshot()
        q = snap["queues"]
        jobs = CounterMetricFamily(
            "duetto_loop_jobs",
            "Background shadow/audit jobs by queue and outcome",
            labels=["queue", "outcome"],
        )
        depth = GaugeMetricFamily("duetto_loop_queue_depth", "Jobs waiting", labels=["queue"])
        for name, v in q.items():
            for outcome in ("offered", "dropped", "done", "failed"):
                jobs.add_metric([name, outcome], v[outcome])
            depth.add_metric([name], v["depth"])
        yield jobs
        yield depth
        labels = CounterMetricFamily(
            "duetto_loop_labels", "Labels stored by source", labels=["source"]
        )
        for source, n in sorted(snap["labels"].items()):
            labels.add_metric([source], n)
        yield labels
        yield CounterMetricFamily(
            "duetto_loop_judge_calls", "LLM judge calls", value=snap["judge_calls"]
        )
        yield CounterMetricFamily(
            "duetto_loop_judge_cost_usd", "What the judge calls cost", value=snap["judge_cost_usd"]
        )
        yield CounterMetricFamily(
            "duetto_loop_cost_usd",
            "What shadows, audits and judges cost",
            value=snap["loop_cost_usd"],
        )
        gauges = {
            "quality": ("duetto_loop_quality_estimate", "Estimated quality vs LLM-only (audits)"),
            "ci_low": ("duetto_loop_quality_ci_low", "Lower bound of its 95% bootstrap CI"),
            "ci_high": ("duetto_loop_quality_ci_high", "Upper bound of its 95% bootstrap CI"),
            "target": ("duetto_loop_quality_target", "The quality target"),
            "n": ("duetto_loop_audits", "Audits behind the estimate"),
            "llm_share": ("duetto_loop_llm_share", "Share of requests that called the LLM"),
            "saving": ("duetto_loop_saving", "1 - cost / LLM-only cost"),
            "threshold": ("duetto_loop_threshold", "The threshold in force"),
            "threshold_moves": ("duetto_loop_threshold_moves", "Controller moves toward the LLM"),
        }
        fams = {k: GaugeMetricFamily(n, h, labels=["strategy"]) for k, (n, h) in gauges.items()}
        for name, st in snap["strategies"].items():
            est = st.get("quality") or {}
            values = {
                "quality": est.get("mean"),
                "ci_low": est.get("ci_low"),
                "ci_high": est.get("ci_high"),
                "target": est.get("target"),
                "n": est.get("n"),
                "llm_share": st.get("llm_share"),
                "saving": st.get("saving"),
                "threshold": st.get("threshold"),
                "threshold_moves": st.get("threshold_moves"),
            }
            for k, v in values.items():
                if v is not None:
                    fams[k].add_metric([name], float(v))
        yield from fams.values()
