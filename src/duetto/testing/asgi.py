"""The raw ASGI plumbing of the fake OpenAI server: what it records of an exchange, how it
answers (with a Content-Length, or by cutting the connection), and request sizes as received."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from duetto import openai_wire as wire

FaultKind = Literal["error", "timeout", "broken"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_REASONS = {400: "bad request", 404: "not found", 429: "rate limited", 500: "server error"}


@dataclass(slots=True)
class Exchange:
    """What the server saw of one request and how much body it sent back."""

    path: str
    body: dict[str, Any] | None
    request_bytes: int  # request line + headers + body, as received
    response_body_bytes: int = 0
    status: int = 200
    fault: FaultKind | None = None


class CutConnection(Exception):
    """Raised inside the app after the response started: uvicorn then drops the connection."""


class QuietCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, CutConnection)


def request_size(scope: Scope, body: bytes) -> int:
    """Bytes of the request as it came over the wire (HTTP/1.1 framing, Content-Length body)."""
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    line = f"{scope['method']} {target.decode('latin-1')} HTTP/{scope['http_version']}"
    return wire.head_size(line, scope["headers"]) + len(body)


async def send_bytes(
    send: Send,
    exchange: Exchange,
    status: int,
    headers: list[tuple[bytes, bytes]],
    data: bytes,
) -> None:
    exchange.status = status
    exchange.response_body_bytes += len(data)
    headers = [*headers, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def send_json(send: Send, exchange: Exchange, status: int, payload: Any) -> None:
    await send_bytes(send, exchange, status, JSON_HEADERS, wire.encode(payload))


async def send_error(
    send: Send,
    exchange: Exchange,
    status: int,
    message: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    kind = (
        "rate_limit_error"
        if status == 429
        else ("invalid_request_error" if status < 500 else "server_error")
    )
    data = wire.encode(wire.error_body(message, kind, _REASONS.get(status)))
    await send_bytes(send, exchange, status, [*JSON_HEADERS, *(extra_headers or [])], data)
