"""How every `duetto` command reports a user error: one red line on stderr, exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

# 1 is `duetto validate` finding errors in a config; 2 is a command that could not run.
EXIT_USER_ERROR = 2


def fail(message: object, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print `error: <message>` on stderr and exit with `code`."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(message))}", soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*also: type[Exception]) -> Iterator[None]:
    """`with user_errors(): ...` turns a `UserError` (bad config, data, option), or any of the
    exception types in `also`, into `fail`."""
    from duetto.errors import UserError

    kinds: tuple[type[Exception], ...] = (UserError, *also)
    try:
        yield
    except kinds as exc:
        fail(exc)
