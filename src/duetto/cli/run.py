"""`duetto demo | eval | validate | version`: thin wrappers over duetto.eval and duetto.engine."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli._errors import fail
from duetto.cli._report import finish_report


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command(name="eval")(eval_cmd)
    app.command()(validate)
    app.command()(version)


def version() -> None:
    """Print duetto's version."""
    from duetto import __version__

    typer.echo(__version__)


def validate(config: Annotated[Path, typer.Argument(help="YAML config to check")]) -> None:
    """Check a config without starting any model: every misspelt key, unknown kind or unknown
    name is listed with its path (`strategies.c1.pass_draf: extra inputs are not permitted`)."""
    from duetto.config import all_errors

    errors = all_errors(config)
    for e in errors:
        typer.echo(f"error: {e}", err=True)
    if errors:
        raise typer.Exit(1)
    typer.echo(f"{config}: ok")


def demo(
    out: Annotated[Path, typer.Option(help="Report directory")] = Path("duetto-demo"),
    data: Annotated[
        Path | None,
        typer.Option(help="Draw the same traffic mix from the full datasets in DIR"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most N requests per phase (train, audit, test)")
    ] = None,
    llm_url: Annotated[
        str | None, typer.Option(help="A real OpenAI-compatible LLM endpoint")
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at --llm-url")] = None,
    llm_key_env: Annotated[str | None, typer.Option(help="Env var holding its API key")] = None,
    target: Annotated[str, typer.Option(help="Calibration target")] = "quality=0.95",
) -> None:
    """The main job: a staged rollout on real traffic, offline, on the embedded defaults.

    Phase 0 the LLM serves (its answers are traces); phase 1 the SLM shadows and answers are
    labelled (agreement, an LLM judge, a gold audit); phase 2 a student is distilled and every
    strategy calibrated; phase 3 held-out traffic is served by every strategy and baseline."""
    from duetto.cli.demo import run_demo

    run_demo(out, data, limit, llm_url, llm_model, llm_key_env, target)


def eval_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config")],
    data: Annotated[Path, typer.Option(help="Workload: JSONL or CSV")],
    out: Annotated[Path, typer.Option(help="Report directory")] = Path("duetto-report"),
    limit: Annotated[int | None, typer.Option(help="Use only the first N items")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight")] = 1,
    target: Annotated[
        str | None, typer.Option(help="quality=F | llm_share=S | budget_usd_per_1k=B")
    ] = None,
) -> None:
    """Evaluate a config's strategies on a workload; write report.json/html and pareto.png."""
    from duetto.config import load_config
    from duetto.errors import UserError
    from duetto.eval.workload import load_workload

    try:
        cfg = load_config(config)
        items = load_workload(data)
    except UserError as exc:
        fail(exc)
        return
    if limit:
        items = items[:limit]
    if target:
        cfg.target = target
    _run_eval(
        cfg,
        items,
        out,
        target or cfg.target or "quality=0.95",
        str(data),
        None,
        None,
        None,
        concurrency,
    )


def _run_eval(
    cfg: Any,
    items: list[Any],
    out: Path,
    target: str,
    workload_name: str,
    llm_url: str | None,
    llm_model: str | None,
    llm_key_env: str | None,
    concurrency: int,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from duetto.calibrate import Target
    from duetto.engine import Engine
    from duetto.errors import UserError
    from duetto.eval.runner import EvalPlan, evaluate
    from duetto.privacy.apply import use_detector

    console = Console()
    try:
        tgt = Target.parse(target)
        if llm_url:
            cfg = cfg.with_llm_endpoint(llm_url, llm_model or "default", llm_key_env)
    except UserError as exc:
        fail(exc)
        return
    started = time.perf_counter()

    async def go() -> tuple[dict[str, Any], Engine, str]:
        with console.status("starting models (the stand-in LLM server takes a few seconds)…"):
            # redaction and the privacy column use the configured detector, as `duetto serve` does
            detector = await asyncio.to_thread(use_detector, cfg.privacy.detector or "auto")
            engine = Engine(cfg, cache=True)
            await engine.start()
        try:
            plan = EvalPlan(
                slm=engine.slm,
                llm=engine.llm,
                strategies=engine.strategies,
                targets=engine.targets(),
                concurrency=concurrency,
                quality_target=tgt.value if tgt.kind == "quality" else 0.95,
            )
            cols = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*cols, console=console, transient=True) as bar:
                tasks: dict[str, Any] = {}

                def progress(label: str, n: int) -> None:
                    if label not in tasks:
                        tasks[label] = bar.add_task(label, total=None)
                    bar.advance(tasks[label], n)

                return await evaluate(plan, items, progress), engine, detector
        finally:
            await engine.aclose()

    try:
        report, engine, detector = asyncio.run(go())
    except UserError as exc:
        fail(exc)
        return
    finish_report(
        report,
        engine,
        out=out,
        target=target,
        title="duetto report",
        workload=workload_name,
        started=started,
        console=console,
        detector=detector,
    )
