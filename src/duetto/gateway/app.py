"""The OpenAI-compatible HTTP surface of duetto: `create_app(engine, settings)`.

    POST /v1/chat/completions   stream and non-stream; the model name picks a strategy or model
    POST /v1/embeddings         the local MiniLM (gateway/embeddings.py)
    GET  /v1/models             strategies and raw models, with their capabilities
    POST /v1/feedback, GET /v1/loop   the live loop (gateway/loop_routes.py)
    GET  /v1/traces/{id}        a stored request with its trace (the caller's own)
    GET  /health, /metrics      liveness and Prometheus
    GET  /dashboard             live page (static HTML+JS), fed by /dashboard/data

Every chat response carries `x-duetto-trace-id`. Everything is built inside `create_app` (no
module globals); FastAPI is imported here only, so `import duetto` stays light.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at definition
# time, and their types are imported inside create_app.

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Annotated, Any

from duetto.engine import Engine
from duetto.errors import GatewayFailure, Rejected
from duetto.gateway import embeddings
from duetto.gateway.loop_routes import install_loop
from duetto.gateway.metrics import GatewayMetrics
from duetto.gateway.protocol import (
    ChatCompletionRequest,
    ChunkWriter,
    ErrorBody,
    completion,
    duetto_block,
    error_body,
    to_chat_request,
)
from duetto.gateway.records import Answer, Call
from duetto.gateway.serving import Gateway
from duetto.gateway.settings import GatewaySettings
from duetto.store import TraceStore

if TYPE_CHECKING:
    from fastapi import FastAPI

TRACE_HEADER = "x-duetto-trace-id"
SESSION_HEADER = "x-duetto-session"

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "Malformed or invalid request (OpenAI answers 400, not 422)"),
        (401, "Missing or wrong API key"),
        (404, "Unknown model or trace"),
        (429, "Rate limit or budget exceeded"),
        (502, "The model and its fallback failed"),
        (504, "The model and its fallback timed out"),
    ]
}


def create_app(engine: Engine, settings: GatewaySettings | None = None) -> "FastAPI":
    """Build the gateway around an Engine (started here if it was not). Pass an engine that has
    not started yet to get a circuit breaker in front of each remote model.

    Without `settings`, they come from the engine's config (`GatewaySettings.from_config`),
    with the same defaults as `duetto serve`."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    if settings is None:
        cfg = getattr(engine, "cfg", None)
        settings = GatewaySettings.from_config(cfg) if cfg is not None else GatewaySettings()
    store = TraceStore(settings.db, prefix=settings.store_prefix)
    metrics = GatewayMetrics()
    gw = Gateway(engine, settings, store, metrics)
    if isinstance(engine, Engine) and not engine.started:
        engine.add_wrapper(gw.wrap_model)
    static = files("duetto.gateway").joinpath("static")
    page = static.joinpath("dashboard.html").read_text()
    script = static.joinpath("dashboard.js").read_text()

    @contextlib.asynccontextmanager
    async def lifespan(_: "FastAPI") -> AsyncIterator[None]:
        await store.start()
        try:
            await engine.start()
            await gw.start()
            await loop.start()
            yield
        finally:
            await loop.aclose()
            await gw.aclose()
            with contextlib.suppress(Exception):
                await engine.aclose()
            await store.close()

    app = FastAPI(
        title="duetto gateway",
        version="1",
        lifespan=lifespan,
        description="OpenAI-compatible gateway applying duetto strategies.",
    )
    app.state.gateway = gw
    app.state.store = store
    app.state.billing = gw.billing
    app.state.metrics = metrics

    def error(
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        return JSONResponse(
            error_body(message, kind, code, param), status_code=status, headers=headers
        )

    class ApiError(Exception):
        def __init__(self, response: JSONResponse) -> None:
            self.response = response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        metrics.rejected.labels("invalid").inc()
        if errs and (
            errs[0].get("type") == "json_invalid" or tuple(errs[0].get("loc", ())) == ("body",)
        ):
            return error(
                400,
                f"Malformed JSON body: {errs[0].get('msg')}",
                "invalid_request_error",
                "invalid_json",
            )
        parts = []
        for e in errs[:5]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {e.get('msg')}")
        first = ".".join(str(p) for p in errs[0].get("loc", ()) if p != "body") if errs else None
        return error(
            400,  # OpenAI's status for a bad request: clients catch BadRequestError
            "Invalid request: " + "; ".join(parts),
            "invalid_request_error",
            "invalid_request",
            first or None,
        )

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return error(
            404,
            f"No route {request.method} {request.url.path}",
            "invalid_request_error",
            "not_found",
        )

    @app.exception_handler(405)
    async def _bad_method(request: Request, _: Exception) -> JSONResponse:
        return error(
            405,
            f"Method {request.method} not allowed on {request.url.path}",
            "invalid_request_error",
            "method_not_allowed",
        )

    bearer = HTTPBearer(auto_error=False, description="An API key from the gateway config")

    async def caller(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Any:
        who = await gw.keys.authenticate(creds.credentials if creds else None)
        if who is None:
            metrics.rejected.labels("auth").inc()
            raise ApiError(
                error(
                    401, "Incorrect or missing API key", "invalid_request_error", "invalid_api_key"
                )
            )
        return who

    loop = install_loop(app, gw, caller)

    @app.post(
        "/v1/chat/completions",
        responses=_ERRORS,
        response_model=None,
        summary="Chat completion (OpenAI-compatible)",
    )
    async def chat(
        body: ChatCompletionRequest, request: Request, who: Annotated[Any, Depends(caller)]
    ) -> Response:
        t0 = time.perf_counter()
        try:
            chat_request = to_chat_request(body)  # unset options stay unset
        except ValueError as exc:  # a message the schema admits but the core types refuse
            metrics.rejected.labels("invalid").inc()
            raise ApiError(error(400, str(exc), "invalid_request_error", None, "messages")) from exc
        session = request.headers.get(SESSION_HEADER) or body.user
        stored = {
            "messages": [m.to_dict() for m in chat_request.messages],
            "max_tokens": chat_request.max_tokens,
            "stream": bool(body.stream),
        }
        try:
            call = await gw.admit(
                who,
                body.model,
                chat_request,
                stream=bool(body.stream),
                session=session,
                stored_request=stored,
            )
        except Rejected as exc:
            headers = {"retry-after": f"{exc.retry_after:.0f}"} if exc.retry_after else None
            return error(
                exc.status,
                str(exc),
                exc.kind,
                exc.code,
                "model" if exc.status == 404 else None,
                headers,
            )
        call.t0 = t0
        headers = {TRACE_HEADER: call.trace_id}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(
                call, body.model, include_usage, headers, request.receive, bool(body.logprobs)
            )
        task = asyncio.ensure_future(gw.complete(call))
        if not await _done_unless_disconnected(task, request.receive):
            gw.finish_cancelled(call)
            return Response(status_code=499, headers=headers)
        try:
            answer = task.result()
        except GatewayFailure as exc:
            await gw.finish(call, None, status="error", http_status=exc.status, error=str(exc))
            return error(exc.status, str(exc), "upstream_error", "upstream_failed", headers=headers)
        if gw.settings.store_before_answer:
            await gw.finish(call, answer)
        else:
            gw.finish_later(call, answer)
        extra = duetto_block(call.trace_id, answer.response, answer.answered_by, answer.fallback)
        return JSONResponse(
            completion(
                call.trace_id, body.model, answer.response, extra, logprobs=bool(body.logprobs)
            ),
            headers=headers,
        )

    async def _stream(
        call: Call,
        model: str,
        include_usage: bool,
        headers: dict[str, str],
        receive: Callable[[], Awaitable[Any]],
        logprobs: bool = False,
    ) -> Response:
        events = gw.stream(call)
        # The first item before any byte: a failure here is still a proper HTTP error.
        task = asyncio.ensure_future(anext(events))
        if not await _done_unless_disconnected(task, receive):
            gw.finish_cancelled(call)
            return Response(status_code=499, headers=headers)
        try:
            first: str | Answer = task.result()
        except GatewayFailure as exc:
            await gw.finish(call, None, status="error", http_status=exc.status, error=str(exc))
            return error(exc.status, str(exc), "upstream_error", "upstream_failed", headers=headers)
        except BaseException:
            gw.finish_cancelled(call)
            raise
        writer = ChunkWriter(call.trace_id, model, include_usage, logprobs=logprobs)

        async def sse() -> AsyncIterator[bytes]:
            item = first
            try:
                yield writer.role()
                while True:
                    if isinstance(item, Answer):
                        if gw.settings.store_before_answer:  # stored before the client sees the end
                            await gw.finish(call, item)
                        else:
                            gw.finish_later(call, item)
                        r = item.response
                        extra = duetto_block(call.trace_id, r, item.answered_by, item.fallback)
                        yield writer.finish(r, extra) + ChunkWriter.DONE
                        return
                    yield writer.delta(item)
                    item = await anext(events)
            except GatewayFailure as exc:
                await gw.finish(call, None, status="error", http_status=exc.status, error=str(exc))
                yield ChunkWriter.error(str(exc), "upstream_error", "upstream_failed")
            except (asyncio.CancelledError, GeneratorExit):
                gw.finish_cancelled(call)  # the client went away: upstream call cancelled
                raise

        return StreamingResponse(
            sse(), media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"}
        )

    app.include_router(embeddings.router(caller))  # POST /v1/embeddings (local MiniLM)

    @app.get("/v1/models", responses=_ERRORS, summary="Strategies and raw models")
    async def list_models(_: Annotated[Any, Depends(caller)]) -> dict[str, Any]:
        data = []
        for name, m in gw.names():
            mode = getattr(m, "mode", None)
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "duetto",
                    "duetto": {
                        "kind": "strategy" if mode else "model",
                        "mode": mode,
                        "location": m.card.location,
                        # a strategy: what some candidate offers (a pipeline: every stage)
                        "capabilities": m.capabilities(),
                    },
                }
            )
        if (entry := embeddings.model_entry()) is not None:
            data.append(entry)
        return {"object": "list", "data": data}

    @app.get("/v1/traces/{trace_id}", responses=_ERRORS, summary="A stored request and trace")
    async def get_trace(trace_id: str, who: Annotated[Any, Depends(caller)]) -> Response:
        record = await store.get(trace_id) if len(trace_id) <= 64 else None
        if record is None or (who.name is not None and record.key != who.name):
            return error(404, f"No trace {trace_id!r}", "invalid_request_error", "not_found")
        data = record.to_dict()
        extra = await loop.store.for_trace(trace_id)
        if extra["shadows"] or extra["labels"]:
            data["loop"] = extra  # shadow/audit answers and labels, stored beside the trace
        return JSONResponse(data)

    @app.get("/health", summary="Liveness and upstream breaker states")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "store": store.dialect,
            "models": sorted(gw.engine.models),
            "strategies": sorted(gw.engine.strategies),
            "breakers": {n: b.state for n, b in gw.breakers.items()},
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        data, ctype = metrics.render()
        return Response(data, media_type=ctype)

    from duetto.gateway.admin import install_admin

    install_admin(app, gw, loop)  # /admin/calibration

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/dashboard/dashboard.js", include_in_schema=False)
    async def dashboard_js() -> Response:
        return Response(script, media_type="application/javascript")

    @app.get("/dashboard/data", summary="Live figures for the dashboard")
    async def dashboard_data() -> dict[str, Any]:
        snap = metrics.live.snapshot(time.time())
        snap["breakers"] = {n: b.state for n, b in gw.breakers.items()}
        snap["llm"] = gw.llm_card.name if gw.llm_card else None
        snap["loop"] = loop.snapshot()
        return snap

    return app


async def _done_unless_disconnected(
    task: asyncio.Future[Any], receive: Callable[[], Awaitable[Any]]
) -> bool:
    """Wait for `task`; if the client disconnects first, cancel it and return False."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not watcher.done():
            watcher.cancel()
    if task.done():
        return True
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return False
