"""`duetto serve [CONFIG]`: the OpenAI-compatible gateway (needs the `serve` extra)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli._errors import fail


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    config: Annotated[Path | None, typer.Argument(help="YAML config (default: the demo's)")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    db: Annotated[
        str | None,
        typer.Option(help="Trace store: a SQLite path or a SQLAlchemy URL (postgresql://...)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="calibration.json written by `duetto fit`/`duetto eval`/`duetto demo`: "
            "thresholds, calibrators and fitted scorers for the config's strategies (default "
            "without CONFIG: the shipped one; a calibration promoted in the store wins)"
        ),
    ] = None,
    store_before_answer: Annotated[
        bool,
        typer.Option(
            "--store-before-answer/--answer-first",
            help="commit each request's record before the client gets the end of its answer "
            "(a kill -9 never loses an answered request), or answer first and store right "
            "after (less latency; a crash in between loses those records)",
        ),
    ] = True,
) -> None:
    """Serve the config's strategies and models behind an OpenAI-compatible API."""
    import logging

    from rich.console import Console

    from duetto.config import load_config, load_default_config
    from duetto.errors import UserError
    from duetto.fitted import check_fitted, default_calibration, load_fitted, uncalibrated

    console = Console(stderr=True)
    try:
        import uvicorn

        from duetto.engine import Engine
        from duetto.gateway import GatewaySettings, create_app
    except ImportError as exc:
        fail(f"{exc.name} is missing: pip install 'duetto[serve]'")
    try:
        cfg = load_config(config) if config else load_default_config()
        fitted = load_fitted(calibration) if calibration else None
        if fitted is None and config is None:
            fitted = default_calibration()  # scripts/make_default_calibration.py made it
        if fitted is not None:
            check_fitted(fitted, cfg.strategies)
        # the serve defaults (detector, the embedded config's SLM fallback) live in settings
        settings = GatewaySettings.from_config(cfg, db=db)
        settings.store_before_answer = store_before_answer
        from duetto.gateway.serving import shadow_candidates

        missing = [n for n in uncalibrated(cfg, fitted) if n not in shadow_candidates(settings)]
        if missing:
            # a calibration promoted earlier may be in the store: the gateway looks there
            console.print(
                f"[yellow]note:[/] {', '.join(missing)}: no threshold and no calibration given; "
                "the gateway refuses to start unless its store holds a promoted one (make one "
                "with `duetto fit STORE`, pass --calibration FILE, or set `threshold:`)"
            )
    except UserError as exc:
        fail(exc)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_app(Engine(cfg, fitted=fitted), settings)
    freeze_after_startup(app)
    loop, http = fast_io()
    console.print(
        f"duetto gateway on http://{host}:{port}/v1  (dashboard: /dashboard, "
        f"store: {settings.db or 'duetto-gateway.db'}, {loop} + {http})"
    )
    # keep-alive longer than the usual load-balancer idle timeout (60 s): otherwise a client can
    # reuse a connection in the instant the server closes it
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=75,
        backlog=4096,
    )


def freeze_loaded_objects() -> None:
    """Move every object alive now out of the cyclic collector's reach: with the PII detector
    loaded that is ~440k objects (spaCy's vocabulary and weights, the name lists, Presidio's
    registry), alive as long as the process; without this a full collection that falls inside
    a request walks all of them (about 200 ms of CPU under load; docs/privacy.md, Latency).
    Process-wide, so only the server's start-up does it, never a library call."""
    gc.collect()
    gc.freeze()


def freeze_after_startup(app: Any) -> None:
    """Run `freeze_loaded_objects` once `app`'s lifespan has started (models and detector
    loaded), before the first request."""
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with started(a) as state:
            freeze_loaded_objects()
            yield state

    app.router.lifespan_context = lifespan


def fast_io() -> tuple[str, str]:
    """uvicorn's event loop and HTTP parser: uvloop and httptools (the `serve` extra) when
    installed, else asyncio and the pure-Python h11 (the C ones spend less CPU per request:
    docs/gateway.md, overhead)."""
    import importlib

    def have(name: str) -> bool:
        try:
            importlib.import_module(name)
        except ImportError:
            return False
        return True

    return ("uvloop" if have("uvloop") else "asyncio", "httptools" if have("httptools") else "h11")
