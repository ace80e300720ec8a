"""`duetto distill --traces STORE|FILE --task NAME --student KIND --out DIR` (also `duetto
distill from-traces …`): train a student on the answers a gateway stored. Registered on the
`duetto distill` group by `cli/distill.py`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli._errors import fail

SELECTED_REASONS = (
    "not_accepted",
    "other_task",
    "not_teacher",
    "unknown_model",
    "no_score",
    "below_min_score",
    "empty_answer",
    "redacted_dropped",
    "not_a_label",
)


class Redacted(StrEnum):
    drop = "drop"
    keep = "keep"


def from_traces(
    ctx: typer.Context,
    traces: Annotated[
        str | None,
        typer.Option(
            "--traces",
            help="trace store (sqlite:///duetto-gateway.db, a SQLite file, postgresql://…) "
            "or a JSONL file of LLM answers (format: docs/distill.md)",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="task to learn: a record's task, else the model/strategy it requested; * for all"
        ),
    ] = None,
    student: Annotated[str, typer.Option(help="head, fewshot or lora")] = "head",
    out: Annotated[Path | None, typer.Option(help="writes student.* and report.json here")] = None,
    teacher_model: Annotated[
        list[str] | None,
        typer.Option(help="card name of the teacher (repeatable); default: any remote model"),
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(help="keep only answers a verifier scored >= this")
    ] = None,
    redacted: Annotated[
        Redacted, typer.Option(help="records with redaction placeholders: drop or keep")
    ] = Redacted.drop,
    labels: Annotated[
        str | None, typer.Option(help="allowed answers: a JSON list file, one per line, or a,b,c")
    ] = None,
    out_of_scope: Annotated[
        str | None, typer.Option(help="a label the student always escalates (e.g. oos)")
    ] = None,
    holdout: Annotated[float, typer.Option(help="share of prompts held out")] = 0.2,
    target: Annotated[str, typer.Option(help="threshold target on held-out data")] = (
        "quality=0.95"
    ),
    limit: Annotated[
        int | None, typer.Option(help="at most N training examples (lora: 200)")
    ] = None,
    n_eval: Annotated[
        int | None, typer.Option("--eval", help="lora: at most N held-out prompts scored (100)")
    ] = None,
    embedder: Annotated[
        str, typer.Option(help="head/fewshot: minilm, or hashed-words (tests, no model)")
    ] = "minilm",
    shots: Annotated[int, typer.Option(help="fewshot: demonstrations per query")] = 8,
    epochs: Annotated[int, typer.Option(help="lora epochs")] = 2,
    learning_rate: Annotated[float, typer.Option(help="lora learning rate")] = 1e-3,
    seed: int = 0,
) -> None:
    """Train a student on the large model's accepted answers from a trace store or JSONL file,
    evaluated on held-out prompts. Subcommands: rounds (the loop on a dataset), lora."""
    if ctx.invoked_subcommand is not None:
        if traces is not None:
            fail("--traces trains from traces on its own; give it without a subcommand")
        return
    if traces is None:
        fail("missing --traces STORE|FILE (or a subcommand: rounds, lora); see --help")
    if task is None:
        fail("missing --task NAME (* for every task)")
    if out is None:
        fail("missing --out DIR")
    from duetto.calibrate import Target
    from duetto.distill.traces import Options, Selection, distill_from_traces, read_labels
    from duetto.errors import DuettoError

    try:
        sel = Selection(
            task=task,
            teacher_models=tuple(teacher_model or ()),
            min_score=min_score,
            redacted=redacted.value,
            labels=read_labels(labels),
        )
        opts = Options(
            holdout=holdout,
            target=Target.parse(target),
            seed=seed,
            limit=limit,
            eval_limit=n_eval,
            out_of_scope=out_of_scope,
            embedder=embedder,
            shots=shots,
            epochs=epochs,
            learning_rate=learning_rate,
        )
        report = distill_from_traces(
            traces, sel, student, out, opts, log=lambda msg: typer.echo(msg, err=True)
        )
    except DuettoError as exc:
        fail(exc)
    _traces_summary(report, out)


def _traces_summary(r: dict[str, Any], out: Path) -> None:
    sel = r["selection"]
    teachers = ", ".join(f"{m} {n}" for m, n in r["teacher"]["models"].items())
    typer.echo(
        f"{r['task']}: {r['student']} student on {sel['selected']} teacher answers "
        f"({teachers}) from {r['source']}"
    )
    dropped = [f"{sel[k]} {k.replace('_', ' ')}" for k in SELECTED_REASONS if sel.get(k)]
    line = f"selected {sel['selected']} of {sel['records']} records"
    if dropped:
        line += ": left out " + ", ".join(dropped)
    if sel.get("redacted_kept"):
        line += f"; {sel['redacted_kept']} redacted kept (placeholders as text)"
    typer.echo(f"{line}; {sel['duplicates']} duplicate prompts, {sel['unique_prompts']} distinct")
    sp = r["split"]
    if "lora" in r:
        lo = r["lora"]
        typer.echo(
            f"lora ({lo['mode']}): train {lo['train_examples']}, "
            f"held-out {lo['eval_examples']}, {lo['steps']} steps, "
            f"loss {lo['first_loss']} -> {lo['last_loss']}"
        )
        if lo["mode"] == "labels":
            typer.echo(
                f"agreement with the teacher: {lo['agreement_before']:.3f} before, "
                f"{lo['agreement_after']:.3f} after"
            )
        else:
            b, a = lo["before"], lo["after"]
            typer.echo(
                f"exact match {b['exact_match']:.3f} -> {a['exact_match']:.3f}, "
                f"token F1 {b['token_f1']:.3f} -> {a['token_f1']:.3f}"
            )
    else:
        typer.echo(f"train {sp['train']}; held out: calib {sp['calib']}, test {sp['test']}")
        typer.echo("split      n  agreement  local  llm_share  quality")
        for name in ("calib", "test"):
            p = r[name]
            typer.echo(
                f"{name:<5}  {p['n']:>5}  {p['student_agreement']:>9.3f}  "
                f"{p['local_share']:>5.3f}  {p['llm_call_share']:>9.3f}  "
                f"{p['quality']:>7.3f}"
            )
        t = r["test"]
        if "quality_vs_gold" in t:
            typer.echo(
                f"test vs gold: system {t['quality_vs_gold']:.3f}, teacher "
                f"{t['teacher_vs_gold']:.3f}, student {t['student_vs_gold']:.3f}"
            )
        thr = "none (escalates all)" if r["threshold"] is None else f"{r['threshold']:.3f}"
        typer.echo(f"threshold {thr} calibrated on calib to {r['target']} (vs the teacher)")
    typer.echo(f"wrote {r['student_path']}, {out / 'report.json'}")
