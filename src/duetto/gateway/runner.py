"""Run a gateway app on a real loopback socket in a background thread (tests, benchmarks).

with ServerThread(create_app(engine, settings)) as server:
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-...")
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any


class ServerThread:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
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

    def start(self) -> ServerThread:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            backlog=4096,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), daemon=True, name=f"gateway-{self.port}"
        )
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}")
        return self

    def _run(self, sock: socket.socket) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            server = self._server
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if task.done() and task.exception() is not None:
                self._error = task.exception()
            self._ready.set()
            await task

        try:
            asyncio.run(serve())
        except BaseException as exc:
            self._error = exc
        finally:
            sock.close()
            self._ready.set()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
