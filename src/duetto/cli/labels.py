"""`duetto labels …`: labels in a gateway's store (the live loop's fourth source, gold)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from duetto.cli._errors import fail

app = typer.Typer(no_args_is_help=True)


@app.command("import")
def import_(
    store: Annotated[str, typer.Argument(help="the gateway's store: a SQLite path or a URL")],
    file: Annotated[
        Path,
        typer.Argument(
            help='gold audit JSONL: {"trace_id" | "request", "answer" | "score"} per line',
            exists=True,
            dir_okay=False,
        ),
    ],
    prefix: Annotated[str, typer.Option("--prefix", help="the store's table prefix")] = "duetto_",
) -> None:
    """Import human-labelled gold answers or scores as labels (source "gold"): each line
    names a stored request by trace id or by its text."""
    try:
        report = asyncio.run(_import(store, file, prefix))
    except ValueError as exc:
        fail(f"{file}: {exc}")
    typer.echo(json.dumps(report))


async def _import(url: str, file: Path, prefix: str) -> dict[str, int]:
    from duetto.loop.gold import import_gold
    from duetto.loop.store import LoopStore
    from duetto.store import TraceStore

    traces = await TraceStore(url, prefix=prefix).start()
    try:
        loop_store = await LoopStore(traces).start()
        return (await import_gold(loop_store, file)).to_dict()
    finally:
        await traces.close()
