"""Drift: the easy/hard mix of traffic changes mid-stream; does the LLM share hold its target?

Real recorded outputs drive it: RouteLLM's MMLU evaluations (Mixtral-8x7B as the cheap model,
GPT-4-1106 as the strong one; ../shared/datasets/routellm_evals). The router is duetto's `route`
strategy with a per-subject prior scorer (the cheap model's accuracy per MMLU subject, fitted on
a training half). Subjects above the median prior are "easy", the rest "hard". The stream has
two phases (default 80/20 easy/hard, then 40/60). Both strategies start from the same threshold,
calibrated offline to the LLM-share target on phase-1 traffic:
  - static: keeps that threshold;
  - adaptive: duetto.calibrate.AdaptiveThreshold moves it with bounded steps.
Printed and written (--json): the rolling LLM share of both, the requests the adaptive one needs
to come back within ±5 points after the shift, and a plot (--plot).

    python benchmarks/drift.py --json out/drift.json --plot out/drift.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from duetto.calibrate import AdaptiveThreshold, StaticThreshold, Target, choose_threshold
from duetto.eval.recorded import load_suite
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.replay import ReplayModel
from duetto.strategies.route import Route, TaskPriorScorer

WEAK = ModelCard("mixtral-8x7b (recorded)", "remote", False, 0.6, 0.6)
STRONG = ModelCard("gpt-4-1106 (recorded)", "remote", False, 10.0, 30.0)


def build_stream(suite, priors, mix, n, rng):  # type: ignore[no-untyped-def]
    med = float(np.median(list(priors.values())))
    easy = [i for i, t in enumerate(suite.tasks) if priors[t] >= med]
    hard = [i for i, t in enumerate(suite.tasks) if priors[t] < med]
    out: list[int] = []
    for frac_easy in mix:
        k = round(frac_easy * n)
        phase = list(rng.choice(easy, k)) + list(rng.choice(hard, n - k))
        rng.shuffle(phase)
        out += phase
    return out


async def run(policy, suite, stream, scorer, weak, strong):  # type: ignore[no-untyped-def]
    route = Route("route-prior", [weak, strong], scorer, policy=policy)
    esc, qual = [], []
    for i in stream:
        req = ChatRequest.of(suite.prompts[i], task=suite.tasks[i], metadata={"item_id": str(i)})
        resp = await route.complete(req)
        esc.append(resp.trace.decision == "strong")
        qual.append(float(resp.trace.leaves()[-1].extra.get("recorded_score", 0.0)))
    return np.array(esc, dtype=float), np.array(qual, dtype=float)


def rolling(x: np.ndarray, w: int) -> np.ndarray:
    c = np.cumsum(np.insert(x, 0, 0.0))
    return (c[w:] - c[:-w]) / w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--target", type=float, default=0.3, help="LLM-share target")
    ap.add_argument("--n", type=int, default=3000, help="requests per phase")
    ap.add_argument("--mix", default="0.8,0.4", help="easy fraction of each phase")
    ap.add_argument("--step", type=float, default=0.01, help="adaptive step size")
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--json")
    ap.add_argument("--plot")
    a = ap.parse_args()
    if not Path(a.data, "routellm_evals").is_dir():
        print(f"skip: {a.data}/routellm_evals not found (the recorded data lives in ../shared)")
        return 0
    suite = load_suite("routellm-mmlu", a.data)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(suite))
    train, test = idx[: len(idx) // 2], idx[len(idx) // 2 :]
    # Per-subject prior: the cheap model's accuracy on the training half.
    priors: dict[str, float] = {}
    for t in sorted(set(suite.tasks)):
        rows = [i for i in train if suite.tasks[i] == t]
        priors[t] = float(np.mean(suite.scores[rows, 0])) if rows else 0.5
    scorer = TaskPriorScorer(priors)
    records = {str(i): {"response": "recorded", "score": float(suite.scores[i, 0])} for i in test}
    weak = ReplayModel(WEAK, records)
    strong = ReplayModel(
        STRONG, {str(i): {"response": "recorded", "score": float(suite.scores[i, 1])} for i in test}
    )
    test_suite = suite  # indices refer to the whole suite; the stream draws from the test half
    sub = suite.subset(test)
    mix = [float(x) for x in a.mix.split(",")]
    local_stream = build_stream(sub, priors, mix, a.n, rng)
    stream = [int(test[i]) for i in local_stream]
    # Offline calibration on phase-1 traffic only (what a team would do before the drift).
    p1 = stream[: a.n]
    s = np.array([priors[suite.tasks[i]] for i in p1])
    op = choose_threshold(
        s,
        suite.scores[p1, 0],
        suite.scores[p1, 1],
        np.zeros(len(p1)),
        np.ones(len(p1)),
        Target("llm_share", a.target),
    )
    t0 = op.threshold
    static, q_static = asyncio.run(
        run(StaticThreshold(t0), test_suite, stream, scorer, weak, strong)
    )
    adaptive_policy = AdaptiveThreshold(Target("llm_share", a.target), start=t0, step=a.step)
    adaptive, q_adapt = asyncio.run(run(adaptive_policy, test_suite, stream, scorer, weak, strong))
    w = a.window
    r_static, r_adapt = rolling(static, w), rolling(adaptive, w)
    # First request after the shift from which the adaptive rolling share stays within ±5 points.
    after = r_adapt[a.n :]
    bad = np.nonzero(np.abs(after - a.target) > 0.05)[0]
    settle = int(bad[-1] + 1 + w) if len(bad) else w
    phase2_static = float(static[a.n + settle :].mean()) if a.n + settle < len(static) else None
    phase2_adapt = float(adaptive[a.n + settle :].mean()) if a.n + settle < len(adaptive) else None
    result = {
        "target_llm_share": a.target,
        "mix_easy": mix,
        "requests_per_phase": a.n,
        "window": w,
        "threshold_start": t0,
        "threshold_end_adaptive": adaptive_policy.threshold,
        "phase1_share": {
            "static": float(static[: a.n].mean()),
            "adaptive": float(adaptive[: a.n].mean()),
        },
        "phase2_share_after_settling": {"static": phase2_static, "adaptive": phase2_adapt},
        "requests_to_settle_after_shift": settle,
        "quality_by_phase": {
            "static": [float(q_static[: a.n].mean()), float(q_static[a.n :].mean())],
            "adaptive": [float(q_adapt[: a.n].mean()), float(q_adapt[a.n :].mean())],
        },
        "max_abs_error_after_settling": {
            "static": float(np.max(np.abs(r_static[a.n + settle - w + 1 :] - a.target))),
            "adaptive": float(np.max(np.abs(r_adapt[a.n + settle - w + 1 :] - a.target))),
        },
    }
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        x = np.arange(w, len(static) + 1)
        ax.plot(x, r_static, label="static threshold")
        ax.plot(x, r_adapt, label="adaptive threshold")
        ax.axhline(a.target, color="k", ls="--", lw=1, label=f"target {a.target:.0%}")
        ax.axhspan(a.target - 0.05, a.target + 0.05, color="k", alpha=0.07)
        ax.axvline(a.n, color="r", ls=":", label="mix shifts")
        ax.set_xlabel("request")
        ax.set_ylabel(f"LLM-call share (rolling {w})")
        ax.set_title(f"Drift on RouteLLM MMLU: easy share {mix[0]:.0%} → {mix[1]:.0%}")
        ax.legend()
        fig.tight_layout()
        Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
