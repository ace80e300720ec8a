"""`duetto demo | eval | validate | serve`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def version() -> None:
        """Print duetto's version."""
        from duetto import __version__

        typer.echo(__version__)
