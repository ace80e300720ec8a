"""A lean keep-alive HTTP/1.1 client for one plain-`http://` origin: POST bytes, get the whole
response back. `OpenAIModel` uses it for non-streamed calls to a loopback or LAN upstream (a
local vLLM, llama.cpp server, the stand-in), where httpx's pool, h11 and anyio layers were the
largest share of the gateway's own CPU per request (docs/gateway.md, overhead). The request
bytes are httpx's own (a template built by httpx, Content-Length filled per call); failures
raise httpx's exceptions, so the caller translates them as before. TLS, proxies, streams and
cookies stay with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

import httpx

_CRLF2 = b"\r\n\r\n"
_LIMIT = 1 << 24  # longest head or chunk-size line read in one go


@dataclass(slots=True)
class Reply:
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    head_bytes: int  # status line, headers and blank line as received


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not (self.writer.is_closing() or self.reader.at_eof())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Http1Pool:
    """Keep-alive connections to `request.url`'s origin; `request` (built by httpx, empty body)
    is the template of every POST: same request line and headers, Content-Length per call."""

    def __init__(
        self, request: httpx.Request, timeout: httpx.Timeout, limits: httpx.Limits
    ) -> None:
        url = request.url
        if url.scheme != "http":
            raise ValueError("Http1Pool serves plain http:// only")
        self.request = request  # also what error responses are attached to
        self.host, self.port = url.host, url.port or 80
        line = b"POST " + url.raw_path + b" HTTP/1.1\r\n"
        before, after = b"", b""
        seen_length = False
        for k, v in request.headers.raw:
            if k.lower() == b"content-length":
                seen_length = True
                continue
            if seen_length:
                after += k + b": " + v + b"\r\n"
            else:
                before += k + b": " + v + b"\r\n"
        self._head = (line + before, after + b"\r\n")
        self.timeout = timeout
        self._idle: deque[_Conn] = deque()
        self._max_idle = limits.max_keepalive_connections or 0
        self._slots = asyncio.Semaphore(limits.max_connections or 1 << 30)

    def head(self, length: int) -> bytes:
        """The request line and headers of a POST of `length` bytes (httpx's bytes)."""
        return self._head[0] + b"Content-Length: " + str(length).encode() + b"\r\n" + self._head[1]

    async def post(self, head: bytes, content: bytes) -> Reply:
        try:
            async with asyncio.timeout(self.timeout.pool):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection", request=self.request) from exc
        try:
            while self._idle:
                conn = self._idle.pop()
                if not conn.usable():
                    conn.close()
                    continue
                try:
                    return await self._exchange(conn, head + content, reused=True)
                except _Stale:  # the server closed it as we reused it: nothing was answered
                    conn.close()
            return await self._exchange(await self._connect(), head + content, reused=False)
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _connect(self) -> _Conn:
        try:
            async with asyncio.timeout(self.timeout.connect):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=_LIMIT)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                str(exc) or "connect timed out", request=self.request
            ) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=self.request) from exc
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, data: bytes, reused: bool) -> Reply:
        answered = False  # a reused connection closed before any byte of the answer is _Stale
        try:
            conn.writer.write(data)
            async with asyncio.timeout(self.timeout.read):
                raw = await conn.reader.readuntil(_CRLF2)
            answered = True
            status, reason, headers, keep = _parse_head(raw)
            body = await self._body(conn.reader, status, headers)
        except asyncio.IncompleteReadError as exc:
            conn.close()
            if reused and not answered and not exc.partial:
                raise _Stale from exc
            raise httpx.RemoteProtocolError(
                "server disconnected without a complete response", request=self.request
            ) from exc
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout("read timed out", request=self.request) from exc
        except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            if reused and not answered and isinstance(exc, ConnectionError):
                raise _Stale from exc
            kind = httpx.ReadError if isinstance(exc, OSError) else httpx.RemoteProtocolError
            raise kind(str(exc) or type(exc).__name__, request=self.request) from exc
        except BaseException:  # cancelled: the response may still come; never reuse
            conn.close()
            raise
        if keep is not False and conn.usable() and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return Reply(status, reason, headers, body, len(raw))

    async def _body(
        self, reader: asyncio.StreamReader, status: int, headers: list[tuple[bytes, bytes]]
    ) -> bytes:
        if status in (204, 304):
            return b""
        length: int | None = None
        chunked = False
        for k, v in headers:
            name = k.lower()
            if name == b"content-length":
                length = int(v)
            elif name == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
        async with asyncio.timeout(self.timeout.read):
            if chunked:
                parts: list[bytes] = []
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                            pass
                        return b"".join(parts)
                    parts.append(await reader.readexactly(size))
                    await reader.readexactly(2)
            if length is not None:
                return await reader.readexactly(length)
            return await reader.read()  # no length: the body ends with the connection


class _Stale(Exception):
    """A reused connection was closed by the server before any byte of the response."""


def _parse_head(raw: bytes) -> tuple[int, str, list[tuple[bytes, bytes]], bool | None]:
    """(status, reason, headers, keep-alive: False when the server closes, None unsaid)."""
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    keep: bool | None = None if version == b"HTTP/1.1" else False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"malformed header line: {line[:80]!r}")
        value = value.strip()
        headers.append((name, value))
        if name.lower() == b"connection":
            keep = value.lower() != b"close"
    status = int(code)
    if status < 200:
        raise ValueError(f"unexpected interim response {status}")
    return status, reason.decode("latin-1"), headers, keep
