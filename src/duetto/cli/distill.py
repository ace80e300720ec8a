"""`duetto distill …`: the LLM's answers train a small student, round after round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True)

TASK_HINTS = {
    "banking77": "online-banking customer queries",
    "clinc150": "requests to a virtual assistant",
}


def _teacher(kind: str, model: str, ds: Any) -> Any:
    from duetto.distill.teachers import GoldTeacher, LocalLLMTeacher, teacher_model_path

    if kind == "gold":
        return GoldTeacher({e.text: e.label for e in (*ds.train, *ds.test)})
    if kind == "local":
        return LocalLLMTeacher(
            teacher_model_path(model),
            ds.labels,
            task=TASK_HINTS.get(ds.name, "user queries"),
            out_of_scope=ds.out_of_scope,
        )
    raise typer.BadParameter(f"unknown teacher {kind!r}: gold or local")


def _student_factory(kind: str, ds: Any, options: dict[str, Any]) -> Any:
    if kind == "head":
        from duetto.distill.students.head import HeadStudent

        return lambda: HeadStudent(ds.labels)
    if kind == "fewshot":
        from duetto.distill.students.fewshot import FewShotStudent

        return lambda: FewShotStudent(ds.labels, k=options.get("shots", 8))
    raise typer.BadParameter(f"unknown student {kind!r} for rounds: head or fewshot")


@app.command()
def rounds(
    dataset: Annotated[str, typer.Option(help="banking77 or clinc150")] = "banking77",
    data_dir: Annotated[Path | None, typer.Option(help="folder holding the datasets")] = None,
    teacher: Annotated[str, typer.Option(help="gold (upper bound) or local")] = "gold",
    teacher_model: Annotated[
        str, typer.Option(help="local teacher: standin, smollm2 or a GGUF path")
    ] = "standin",
    student: Annotated[str, typer.Option(help="head or fewshot")] = "head",
    train: Annotated[int, typer.Option(help="teacher labels the student learns from")] = 1000,
    n_rounds: Annotated[int, typer.Option("--rounds", help="rounds after round 0")] = 3,
    target: Annotated[str, typer.Option(help="threshold target, re-met each round")] = (
        "quality=0.95"
    ),
    calib: Annotated[int, typer.Option(help="held-out queries for the threshold")] = 500,
    test: Annotated[int | None, typer.Option(help="stratified test subsample")] = None,
    traffic: Annotated[int, typer.Option(help="training queries arriving as traffic")] = 6000,
    traces: Annotated[str, typer.Option(help="escalated (closed loop) or all")] = "escalated",
    calib_reference: Annotated[
        str, typer.Option(help="teacher, or gold: the audit sample is human-labelled")
    ] = "teacher",
    shots: Annotated[int, typer.Option(help="fewshot: demonstrations per query")] = 8,
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

    if traces not in ("escalated", "all"):
        raise typer.BadParameter("--traces must be escalated or all")
    if calib_reference not in ("teacher", "gold"):
        raise typer.BadParameter("--calib-reference must be teacher or gold")
    ds = load_dataset(dataset, data_dir)
    cfg = LoopConfig(
        train=train,
        rounds=n_rounds,
        target=Target.parse(target),
        calib=calib,
        test=test,
        traffic=traffic,
        traces=traces,  # type: ignore[arg-type]
        calib_reference=calib_reference,  # type: ignore[arg-type]
        seed=seed,
    )
    executor: Any = RayExecutor(ray_address) if (ray or ray_address) else LocalExecutor()
    try:
        result = run_rounds(
            ds,
            _teacher(teacher, teacher_model, ds),
            _student_factory(student, ds, {"shots": shots}),
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
    teacher: Annotated[str, typer.Option(help="gold (upper bound) or local")] = "gold",
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
    record.update(task=ds.name, teacher=teacher, teacher_is_upper_bound=teacher == "gold")
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
