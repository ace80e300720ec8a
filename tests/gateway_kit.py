"""Set-up shared by the gateway and wire tests (unit and integration; tests/ is on the path
through its conftest): the slice of Engine the gateway uses over hand-built models, settings
with API keys, an in-process client (ASGI, the app's lifespan run, no socket), and the events
of a streamed body."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from duetto.gateway import ApiKey, GatewaySettings
from duetto.gateway.auth import hash_key
from duetto.models.base import ChatModel


class TinyEngine:
    """The slice of Engine the gateway uses, over hand-built models (and strategies)."""

    def __init__(
        self,
        models: dict[str, ChatModel],
        strategies: dict[str, ChatModel] | None = None,
        llm: str = "llm",
    ) -> None:
        self.models = models
        self.strategies: dict[str, ChatModel] = dict(strategies or {})
        self.model_wrappers: list[Any] = []
        self._llm = llm

    async def start(self) -> TinyEngine:
        return self

    async def aclose(self) -> None:
        pass

    def get(self, name: str) -> ChatModel:
        return self.strategies[name] if name in self.strategies else self.models[name]

    @property
    def llm(self) -> ChatModel:
        return self.models[self._llm]


def gateway_settings(
    tmp_path: Path, keys: Mapping[str, str] | list[ApiKey], **kw: Any
) -> GatewaySettings:
    """Settings with a SQLite store in `tmp_path` and API keys: `{tenant: plaintext key}`, or
    ApiKeys (with budgets, rate limits)."""
    if isinstance(keys, Mapping):
        keys = [ApiKey(name, hash_key(key)) for name, key in keys.items()]
    return GatewaySettings(db=str(tmp_path / "gw.db"), keys=keys, **kw)


@contextlib.asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` in process, inside its lifespan (the store and models started)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield client


def sse_events(text: str) -> list[Any]:
    """The data of each `data: ` line of a server-sent-events body: JSON decoded, "[DONE]"
    kept as the string."""
    return [
        line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


def priced_fake_models() -> dict[str, Any]:
    """A config's `models:` of two scripted models: `slm` local, `llm` remote at GPT-4o-mini's
    prices (what the loop's fit and the staged rollout bill)."""
    return {
        "slm": {"backend": "fake", "script": "x", "card": {"name": "slm"}},
        "llm": {
            "backend": "fake",
            "script": "y",
            "card": {
                "name": "llm",
                "location": "remote",
                "price_in_per_mtok": 0.15,
                "price_out_per_mtok": 0.6,
            },
        },
    }
