"""How much room a demo report leaves a router, and what its quality check asks of one.

    .venv/bin/python benchmarks/demo_headroom.py duetto-demo/report.json [--json out.json]

Reads the held-out records of a `duetto demo` / `duetto eval` report (no model is run) and prints:
  - per task: items, SLM and LLM accuracy, the task's share of LLM-only cost;
  - the issue-3 check for every strategy and the oracle: lower 95% bootstrap bound of quality
    >= 0.95 x LLM-only mean, at <= 60% of LLM-only cost;
  - the best *per-task* routing in hindsight (each task to the model with the higher held-out
    accuracy: an upper bound for any router that sees only the task type);
  - the held-out size at which a strategy with the oracle's mean quality would pass the bound.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from duetto.eval.aggregate import bootstrap_ci

FRACTION, COST_CAP = 0.95, 0.60


def by_strategy(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        out[r["strategy"]][r["item_id"]] = r
    return out


def check(rows: list[dict[str, Any]], llm_mean: float, llm_cost: float) -> dict[str, Any]:
    q = [r["quality"] for r in rows]
    mean, lo, _ = bootstrap_ci(q)
    cost = sum(r["cost_usd"] for r in rows)
    return {
        "quality": round(mean, 3),
        "ci_low": round(lo, 3),
        "cost_fraction": round(cost / llm_cost, 3) if llm_cost else None,
        "passes": bool(lo >= FRACTION * llm_mean and cost <= COST_CAP * llm_cost),
    }


def n_needed(mean: float, floor: float) -> int | None:
    """Smallest n with mean - 1.96 * sd / sqrt(n) >= floor (normal approximation, 0/1 quality)."""
    if mean <= floor:
        return None
    sd = (mean * (1 - mean)) ** 0.5
    return int(np.ceil((1.96 * sd / (mean - floor)) ** 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    recs = by_strategy(report["records"])
    slm, llm = recs["slm_only"], recs["llm_only"]
    ids = sorted(llm)
    tasks = {i: i.rsplit("-", 1)[0] for i in ids}  # demo ids are "<task>-NN"
    llm_cost = sum(llm[i]["cost_usd"] for i in ids)
    llm_mean = float(np.mean([llm[i]["quality"] for i in ids]))

    per_task: dict[str, Any] = {}
    for t in sorted(set(tasks.values())):
        tid = [i for i in ids if tasks[i] == t]
        per_task[t] = {
            "n": len(tid),
            "slm": round(float(np.mean([slm[i]["quality"] for i in tid])), 3),
            "llm": round(float(np.mean([llm[i]["quality"] for i in tid])), 3),
            "llm_cost_share": round(sum(llm[i]["cost_usd"] for i in tid) / llm_cost, 3),
        }
    best_task = [
        (slm if per_task[tasks[i]]["slm"] >= per_task[tasks[i]]["llm"] else llm)[i] for i in ids
    ]
    checks = {name: check(list(rows.values()), llm_mean, llm_cost) for name, rows in recs.items()}
    checks["per-task routing in hindsight"] = check(best_task, llm_mean, llm_cost)
    oracle_mean = checks["oracle"]["quality"]
    out = {
        "n_heldout": len(ids),
        "llm_only_quality": round(llm_mean, 3),
        "floor": round(FRACTION * llm_mean, 3),
        "per_task": per_task,
        "checks": checks,
        "n_needed_at_oracle_quality": n_needed(oracle_mean, FRACTION * llm_mean),
    }
    floor = FRACTION * llm_mean
    print(f"held-out n={len(ids)}  LLM-only {llm_mean:.3f}  floor (0.95x) {floor:.3f}")
    print(f"{'task':<12}{'n':>4}{'SLM':>7}{'LLM':>7}{'LLM cost share':>16}")
    for t, v in per_task.items():
        print(f"{t:<12}{v['n']:>4}{v['slm']:>7.2f}{v['llm']:>7.2f}{v['llm_cost_share']:>16.2f}")
    print(f"\n{'strategy':<34}{'quality':>8}{'CI low':>8}{'cost/LLM':>10}  check")
    for name, c in checks.items():
        ok = "pass" if c["passes"] else "fail"
        print(f"{name:<34}{c['quality']:>8.3f}{c['ci_low']:>8.3f}{c['cost_fraction']:>10.3f}  {ok}")
    print(
        f"\nheld-out items needed for the oracle's mean to clear the bound: "
        f"{out['n_needed_at_oracle_quality']}"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
