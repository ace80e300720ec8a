"""`duetto distill …`: the LLM's answers train a small student, round after round.

`duetto distill --traces STORE|FILE --task NAME --student KIND --out DIR` (the group's own
options, also `duetto distill from-traces …`, in cli/distill_traces.py) trains a student on the
answers a gateway stored; `duetto distill rounds` runs the closed loop on a dataset; `duetto
distill lora` one LoRA round.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from duetto.cli.distill_traces import from_traces
from duetto.distill.data import TASK_HINTS

app = typer.Typer(no_args_is_help=True)


class TeacherKind(StrEnum):
    gold = "gold"
    local = "local"


class TracesMode(StrEnum):
    escalated = "escalated"
    all = "all"


class CalibReference(StrEnum):
    teacher = "teacher"
    gold = "gold"


class CalibSource(StrEnum):
    auto = "auto"
    validation = "validation"
    train = "train"


def _teacher(kind: str, model: str, ds: Any, candidates: int = 0) -> Any:
    from duetto.distill.teachers import GoldTeacher, LocalLLMTeacher, teacher_model_path

    if kind == "gold":
        return GoldTeacher(ds.gold_labels())
    if kind == "local":
        return LocalLLMTeacher(
            teacher_model_path(model),
            ds.labels,
            task=TASK_HINTS.get(ds.name, "user queries"),
            out_of_scope=ds.out_of_scope,
            candidates=candidates,
        )
    raise typer.BadParameter(f"unknown teacher {kind!r}: gold or local")


def _student_factory(kind: str, ds: Any, options: dict[str, Any]) -> Any:
    if kind == "head":
        from duetto.distill.students.head import HeadStudent

        return lambda: HeadStudent(
            ds.labels,
            novelty=options["novelty"],
            out_of_scope=ds.out_of_scope,
            anchor_weight=options["anchor_weight"],
            verify_k=options["verify_k"],
        )
    if kind == "fewshot":
        from duetto.distill.students.fewshot import FewShotStudent

        return lambda: FewShotStudent(ds.labels, k=options.get("shots", 8))
    raise typer.BadParameter(f"unknown student {kind!r} for rounds: head or fewshot")


@app.command()
def rounds(
    dataset: Annotated[str, typer.Option(help="banking77 or clinc150")] = "banking77",
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the datasets")] = None,
    teacher: Annotated[
        TeacherKind, typer.Option(help="gold (upper bound) or local")
    ] = TeacherKind.gold,
    teacher_model: Annotated[
        str, typer.Option(help="local teacher: standin, smollm2 or a GGUF path")
    ] = "standin",
    teacher_candidates: Annotated[
        int,
        typer.Option(help="local teacher: choose among the K intents nearest the query (0: all)"),
    ] = 0,
    student: Annotated[str, typer.Option(help="head or fewshot")] = "head",
    train: Annotated[int, typer.Option(help="teacher labels the student learns from")] = 1000,
    n_rounds: Annotated[int, typer.Option("--rounds", help="rounds after round 0")] = 3,
    target: Annotated[str, typer.Option(help="threshold target, re-met each round")] = (
        "quality=0.95"
    ),
    calib: Annotated[int, typer.Option(help="held-out queries for the threshold")] = 500,
    test: Annotated[int | None, typer.Option(help="stratified test subsample")] = None,
    traffic: Annotated[int, typer.Option(help="training queries arriving as traffic")] = 6000,
    traces: Annotated[
        TracesMode, typer.Option(help="escalated (closed loop) or all")
    ] = TracesMode.escalated,
    calib_reference: Annotated[
        CalibReference, typer.Option(help="teacher, or gold: the audit sample is human-labelled")
    ] = CalibReference.teacher,
    calib_source: Annotated[
        CalibSource,
        typer.Option(help="audit sample from: auto (validation if any), validation, train"),
    ] = CalibSource.auto,
    calib_oos_share: Annotated[
        float | None,
        typer.Option(help="out-of-scope share of a validation audit sample (default: the test's)"),
    ] = None,
    oos_escalation: Annotated[
        float, typer.Option(help="least share of the audit's out-of-scope queries to escalate")
    ] = 0.9,
    gate: Annotated[
        bool,
        typer.Option(
            "--gate/--no-gate",
            help="deploy a round's student only if it beats the deployed one on held-out data",
        ),
    ] = True,
    shots: Annotated[int, typer.Option(help="fewshot: demonstrations per query")] = 8,
    novelty: Annotated[
        bool | None,
        typer.Option(
            "--novelty/--no-novelty",
            help="head: scale confidence by similarity to known examples (default: on for "
            "datasets with out-of-scope queries)",
        ),
    ] = None,
    anchor_weight: Annotated[
        float, typer.Option(help="head: weight of each intent name against one trace")
    ] = 1.0,
    verify_k: Annotated[
        int,
        typer.Option(help="head: train only on traces labelled one of the K nearest intent names"),
    ] = 0,
    seed: int = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the rounds here")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of LLM-call share and quality")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="label and evaluate on a local Ray")] = False,
    ray_address: Annotated[str | None, typer.Option(help="label and evaluate on this Ray")] = None,
) -> None:
    """Teacher labels -> train student -> re-calibrate the threshold -> one record per round."""
    from duetto.calibrate import Target
    from duetto.distill.data import load_dataset
    from duetto.distill.loop import LoopConfig, run_rounds
    from duetto.distill.ray_exec import LocalExecutor, RayExecutor

    for name, value in (
        ("--calib-oos-share", calib_oos_share),
        ("--oos-escalation", oos_escalation),
    ):
        if value is not None and not 0.0 <= value <= 1.0:
            raise typer.BadParameter(f"{name} must be between 0 and 1, got {value}")
    ds = load_dataset(dataset, data_dir)
    if calib_source == "validation" and not ds.validation:
        raise typer.BadParameter(f"--calib-source validation: {ds.name} has no validation split")
    cfg = LoopConfig(
        train=train,
        rounds=n_rounds,
        target=Target.parse(target),
        calib=calib,
        test=test,
        traffic=traffic,
        traces=traces.value,
        calib_reference=calib_reference.value,
        calib_source=calib_source.value,
        calib_oos_share=calib_oos_share,
        oos_escalation=oos_escalation,
        gate=gate,
        seed=seed,
    )
    executor: Any = RayExecutor(ray_address) if (ray or ray_address) else LocalExecutor()
    try:
        result = run_rounds(
            ds,
            _teacher(teacher, teacher_model, ds, teacher_candidates),
            _student_factory(
                student,
                ds,
                {
                    "shots": shots,
                    "novelty": ds.out_of_scope is not None if novelty is None else novelty,
                    "anchor_weight": anchor_weight,
                    "verify_k": verify_k,
                },
            ),
            cfg,
            executor,
            log=lambda msg: typer.echo(msg, err=True),
        )
    finally:
        if isinstance(executor, RayExecutor):
            executor.shutdown()
    out = result.to_dict()
    text = json.dumps(out, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    if plot is not None:
        from duetto.distill.plot import plot_rounds

        plot_rounds(out, plot)
    _summary(out)


@app.command()
def lora(
    out: Annotated[Path, typer.Option(help="checkpoints, adapter and merged model go here")],
    dataset: Annotated[str, typer.Option(help="banking77 or clinc150")] = "banking77",
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the datasets")] = None,
    teacher: Annotated[
        TeacherKind, typer.Option(help="gold (upper bound) or local")
    ] = TeacherKind.gold,
    teacher_model: Annotated[str, typer.Option(help="standin, smollm2 or a GGUF")] = "standin",
    train: Annotated[int, typer.Option(help="teacher-labelled training examples")] = 200,
    n_eval: Annotated[int, typer.Option("--eval", help="test queries scored")] = 100,
    epochs: int = 2,
    learning_rate: float = 1e-3,
    seed: int = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the record here")] = None,
) -> None:
    """One LoRA round on SmolLM2: score, train on the teacher's labels, score again."""
    from duetto.distill.data import load_dataset, sample, stratified_sample
    from duetto.distill.students.lora import LoraSettings, LoraStudent, lora_round

    ds = load_dataset(dataset, data_dir)
    examples = sample(ds.train, train, seed)
    texts = [e.text for e in examples]
    labels = _teacher(teacher, teacher_model, ds).label(texts)
    test = stratified_sample(ds.test, n_eval, seed + 1)
    student = LoraStudent(
        ds.all_labels,
        out,
        task=TASK_HINTS.get(ds.name, "query"),
        settings=LoraSettings(epochs=epochs, learning_rate=learning_rate, seed=seed),
    )
    record = lora_round(student, texts, labels, [e.text for e in test], [e.label for e in test])
    record.update(task=ds.name, teacher=teacher.value, teacher_is_upper_bound=teacher == "gold")
    text = json.dumps(record, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    typer.echo(text)


def _summary(out: dict[str, Any]) -> None:
    bound = " (upper bound)" if out["teacher_is_upper_bound"] else ""
    typer.echo(f"{out['task']}: teacher {out['teacher']}{bound}, student {out['student']}")
    typer.echo("round  llm_share  local  quality  teacher  student_acc")
    for r in out["rounds"]:
        acc = "-" if r["student_accuracy"] is None else f"{r['student_accuracy']:.3f}"
        typer.echo(
            f"{r['round']:>5}  {r['llm_call_share']:>9.3f}  {r['local_share']:>5.3f}  "
            f"{r['quality']:>7.3f}  {r['teacher_quality']:>7.3f}  {acc:>11}"
        )


# `duetto distill --traces …` (the group's own options) and `duetto distill from-traces …`
app.callback(invoke_without_command=True)(from_traces)
app.command("from-traces", help="The same as `duetto distill --traces …`.")(from_traces)
