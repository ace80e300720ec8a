"""The report's figures: labels that do not collide, curves over thresholds, the phases plot,
and an HTML page without raw JSON or long floats."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")

from duetto.calibrate import Operating
from duetto.eval.report import Report, write_report
from duetto.eval.report.labels import overlapping
from duetto.eval.report.plots import pareto_figure
from duetto.eval.runner import curve_points
from report_sample import STRATEGIES, demo_report


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return w, h


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_report(demo_report(), tmp_path_factory.mktemp("report"))


def test_label_boxes_do_not_overlap_and_lie_on_the_image(written: dict[str, Path]) -> None:
    side = json.loads(written["labels"].read_text())
    boxes = [tuple(lab["box"]) for lab in side["labels"]]
    # every strategy and every baseline but "best single model" (the same point again)
    assert len(boxes) == len(STRATEGIES) + 4
    texts = {lab["text"] for lab in side["labels"]}
    assert {"cascade-student", "assist-hints", "LLM only", "oracle"} <= texts
    assert overlapping(boxes) == []
    width, height = _png_size(written["pareto"].read_bytes())
    assert side["size"] == [width, height]
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def test_overlapping_finds_a_collision() -> None:
    # the check the test above relies on can fail
    assert overlapping([(0, 0, 10, 10), (20, 0, 30, 10), (9, 9, 15, 15)]) == [(0, 2)]


def test_labels_clear_of_each_other_when_every_point_is_the_same() -> None:
    rep = demo_report()
    for s in rep["strategies"]:
        s["quality"] = {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        s["cost_usd_per_1k"] = 0.02
    _, drawn = pareto_figure(Report.from_dict(rep))
    assert len(drawn) == len(STRATEGIES) + 4
    assert overlapping([tuple(d["box"]) for d in drawn]) == []


def test_curves_over_thresholds_are_drawn_with_the_calibrated_point() -> None:
    rep = Report.from_dict(demo_report())
    fig, _ = pareto_figure(rep)
    ax = fig.axes[0]
    thresholded = [n for n, mode, *_ in STRATEGIES if mode in ("cascade", "route")]
    # one line per curve (more than two points), one star per calibrated point
    lines = {ln.get_gid(): ln for ln in ax.get_lines() if ln.get_gid()}
    for name in thresholded:
        assert len(lines[f"curve {name}"].get_xdata()) > 2
        assert lines[f"calibrated {name}"].get_marker() == "*"
    assert len(lines) == 2 * len(thresholded)
    for name in thresholded:
        c = rep.calibration[name]  # type: ignore[index]
        assert any(
            p["cost_per_1k"] == c["calib_cost_per_1k"] and p["quality"] == c["calib_quality"]
            for p in c["curve"]
        )


def test_curve_points_thinned_with_both_ends_and_the_chosen_point() -> None:
    pts = [Operating(float(t), t / 100, 1 - t / 100, t / 10) for t in range(100)]
    chosen = pts[57]
    out = curve_points(pts, chosen, limit=10)
    assert 10 <= len(out) <= 11
    assert out[0]["threshold"] == 0.0 and out[-1]["threshold"] == 99.0
    assert any(p["threshold"] == 57.0 for p in out)
    assert len(curve_points(pts[:5], pts[0])) == 5


def test_phases_plot_in_the_html(written: dict[str, Path]) -> None:
    assert _png_size(written["phases"].read_bytes())[0] > 300
    html = written["html"].read_text()
    assert 'id="phases-plot"' in html and 'id="pareto-plot"' in html


def test_no_phases_no_phases_plot(tmp_path: Path) -> None:
    rep: dict[str, Any] = demo_report()
    del rep["phases"]
    paths = write_report(rep, tmp_path)
    assert "phases" not in paths and 'id="phases-plot"' not in paths["html"].read_text()


def test_html_has_no_raw_json_and_no_long_floats(written: dict[str, Path]) -> None:
    html = written["html"].read_text()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert '{"' not in text and "&#34;" not in text and "&quot;:" not in text
    assert not re.findall(r"(?<![\w.:])\d+\.\d{5,}", text)  # not an arXiv id
    # the recommendation's raw figures have many decimals; the page shows them rounded
    rec = demo_report()["recommendation"]
    assert f"{rec['quality']['mean']:.2f}" in text
    assert f"{rec['cost_fraction_of_llm_only'] * 100:.0f}%" in text
    assert "512 s" in text  # elapsed, rounded
