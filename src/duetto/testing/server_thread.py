"""Run an ASGI app on a real loopback socket in a background thread (tests, benchmarks).

    with ServerThread(create_app(engine, settings)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-...")

uvicorn is imported when the server starts. `config` overrides the uvicorn settings (the fake
OpenAI server turns logging, lifespan and the date header off); `loop` is the server's event
loop once it runs, for `call_soon_threadsafe` from the test's thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

DEFAULTS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "lifespan": "on",
    "backlog": 4096,
    "timeout_graceful_shutdown": 5,
}


class ServerThread:
    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: Mapping[str, Any] | None = None,
        name: str = "server",
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.config = {**DEFAULTS, **(config or {})}
        self.name = name
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._server: Any = None  # uvicorn.Server
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> ServerThread:
        import uvicorn

        if self._thread is not None:
            return self
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when proto says
        # TCP; without it Nagle + delayed ACK add ~40 ms to every keep-alive response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(sock,), daemon=True, name=f"{self.name}-{self.port}"
        )
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s) or self._error is not None:
            raise RuntimeError(f"{self.name} did not start: {self._error!r}")
        return self

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            server = self._server
            task = asyncio.create_task(server.serve(sockets=[sock]))
            # uvicorn exposes only a `started` flag, no event to wait on
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            if task.done() and task.exception() is not None:
                self._error = task.exception()
            self._ready.set()
            await task

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
        finally:
            sock.close()
            self._ready.set()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(self.stop_timeout_s)
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
