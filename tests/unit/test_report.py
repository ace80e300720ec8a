from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from duetto.eval.aggregate import SUMMARY_KEYS, summarize
from duetto.eval.report import print_summary, write_report

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")


def _records(name: str, quality: float, share: float, n: int = 20) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        llm = i < round(share * n)
        out.append(
            {
                "strategy": name,
                "mode": "baseline" if name.endswith("only") else "cascade",
                "item_id": f"i{i}",
                "quality": float(i < round(quality * n)),
                "latency_ms": 100.0 + 10 * i,
                "ttft_ms": None,
                "cost_usd": 0.002 if llm else 0.0,
                "remote_bytes": 900 if llm else 0,
                "energy_j": 2.0,
                "pii_sent": int(llm and i == 0),
                "llm_calls": int(llm),
                "tokens_in": 20,
                "tokens_out": 5,
            }
        )
    return out


@pytest.fixture()
def report() -> dict[str, Any]:
    s = {
        x["name"]: x
        for x in summarize(
            _records("cascade-verify", 0.8, 0.4)
            + _records("route-knn", 0.7, 0.3)
            + _records("slm_only", 0.5, 0.0)
            + _records("llm_only", 0.9, 1.0)
            + _records("random", 0.6, 0.4)
            + _records("oracle", 0.95, 0.35)
        )
    }
    s["random"]["note"] = "random routing at LLM share 0.40"
    return {
        "title": "unit report <&>",
        "created": "2026-01-02 03:04:05",
        "workload": {"name": "demo", "n": 20, "calibration_n": 10, "heldout_n": 10},
        "models": [
            {
                "name": "smollm2-135m",
                "location": "local",
                "trusted": True,
                "label": "",
                "price_in_per_mtok": 0.0,
                "price_out_per_mtok": 0.0,
                "source": "",
            },
            {
                "name": "qwen-stand-in",
                "location": "remote",
                "trusted": False,
                "label": "offline stand-in for a remote LLM",
                "price_in_per_mtok": 2.5,
                "price_out_per_mtok": 10.0,
                "source": "prices from https://example.com/pricing",
            },
        ],
        "notes": ["energy figures are estimates"],
        "strategies": [s["cascade-verify"], s["route-knn"]],
        "baselines": {k: s[k] for k in ("slm_only", "llm_only", "random", "oracle")},
        "recommendation": {
            "strategy": "cascade-verify",
            "mode": "cascade",
            "quality": s["cascade-verify"]["quality"],
            "meets_ci_bound": True,
        },
        "calibration": {"cascade-verify": {"threshold": 0.42, "target": "llm_share=0.4"}},
        "errors": 0,
    }


def test_write_report_files_and_json(tmp_path: Path, report: dict[str, Any]) -> None:
    report["strategies"][0]["energy_j"] = float("nan")  # NaN must not break JSON
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "pareto", "labels", "html"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert paths["pareto"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    for key in (
        "title",
        "created",
        "workload",
        "models",
        "notes",
        "strategies",
        "baselines",
        "recommendation",
        "calibration",
    ):
        assert key in data
    assert set(data["baselines"]) == {"slm_only", "llm_only", "random", "oracle"}
    assert data["strategies"][0]["energy_j"] is None
    for s in data["strategies"]:
        assert set(SUMMARY_KEYS) <= set(s)


def test_html_is_self_contained_and_complete(tmp_path: Path, report: dict[str, Any]) -> None:
    html = write_report(report, tmp_path)["html"].read_text()
    # no external resources: nothing fetched over http(s), no protocol-relative links
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", html, re.IGNORECASE)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"https?://", html)
    assert "@import" not in html and "url(" not in html
    assert "<script" not in html
    # 1 Pareto plot + 7 per-axis charts
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) == 8
    for text in (
        "Cost vs quality",
        "Recommendation",
        "cascade-verify",
        "route-knn",
        "SLM only",
        "LLM only",
        "oracle",
        "offline stand-in for a remote LLM",
        "qwen-stand-in",
        "demo",
        "2026-01-02 03:04:05",
        "held-out 10",
        "random routing at LLM share 0.40",
        "Calibration",
        "estimate",
    ):
        assert text in html, text
    assert html.count('class="baseline"') == 4
    assert "unit report &lt;&amp;&gt;" in html  # escaped


def test_report_without_optional_parts(tmp_path: Path, report: dict[str, Any]) -> None:
    report["recommendation"] = None
    del report["calibration"]
    report["strategies"] = []
    paths = write_report(report, tmp_path)
    html = paths["html"].read_text()
    assert "No recommendation" in html and "Calibration" not in html
    assert json.loads(paths["json"].read_text())["recommendation"] is None


def test_print_summary_one_table(report: dict[str, Any]) -> None:
    from rich.console import Console

    buf = io.StringIO()
    print_summary(report, Console(file=buf, width=80, color_system=None))
    out = buf.getvalue()
    for name in ("cascade-verify", "route-knn", "SLM only*", "LLM only*", "oracle*"):
        assert name in out
    assert max(len(line) for line in out.splitlines()) <= 80
    cascade_row = next(line for line in out.splitlines() if "cascade-verify" in line)
    assert "0.80 ." in cascade_row and "40%" in cascade_row  # quality + CI, LLM share
    assert "leaks" in out  # the last column still fits in 80 columns
    assert "Recommendation: Use cascade-verify: quality 0.80" in out  # words, rounded
