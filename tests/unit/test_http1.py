"""The lean HTTP/1.1 client (models/http1.py) that OpenAIModel uses for non-streamed calls to a
plain-http upstream: byte for byte httpx's request, keep-alive reuse, a connection the server
closed between calls, chunked bodies, cookies handed back to httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from duetto.errors import ModelUnavailable
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.openai import OpenAIModel

pytestmark = pytest.mark.timeout(30)

CARD = ModelCard("llm", location="remote", trusted=False)
BODY = json.dumps(
    {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
).encode()

Reply = Callable[[int], bytes]  # request number -> the raw response


def plain(extra: bytes = b"") -> Reply:
    return lambda _: (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + (b"Content-Length: %d\r\n\r\n" % len(BODY))
        + BODY
    )


class Upstream:
    """A raw HTTP/1.1 server: records each request's bytes and connection number."""

    def __init__(self, reply: Reply, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after  # close each connection after one answer, unannounced
        self.requests: list[tuple[int, bytes]] = []
        self.connections = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((conn, head + await reader.readexactly(length)))
                writer.write(self.reply(len(self.requests)))
                await writer.drain()
                if self.close_after:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Upstream], asyncio.Future[Upstream]]]:
    servers: list[asyncio.Server] = []

    async def start(up: Upstream) -> Upstream:
        server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
        servers.append(server)
        up.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        return up

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()


async def test_same_bytes_as_httpx_and_one_kept_alive_connection(serve) -> None:  # type: ignore[no-untyped-def]
    up = await serve(Upstream(plain()))
    model = OpenAIModel(CARD, up.url, "m", api_key="sk-up", headers={"X-Team": "a"})
    request = ChatRequest.of("hello")
    first = await model.complete(request)
    await model.complete(request)
    assert model._lean is not None and first.text == "hi"
    assert [c for c, _ in up.requests] == [1, 1]  # the connection was reused
    model._lean = None  # the same call through httpx's connection pool
    await model.complete(request)
    assert up.requests[2][1] == up.requests[0][1]  # byte for byte
    # what the trace counts is what crossed the socket
    assert first.usage.bytes_sent == len(up.requests[0][1])
    assert first.usage.bytes_received == len(plain()(1))
    await model.aclose()


async def test_connection_closed_between_calls_and_chunked_bodies(serve) -> None:  # type: ignore[no-untyped-def]
    half = len(BODY) // 2
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % half
        + BODY[:half]
        + b"\r\n"
        + b"%x;ext=1\r\n" % (len(BODY) - half)
        + BODY[half:]
        + b"\r\n0\r\n\r\n"
    )
    up = await serve(Upstream(lambda _: chunked, close_after=True))
    model = OpenAIModel(CARD, up.url, "m", retries=0)
    for _ in range(3):  # no retries: a stale connection must not fail the call
        assert (await model.complete(ChatRequest.of("x"))).text == "hi"
        await asyncio.sleep(0.01)
    assert up.connections == 3
    await model.aclose()


async def test_cookie_set_by_the_upstream_goes_back(serve) -> None:  # type: ignore[no-untyped-def]
    up = await serve(
        Upstream(lambda n: plain(b"Set-Cookie: lb=node-7; Path=/\r\n" if n == 1 else b"")(n))
    )
    model = OpenAIModel(CARD, up.url, "m")
    await model.complete(ChatRequest.of("x"))
    await model.complete(ChatRequest.of("x"))
    assert b"cookie: lb=node-7" in up.requests[1][1].lower()
    await model.aclose()


async def test_errors_are_translated(serve) -> None:  # type: ignore[no-untyped-def]
    up = await serve(
        Upstream(lambda _: b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy")
    )
    model = OpenAIModel(CARD, up.url, "m", retries=1, backoff_s=0.001)
    with pytest.raises(Exception, match="HTTP 503") as info:
        await model.complete(ChatRequest.of("x"))
    assert getattr(info.value, "status", None) == 503 and len(up.requests) == 2
    garbage = await serve(Upstream(lambda _: b"SMTP ready\r\n\r\n"))
    model = OpenAIModel(CARD, garbage.url, "m", retries=0)
    with pytest.raises(ModelUnavailable, match="RemoteProtocolError"):
        await model.complete(ChatRequest.of("x"))
