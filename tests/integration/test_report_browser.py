"""The HTML report as a decision maker sees it: rendered in headless Chromium, screenshot taken,
the recommendation's numbers rounded and no raw JSON in the visible text. Needs selenium and
Debian's chromium + chromium-driver; skips otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser_kit import headless_chromium, require_chromium

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")

from duetto.eval.report import write_report
from report_sample import demo_report

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

LONG_FLOAT = re.compile(
    r"(?<![\w.:])\d+\.\d{5,}"
)  # a figure nobody rounded (not "arXiv:2310.03003")


def test_report_reads_rounded_in_headless_chromium(tmp_path: Path) -> None:
    require_chromium()  # before any work: skips without a browser
    from selenium.webdriver.common.by import By

    report = demo_report()
    rec = report["recommendation"]
    paths = write_report(report, tmp_path)
    with headless_chromium() as driver:
        driver.get(paths["html"].resolve().as_uri())
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        box = driver.find_element(By.ID, "recommendation")
        words = box.text
        body = driver.find_element(By.TAG_NAME, "body").text
        # every plot is an image the browser decoded (phases, cost-quality, per axis)
        images = driver.find_elements(By.TAG_NAME, "img")
        widths = [driver.execute_script("return arguments[0].naturalWidth", i) for i in images]
        ids = {i.get_attribute("id") for i in images}
    assert {"phases-plot", "pareto-plot"} <= ids
    assert len(widths) >= 9 and all(w > 100 for w in widths)
    # the recommendation in words, its figures rounded as a reader wants them
    q = rec["quality"]
    lo, hi = rec["quality_delta_ci"]
    assert words.startswith(f"Use {rec['name']}")
    for figure in (
        f"{q['mean']:.2f}",
        f"{q['ci_low']:.2f}",
        f"{q['ci_high']:.2f}",
        f"{rec['llm_only_quality']:.2f}",
        f"{lo:.3f}",
        f"{hi:.3f}",
        f"{rec['llm_call_share'] * 100:.0f}%",
        f"{rec['cost_fraction_of_llm_only'] * 100:.0f}%",
    ):
        assert figure in words, figure
    assert LONG_FLOAT.search(repr(q["mean"]))  # the raw figure was long: rounding was needed
    assert repr(q["mean"]) not in body
    # no raw JSON anywhere on the page, and no figure with more than four decimals
    assert '{"' not in body and '": ' not in body
    assert LONG_FLOAT.findall(body) == []
    for phase in ("llm-only", "shadow", "distil+calibrate", "serve"):
        assert phase in body
