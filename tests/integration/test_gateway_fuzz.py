"""Fuzz the gateway's OpenAPI schema with schemathesis over a real socket: no 5xx, ever.
Bodies that name a model are pointed at a real one half of the time, so fuzzed conversations
reach the strategies and the store, not only the model lookup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from duetto.config import parse_config  # noqa: E402
from duetto.engine import Engine  # noqa: E402
from duetto.gateway import ApiKey, GatewaySettings, create_app  # noqa: E402
from duetto.gateway.auth import hash_key  # noqa: E402
from duetto.testing import ServerThread  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

KEY = "sk-fuzz"
CONFIG = {
    "models": {
        "slm": {"backend": "fake", "script": "small", "card": {"name": "slm-card"}},
        "llm": {
            "backend": "fake",
            "script": "large",
            "card": {
                "name": "llm-card",
                "location": "remote",
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 2.0,
            },
        },
    },
    "strategies": {
        "route": {
            "mode": "route",
            "models": ["slm", "llm"],
            "threshold": 0.5,
            "scorer": {"kind": "length", "scale_chars": 40},
        }
    },
    "gateway": {"fallback": "slm"},
}


def make_app(db: str) -> Any:
    settings = GatewaySettings(
        db=db, keys=[ApiKey("fuzz", hash_key(KEY), budget_usd=1e6, rpm=10**6)], fallback="slm"
    )
    return create_app(Engine(parse_config(CONFIG)), settings)


schema = schemathesis.openapi.from_dict(make_app(":memory:").openapi())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    db = str(Path(tmp_path_factory.mktemp("fuzz")) / "gw.db")
    with ServerThread(make_app(db)) as server:
        yield server


@schema.parametrize()
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_no_server_errors(case: Any, gateway: ServerThread) -> None:
    body = case.body
    if isinstance(body, dict) and "model" in body and hash(repr(body)) % 2 == 0:
        body["model"] = "route"
    response = case.call(
        base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        error = response.json().get("error")
        assert error and error.get("message"), "errors are OpenAI-shaped, with a reason"
