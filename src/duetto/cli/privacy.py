"""`duetto privacy …`: PII detection quality and redaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli._errors import fail

app = typer.Typer(no_args_is_help=True)


@app.command("eval")
def eval_cmd(
    data: Annotated[
        Path | None, typer.Option("--data", help="presidio-research JSON or generic JSONL")
    ] = None,
    all_sets: Annotated[
        bool, typer.Option("--all", help="every labelled set under --root: one table sets × tiers")
    ] = False,
    root: Annotated[
        Path, typer.Option("--root", help="the shared datasets folder (with --all)")
    ] = Path("../shared/datasets"),
    only: Annotated[
        list[str] | None, typer.Option("--only", help="with --all: sets whose name contains this")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the scores here")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="first N rows only")] = None,
    match: Annotated[str, typer.Option(help="overlap | exact")] = "overlap",
    detector: Annotated[
        str, typer.Option(help="presidio (privacy extra) | regex (every rule, no model)")
    ] = "presidio",
    min_score: Annotated[float, typer.Option(help="drop detections scored below this")] = 0.4,
) -> None:
    """Per-entity-type precision, recall and F2 of the PII detector on labelled text.

    `--all` runs every labelled set under `--root` (presidio-research, MEDDOCAN, python-stdnum,
    the secret sets, banking77 as negatives) and prints one table of sets × risk tiers."""
    from rich.console import Console

    from duetto.errors import UserError
    from duetto.privacy.evaluate import evaluate, load_labelled

    console = Console()
    try:
        if match not in ("overlap", "exact"):
            raise UserError(f"--match must be overlap or exact, not {match!r}")
        if all_sets:
            _eval_all(root, detector, min_score, only, limit, json_out, Console(width=140))
            return
        if data is None:
            raise UserError("give --data FILE, or --all")
        detect = _detector(detector, min_score)
        samples = load_labelled(data, limit=limit)
        report = evaluate(samples, detect, match=match)  # type: ignore[arg-type]
    except UserError as exc:
        fail(exc)
    result = report.to_dict()
    result["detector"] = detector
    result["data"] = str(data)
    console.print(_table(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def _eval_all(
    root: Path,
    detector: str,
    min_score: float,
    only: list[str] | None,
    limit: int | None,
    json_out: Path | None,
    console: Any,
) -> None:
    from duetto.errors import UserError
    from duetto.privacy.eval_all import evaluate_all, tier_table

    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder")
    results = evaluate_all(root, _detector(detector, min_score), only=only, limit=limit)
    if not results:
        raise UserError(f"no labelled set found under {root}")
    console.print(tier_table(results))
    if json_out is not None:
        payload = {"detector": detector, "root": str(root), "sets": results}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def _detector(name: str, min_score: float) -> Any:
    from duetto.errors import UserError

    if name == "regex":
        from functools import partial

        from duetto.privacy.rules import rules_detect

        return partial(rules_detect, min_score=min_score)
    if name == "presidio":
        from duetto.privacy.presidio import PresidioDetector

        det = PresidioDetector(min_score=min_score)
        det.load()
        return det
    raise UserError(f"--detector must be presidio or regex, not {name!r}")


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"{result['samples']} texts, {result['match']} match, {result['detector']}",
        caption="P/R/F2 by type; chars: share of gold characters covered; any: found as any type",
    )
    table.add_column("type", no_wrap=True)
    for col in ("support", "pred", "P", "R", "F2", "chars", "any"):
        table.add_column(col, justify="right", no_wrap=True)
    rows = [*result["entities"].items(), ("micro", result["micro"])]
    for etype, s in rows:
        table.add_row(
            etype,
            str(s["support"]),
            str(s["predicted"]),
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f2']:.3f}",
            f"{s['char_recall']:.3f}",
            f"{s['any_type_recall']:.3f}",
        )
    if result["unlabelled_predictions"]:
        extra = ", ".join(f"{t} {n}" for t, n in result["unlabelled_predictions"].items())
        table.caption = f"{table.caption}\nunscored (types the data never labels): {extra}"
    return table
