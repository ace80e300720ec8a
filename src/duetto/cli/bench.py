"""`duetto bench …`: offline benchmarks (routing on recorded outputs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from duetto.cli._errors import fail

if TYPE_CHECKING:
    from rich.table import Table

    from duetto.eval.routing import RoutingReport

app = typer.Typer(no_args_is_help=True)
DEFAULT_DATA = Path("../shared/datasets")


@app.command("routing")
def routing(
    suite: Annotated[
        str, typer.Option("--suite", help="routellm-gsm8k | routellm-mmlu | llmrouter | jsonl:PATH")
    ],
    data: Annotated[Path, typer.Option("--data", help="datasets directory")] = DEFAULT_DATA,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results as JSON")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the quality curve")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="a seeded random subset")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2)] = 5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap resamples for CIs")] = 1000,
) -> None:
    """Cross-validated routing quality of every router (with oracle and baselines) on recorded
    outputs of real models."""
    from rich.console import Console

    from duetto.errors import UserError
    from duetto.eval.recorded import load_suite
    from duetto.eval.routing import evaluate_suite, suite_inputs

    console = Console()
    try:
        recorded = load_suite(suite, data).limit(limit, seed)
    except UserError as e:
        fail(e)
    with console.status(f"embedding {len(recorded)} prompts (cached after the first run)…"):
        inputs = suite_inputs(recorded)
    with console.status("cross-validating routers…"):
        report = evaluate_suite(recorded, inputs, k=folds, seed=seed, n_boot=n_boot)
    console.print(render_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.result, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")
    if plot is not None:
        plot_curves(report, plot)
        console.print(f"wrote {plot}")


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def render_table(report: RoutingReport) -> Table:
    from rich.table import Table

    r = report.result
    if "q_weak" in r:
        table = Table(
            title=f"{r['suite']}: n={r['n']}, weak {r['q_weak']:.3f} → strong {r['q_strong']:.3f} "
            "(5-fold CV; CPT = strong-call share)"
        )
        for col in ("router", "APGR", "95% CI", "CPT(50%)", "CPT(80%)", "CPT(95%)"):
            table.add_column(col, justify="left" if col == "router" else "right")
        for row in r["routers"]:
            lo, hi = row["apgr_ci"]
            table.add_row(
                row["name"],
                _fmt(row["apgr"]),
                f"{_fmt(lo)}–{_fmt(hi)}",
                _fmt(row["cpt50"], True),
                _fmt(row["cpt80"], True),
                _fmt(row["cpt95"], True),
            )
        return table
    best = r["best_single"]
    table = Table(
        title=f"{r['suite']}: {len(r['models'])} models; best single {best['name']} "
        f"quality {best['quality']:.3f} at ${best['cost'] * 1000:.4f}/1k queries"
    )
    for col in ("router", "AIQ", "quality @ best-single cost", "cost to match best single"):
        table.add_column(col, justify="left" if col == "router" else "right")
    for row in r["routers"]:
        match = row["cost_to_match_best_single"]
        table.add_row(
            row["name"],
            _fmt(row["aiq"]),
            _fmt(row["quality_at_best_single_cost"]),
            "never" if match is None else f"{100 * match / best['cost']:.1f}% of its cost",
        )
    return table


def plot_curves(report: RoutingReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, (x, y) in report.curves.items():
        style = "--" if name in ("oracle", "random") else "-"
        ax.plot(x, y, style, label=name, linewidth=1.4)
    r = report.result
    if "best_single" in r:
        for m in r["models"]:
            ax.scatter([m["cost"]], [m["quality"]], marker="x", color="black", s=18)
        ax.set_ylabel("mean score")
    else:
        ax.set_ylabel("accuracy")
    ax.set_xlabel(report.x_label)
    ax.set_title(f"{r['suite']}: quality vs {report.x_label} (5-fold CV)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
