"""Print the README's demo tables (phases, then every strategy and baseline) from a report.json
written by `duetto demo`:

    python scripts/demo_readme_table.py duetto-demo/report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from duetto.eval.report.model import Report, fmt


def main(path: str) -> None:
    r = Report.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    print("| phase | requests | LLM share | cost USD | quality (95% CI) |")
    print("|---|---|---|---|---|")
    for p in r.phase_rows():
        print(f"| {p['name']} | {p['requests']} | {p['llm']} | {p['cost']} | {p['quality']} |")
    print()
    print("| strategy | mode | quality (95% CI) | − LLM-only, paired CI | LLM calls | cost $/1k "
          "| latency p50 / p95 ms | remote B/req | energy J/req (est.) | PII leaks |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for e in r.entries():
        s, q = e.summary, e.summary.quality
        delta = s.extra.get("quality_delta_ci") or [None, None]
        print(
            f"| {e.short_label} | {s.mode or ''} | {fmt(q.mean, 2)} ({fmt(q.ci_low, 2)}–"
            f"{fmt(q.ci_high, 2)}) | {fmt(delta[0], 2)} to {fmt(delta[1], 2)} "
            f"| {fmt(s.llm_call_share, pct=True)} | {fmt(s.cost_usd_per_1k, 4)} "
            f"| {fmt(s.latency_ms.get('p50'), 0)} / {fmt(s.latency_ms.get('p95'), 0)} "
            f"| {fmt(s.remote_bytes_per_request, 0)} | {fmt(s.energy_j_per_request, 1)} "
            f"| {s.privacy_leaks} |"
        )
    print()
    print(r.recommendation_headline())
    for f in (r.recommendation or {}).get("findings") or []:
        print(f"- {f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "duetto-demo/report.json")
