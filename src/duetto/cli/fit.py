"""`duetto fit STORE`: fit a calibration on the traffic a gateway stored (duetto.loop.fit)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli._errors import fail


def register(app: typer.Typer) -> None:
    app.command(name="fit")(fit)


def fit(
    store: Annotated[str, typer.Argument(help="the gateway's store: a SQLite path or a URL")],
    config: Annotated[
        Path | None, typer.Option(help="the gateway's YAML config (default: the embedded one)")
    ] = None,
    out: Annotated[Path, typer.Option(help="report directory")] = Path("duetto-fit"),
    target: Annotated[
        str | None, typer.Option(help="quality=F (of LLM-only quality); default: the config's")
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            help="calibration whose other entries are kept (default: the shipped one "
            "for the embedded config)"
        ),
    ] = None,
    candidate: Annotated[
        str | None, typer.Option(help="the shadow candidate (default: the most labelled one)")
    ] = None,
    holdout: Annotated[float, typer.Option(help="share of the newest requests held out")] = 0.5,
    prefix: Annotated[str, typer.Option(help="the store's table prefix")] = "duetto_",
) -> None:
    """Fit each cascade's calibrator and threshold on the store's labelled shadow answers, check
    it on a held-out part with a bootstrap CI, and write OUT/calibration.json (promote it with
    POST /admin/calibration or `duetto serve --calibration`) and report.json/html."""
    from rich.console import Console

    from duetto.calibrate import Target
    from duetto.config import load_config, load_default_config
    from duetto.errors import UserError
    from duetto.fitted import default_calibration, load_fitted, save_fitted, stamp

    console = Console()
    try:
        cfg = load_config(config) if config else load_default_config()
        tgt = Target.parse(target or cfg.target or "quality=0.95")
        base_state = load_fitted(base) if base else (None if config else default_calibration())
        if not 0.0 < holdout < 1.0:
            raise UserError("--holdout must be in (0, 1)")
        results, notes = asyncio.run(_fit(store, prefix, cfg, tgt, candidate, holdout))
    except UserError as exc:
        fail(exc)
        return
    from duetto.loop.fit import calibration_file, report_dict

    created = time.strftime("%Y-%m-%d %H:%M:%S")
    # the command as run, from its parameters (sys.argv is not it under a test runner)
    opts = {"--config": config, "--target": str(tgt), "--base": base, "--candidate": candidate}
    command = " ".join(
        ["duetto fit", store, *(f"{k} {v}" for k, v in opts.items() if v), f"--holdout {holdout:g}"]
    )
    state = stamp(calibration_file(results, str(tgt), base_state), command)
    path = save_fitted(state, out / "calibration.json")
    report = report_dict(results, store, created)
    report["notes"] = [*report["notes"], *notes]
    report["fitted_path"] = str(path)
    report["calibration_version"] = state["version"]["hash"]
    paths = _write(report, out)
    for line in report["notes"]:
        console.print(line)
    console.print(f"calibration {state['version']['hash']}: {path}  report: {paths}")
    if any(r.evidence and not r.evidence.get("enough", True) for r in results):
        console.print("[yellow]not enough evidence for the target: do not promote yet[/]")
        raise typer.Exit(2)


async def _fit(
    url: str, prefix: str, cfg: Any, target: Any, candidate: str | None, holdout: float
) -> Any:
    from duetto.engine import make_card
    from duetto.loop.fit import fit_store
    from duetto.loop.store import LoopStore
    from duetto.store import TraceStore

    llm = make_card(cfg.llm_name(), cfg.models[cfg.llm_name()])
    slm = make_card(cfg.slm_name(), cfg.models[cfg.slm_name()])
    traces = await TraceStore(url, prefix=prefix).start()
    try:
        loop_store = await LoopStore(traces).start()
        return await fit_store(
            loop_store, cfg.strategies, llm, slm, target, candidate=candidate, holdout=holdout
        )
    finally:
        await traces.close()


def _write(report: dict[str, Any], out: Path) -> str:
    """report.json/html through duetto.eval.report when there is something to plot, else JSON."""
    import json

    from duetto.eval.report.model import json_safe

    out.mkdir(parents=True, exist_ok=True)
    if report["strategies"]:
        from duetto.eval.report import write_report

        return ", ".join(str(p) for p in write_report(report, out).values())
    path = out / "report.json"
    path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    return str(path)
