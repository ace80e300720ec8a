"""The `duetto` command. Thin: each subcommand module parses arguments and calls the library.

Subcommand modules import their heavy dependencies inside the command functions so that
`duetto --help` stays fast.
"""

from __future__ import annotations

import typer

from duetto.cli import bench, distill, fit, labels, models, privacy, run, serve

app = typer.Typer(
    name="duetto",
    help="Small/large language model collaboration, measured on five axes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
run.register(app)  # demo, eval, validate, version
serve.register(app)  # serve
fit.register(app)  # fit
app.add_typer(models.app, name="models", help="Local model weights: fetch, serve.")
app.add_typer(bench.app, name="bench", help="Offline benchmarks on recorded model outputs.")
app.add_typer(privacy.app, name="privacy", help="PII detection: evaluate, redact.")
app.add_typer(distill.app, name="distill", help="Distillation: the LLM's answers train the SLM.")
app.add_typer(labels.app, name="labels", help="Labels in a gateway's store: import gold.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
