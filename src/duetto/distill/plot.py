"""A PNG of the rounds: LLM-call share and quality per round (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_rounds(result: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = result["rounds"]
    xs = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(xs, [r["llm_call_share"] for r in rounds], "o-", label="LLM-call share")
    ax.plot(xs, [r["quality"] for r in rounds], "s-", label="quality (system)")
    ax.plot(xs, [r["teacher_quality"] for r in rounds], "--", color="grey", label="teacher alone")
    bound = " (gold teacher: upper bound)" if result.get("teacher_is_upper_bound") else ""
    title = f"{result['task']}: {result['student']} student, teacher {result['teacher']}{bound}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("round")
    ax.set_xticks(xs)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
