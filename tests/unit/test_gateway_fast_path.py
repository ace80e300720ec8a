"""The request path's shortcuts keep their promises: the OpenAI client's direct send puts the
same bytes on the wire as httpx's client and still honours cookies; `store_before_answer: false`
answers first and still stores every record exactly once; `duetto serve` picks uvloop and
httptools when they are installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from duetto.cli.serve import fast_io
from duetto.gateway import create_app
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel
from duetto.store import TraceStore
from duetto.testing.scripted import ScriptedModel
from gateway_kit import TinyEngine, asgi_client, gateway_settings

pytestmark = pytest.mark.timeout(60)

CARD = ModelCard("llm", location="remote", trusted=False)
KEY = "sk-fast"
COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


async def test_direct_send_matches_the_client_and_keeps_cookies() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"set-cookie": "lb=node-7; Path=/"} if len(seen) == 1 else {}
        return httpx.Response(200, json=COMPLETION, headers=headers)

    model = OpenAIModel(
        CARD,
        "http://up.example/v1/",
        "m",
        api_key="sk-up",
        transport=httpx.MockTransport(handler),
        headers={"X-Team": "a"},
    )
    first = await model.complete(ChatRequest.of("hello"))
    await model.complete(ChatRequest.of("hello"))
    assert first.text == "hi"
    # what httpx's client builds for the same call (with the cookie it now holds)
    json_type = {"Content-Type": "application/json"}
    expected = model._client().build_request(
        "POST", "chat/completions", content=seen[1].content, headers=json_type
    )
    assert seen[1].url == expected.url == "http://up.example/v1/chat/completions"
    assert seen[1].headers.multi_items() == expected.headers.multi_items()
    assert seen[1].extensions["timeout"] == model.timeout.as_dict()
    assert "cookie" not in seen[0].headers
    assert seen[1].headers["cookie"] == "lb=node-7"  # a sticky load balancer's cookie returns
    await model.aclose()


async def test_direct_send_translates_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    model = OpenAIModel(CARD, "http://up/v1", "m", transport=httpx.MockTransport(handler))
    with pytest.raises(Exception, match="ConnectError"):
        await model.complete(ChatRequest.of("x"))


async def test_proxy_from_the_environment_goes_through_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    model = OpenAIModel(CARD, "http://up/v1", "m", transport=httpx.MockTransport(lambda r: r))
    model._client()
    assert model._direct is None  # the client mounts the proxy: no shortcut
    monkeypatch.delenv("HTTPS_PROXY")
    model._http = None
    model._client()
    assert model._direct is not None


@pytest.mark.parametrize("before", [True, False])
async def test_every_answer_is_stored_once_either_way(tmp_path: Path, before: bool) -> None:
    engine = TinyEngine({"llm": ScriptedModel(CARD, "remote answer")})
    settings = gateway_settings(tmp_path, {"k": KEY}, store_before_answer=before)
    app = create_app(engine, settings)  # type: ignore[arg-type]
    ids: list[str] = []
    body = {"model": "llm", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {KEY}"}
    async with asgi_client(app) as c:
        for i in range(6):
            r = await c.post(
                "/v1/chat/completions", json={**body, "stream": i % 2 == 1}, headers=auth
            )
            assert r.status_code == 200 and "remote answer" in r.text
            ids.append(r.headers["x-duetto-trace-id"])
        if before:  # committed before the answer ended
            assert all([await app.state.store.get(t) for t in ids])
    store = await TraceStore(str(tmp_path / "gw.db")).start()  # after shutdown: all there
    try:
        assert sorted(await store.ids()) == sorted(ids)
        records = [await store.get(t) for t in ids]
        assert all(r is not None and r.status == "ok" for r in records)
    finally:
        await store.close()


def test_serve_uses_the_c_loop_and_parser_when_installed() -> None:
    loop, http = fast_io()
    assert loop == ("uvloop" if importlib.util.find_spec("uvloop") else "asyncio")
    assert http == ("httptools" if importlib.util.find_spec("httptools") else "h11")
