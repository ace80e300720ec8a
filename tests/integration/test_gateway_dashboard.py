"""The dashboard renders in headless Chromium after traffic and shows non-zero request count,
LLM share and savings. Needs selenium and Debian's chromium + chromium-driver; skips otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from browser_kit import headless_chromium, require_chromium
from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import GatewaySettings, create_app
from duetto.testing import ServerThread

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_dashboard_shows_traffic_in_headless_chromium(tmp_path: Path) -> None:
    require_chromium()  # before any work: skips without a browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = parse_config(
        {
            "models": {
                "slm": {"backend": "fake", "script": "small answer", "card": {"name": "slm-card"}},
                "llm": {
                    "backend": "fake",
                    "script": "a longer answer from the large model",
                    "card": {
                        "name": "llm-card",
                        "location": "remote",
                        "price_in_per_mtok": 2.5,
                        "price_out_per_mtok": 10.0,
                    },
                },
            },
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "threshold": 0.5,
                    "scorer": {"kind": "length", "scale_chars": 30},
                }
            },
        }
    )
    settings = GatewaySettings(db=str(tmp_path / "gw.db"))
    with ServerThread(create_app(Engine(cfg), settings)) as gw:
        for i in range(30):  # 10 long prompts go to the LLM, 20 short ones stay local
            prompt = "please explain this in detail, step by step" if i % 3 == 0 else "hi"
            r = httpx.post(
                gw.base_url + "/chat/completions",
                json={"model": "route", "messages": [{"role": "user", "content": prompt}]},
            )
            assert r.status_code == 200
        with headless_chromium() as driver:
            driver.get(gw.url + "/dashboard")
            WebDriverWait(driver, 20).until(
                lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
            )
            shot = tmp_path / "dashboard.png"
            driver.save_screenshot(str(shot))
            values = {
                k: driver.find_element(By.ID, k).text
                for k in ("requests", "llm_share", "saved", "cost", "latency")
            }
            rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#strategies tr")]
    assert shot.stat().st_size > 10_000  # a real rendered page, not a blank
    assert values["requests"] == "30"
    assert values["llm_share"] == "33.3%"
    assert float(values["saved"]) > 0
    assert len(rows) == 1 and rows[0].startswith("route")
