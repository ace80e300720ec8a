"""The gateway and capabilities: a request no candidate can serve is a 400 naming the
capability (before any model call or budget reservation), /v1/models lists capabilities."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import create_app
from gateway_kit import asgi_client, gateway_settings

pytestmark = pytest.mark.timeout(60)

KEY = "sk-caps"
AUTH = {"Authorization": f"Bearer {KEY}"}

CONFIG: dict[str, Any] = {
    "models": {
        "slm": {
            "backend": "fake",
            "script": "small",
            "card": {"name": "slm-card", "context_size": 256, "tools": False, "vision": False},
        },
        "llm": {
            "backend": "fake",
            "script": "large",
            "card": {"name": "llm-card", "location": "remote", "context_size": 32000},
        },
    },
    "strategies": {
        "route": {
            "mode": "route",
            "models": ["slm", "llm"],
            "threshold": 0.5,
            "scorer": {"kind": "task_prior", "priors": {}},
        },
        "pipe": {
            "mode": "pipeline",
            "stages": [{"model": "llm", "role": "draft"}, {"model": "slm", "role": "format"}],
        },
    },
}


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = gateway_settings(tmp_path, {"k": KEY})
    app = create_app(Engine(parse_config(CONFIG)), settings)
    async with asgi_client(app) as client:
        yield app, client


def chat(model: str, content: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **kw}


async def test_long_request_goes_where_it_fits_or_is_a_400(tmp_path: Path) -> None:
    long = "word " * 600  # ~750 tokens: over the SLM's 256
    async with gateway(tmp_path) as (app, c):
        r = await c.post("/v1/chat/completions", json=chat("route", long), headers=AUTH)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "large"
        trace = await c.get(f"/v1/traces/{r.headers['x-duetto-trace-id']}", headers=AUTH)
        step = trace.json()["trace"]
        assert (
            step["decision"] == "capability" and "skipped slm-card" in step["extra"]["skipped"][0]
        )
        r = await c.post("/v1/chat/completions", json=chat("slm", long), headers=AUTH)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "missing_capability"
        assert "context" in err["message"] and "slm-card" in err["message"]
        r = await c.post("/v1/chat/completions", json=chat("pipe", long), headers=AUTH)
        assert r.status_code == 400 and "pipeline 'pipe'" in r.json()["error"]["message"]
        # refused at admission: before any reservation or model call, counted as such
        assert app.state.metrics.rejected.labels("capability")._value.get() == 2


async def test_models_list_capabilities(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (_, c):
        data = (await c.get("/v1/models", headers=AUTH)).json()["data"]
        by_id = {m["id"]: m["duetto"] for m in data}
        slm, llm = by_id["slm"]["capabilities"], by_id["llm"]["capabilities"]
        assert slm["context_tokens"] == 256 and not slm["tools"] and slm["json_schema"]
        assert llm["tools"] and llm["context_tokens"] == 32000
        route = by_id["route"]["capabilities"]  # a chooser: the union
        assert route["tools"] and route["context_tokens"] == 32000
        pipe = by_id["pipe"]["capabilities"]  # every stage reads; the last answers
        assert pipe["context_tokens"] == 256 and not pipe["tools"]


IMAGE = [
    {"type": "text", "text": "what is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_tools_go_to_a_capable_model_or_are_a_400(tmp_path: Path) -> None:
    async with gateway(tmp_path) as (_, c):
        body = chat("route", "weather in Paris?", tools=TOOLS)
        r = await c.post("/v1/chat/completions", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["duetto"]["answered_by"] == "route"
        r = await c.post("/v1/chat/completions", json={**body, "model": "slm"}, headers=AUTH)
        assert r.status_code == 400 and "needs tools" in r.json()["error"]["message"]


async def test_embedded_defaults_refuse_an_image_naming_vision(tmp_path: Path) -> None:
    """The embedded defaults' cards (SmolLM2 + stand-in, neither reads images), served by
    scripted models: every strategy and model answers an image request with a 400."""
    from duetto.config import load_default_config
    from duetto.fitted import default_calibration

    cfg = load_default_config()
    for m in cfg.models.values():
        m.backend, m.script = "fake", "ok"
    settings = gateway_settings(tmp_path, {"k": KEY})
    # scripted backends are no longer the embedded defaults: their shipped calibration is given
    app = create_app(Engine(cfg, fitted=default_calibration()), settings)
    async with asgi_client(app) as c:
        for name in [*cfg.strategies, *cfg.models]:
            body = {"model": name, "messages": [{"role": "user", "content": IMAGE}]}
            r = await c.post("/v1/chat/completions", json=body, headers=AUTH)
            assert r.status_code == 400, name
            err = r.json()["error"]
            assert err["code"] == "missing_capability" and "needs vision" in err["message"]
            assert name in err["message"] or cfg.models.get(name) is not None
