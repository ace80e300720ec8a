"""Serving the stand-in LLM: llama-cpp-python's OpenAI-compatible server in a subprocess.

`StandinServer` picks a free loopback port, starts the server (killed when its parent dies, on
Linux, and reaped at exit otherwise), waits until it answers, and hands out an `OpenAIModel`
pointed at it, carrying the stand-in's card: remote, untrusted, priced like a real hosted model.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from duetto.errors import ModelUnavailable, UserError
from duetto.models.base import ModelCard
from duetto.models.standin.fetch import STANDIN_SPECS, fetch_standin, spec_of

if TYPE_CHECKING:
    from duetto.models.openai import OpenAIModel

# Qwen2.5 speaks ChatML; llama-cpp-python's ChatML handler with function calling answers
# `tools` requests with tool calls (a grammar forces them for "required" / a named function)
# and plain requests as "chatml" does.
CHAT_FORMAT = "chatml-function-calling"

# A real mid-size hosted model's list prices, so cost figures of stand-in runs mean something.
GPT4O_MINI_PRICE_IN = 0.15  # USD per million input tokens
GPT4O_MINI_PRICE_OUT = 0.60
PRICE_SOURCE = (
    "prices: OpenAI API pricing for gpt-4o-mini, $0.15 / $0.60 per 1M input / output tokens "
    "(https://openai.com/api/pricing/, as listed since July 2024); energy: duetto's default "
    "remote J/token (Samsi et al., arXiv:2310.03003)"
)


def standin_card(size: str = "0.5b", *, context_size: int = 4096) -> ModelCard:
    """The card of the stand-in LLM: remote, untrusted, priced like a real hosted model."""
    spec = spec_of(size)
    return ModelCard(
        name=f"qwen2.5-coder-{spec.size} (stand-in LLM)",
        location="remote",
        trusted=False,
        price_in_per_mtok=GPT4O_MINI_PRICE_IN,
        price_out_per_mtok=GPT4O_MINI_PRICE_OUT,
        context_size=context_size,
        label=(f"offline stand-in for a remote LLM (local {spec.display} over loopback HTTP)"),
        source=PRICE_SOURCE,
    )


def standin_command(
    model_path: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    model_name: str = "standin",
    n_ctx: int = 4096,
    n_threads: int = 2,
    chat_format: str = CHAT_FORMAT,
) -> list[str]:
    """The llama-cpp-python server command line (flags of llama_cpp.server 0.3.36)."""
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", model_name,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads),
        "--chat_format", chat_format,
        "--verbose", "false",
    ]  # fmt: skip


def standin_tool_choice(body: dict[str, Any]) -> dict[str, Any]:
    """llama-cpp-python's chatml-function-calling handler reads a missing `tool_choice` as
    "none" and fails on "required"; OpenAI reads a missing one as "auto" when tools are given.
    Say so explicitly: unset → "auto", "required" with one tool → that tool by name (its
    grammar forces the call), "required" with several → "auto" (the closest it offers)."""
    tools = body.get("tools")
    if not tools:
        return body
    choice = body.get("tool_choice")
    if choice is None:
        return {**body, "tool_choice": "auto"}
    if choice == "required":
        if len(tools) == 1:
            name = tools[0]["function"]["name"]
            return {**body, "tool_choice": {"type": "function", "function": {"name": name}}}
        return {**body, "tool_choice": "auto"}
    return body


def _server_env() -> dict[str, str]:
    """The environment without variables the server would read as settings.

    llama_cpp.server's settings are pydantic BaseSettings (any env var named like a flag, e.g.
    API_KEY or N_CTX, overrides it) and its __main__ lets HOST/PORT override the command line.
    """
    try:
        from llama_cpp.server.settings import Settings
    except ImportError as exc:
        raise ModelUnavailable(
            "llama-cpp-python's server is not installed: pip install 'duetto[local]'"
        ) from exc
    names = {n.lower() for n in Settings.model_fields} | {"config_file"}
    return {k: v for k, v in os.environ.items() if k.lower() not in names}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a `preexec_fn` after which the server gets SIGKILL when the thread that started
    it dies (a SIGTERM or Ctrl-C of `duetto demo`/`eval` that skipped the clean stop included).

    SIGKILL, not SIGTERM: on SIGTERM the server's uvicorn shuts down gracefully, i.e. only after
    the answer it is generating, which for a long one kept it running minutes after its parent.
    The stand-in holds no state worth a clean exit. libc is loaded here, in the parent: the
    child between fork and exec must not import."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    parent = os.getpid()

    def in_child() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return in_child


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _reap_servers() -> None:
    for proc in list(_LIVE):
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _LIVE.discard(proc)


def _tail(log: IO[bytes] | None, n_lines: int = 15) -> str:
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    lines = log.read().decode("utf-8", "replace").strip().splitlines()
    return "\n".join(lines[-n_lines:])


class StandinServer:
    """`async with StandinServer() as srv:` runs the stand-in at `srv.base_url`, then stops it."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        size: str = "0.5b",
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int | None = 4096,
        n_threads: int = 2,
        chat_format: str = CHAT_FORMAT,
        startup_timeout_s: float = 120.0,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        # A known GGUF file name says which stand-in it is (its alias and card follow).
        known = {s.filename: s for s in STANDIN_SPECS.values()}
        self.spec = known.get(self.model_path.name if self.model_path else "") or spec_of(size)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx or 4096
        self.n_threads = n_threads
        self.chat_format = chat_format
        self.startup_timeout_s = startup_timeout_s
        self.cache_dir = cache_dir
        self.model_name = self.spec.model_name
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise UserError("the stand-in server is not started")
        return f"http://{self.host}:{self.port}/v1"

    def card(self) -> ModelCard:
        return standin_card(self.spec.size, context_size=self.n_ctx)

    def model(self, **kwargs: Any) -> OpenAIModel:
        """An `OpenAIModel` pointed at this server (keyword arguments go to OpenAIModel), with
        `tool_choice` in the dialect of the server's handler (`standin_tool_choice`)."""
        from duetto.models.openai import OpenAIModel

        class StandinModel(OpenAIModel):
            def _payload(self, request: Any, stream: bool) -> dict[str, Any]:
                return standin_tool_choice(super()._payload(request, stream))

        return StandinModel(self.card(), self.base_url, self.model_name, **kwargs)

    async def __aenter__(self) -> StandinServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.process is not None:
            return
        if self.model_path is None:
            self.model_path = await asyncio.to_thread(fetch_standin, self.spec.size, self.cache_dir)
        env = _server_env()
        self.port = self.port or _free_port(self.host)
        cmd = standin_command(
            self.model_path, self.port, host=self.host, model_name=self.model_name,
            n_ctx=self.n_ctx, n_threads=self.n_threads, chat_format=self.chat_format,
        )  # fmt: skip
        self._spawn(cmd, env)
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> None:
        """Start the server process (fork+exec returns at once; readiness is awaited apart)."""
        # A file, not a pipe: nobody reads while it runs, and a full pipe would block the server.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent(),
        )
        _LIVE.add(self.process)

    async def _wait_ready(self) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ModelUnavailable(
                        f"the stand-in server exited with code {code} while starting:\n"
                        f"{_tail(self._log)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{self.base_url}/models")
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ModelUnavailable(
                        f"the stand-in server did not answer GET {self.base_url}/models within "
                        f"{self.startup_timeout_s:.0f} s:\n{_tail(self._log)}"
                    )
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            await asyncio.to_thread(_terminate, proc)
        if self._log is not None:
            self._log.close()
            self._log = None


def serve_foreground(
    size: str = "0.5b",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    n_ctx: int = 4096,
    n_threads: int = 2,
    cache_dir: Path | str | None = None,
) -> int:
    """Fetch the stand-in if needed and run its server in the foreground; its exit code."""
    spec = spec_of(size)
    path = fetch_standin(size, cache_dir)
    cmd = standin_command(
        path, port, host=host, model_name=spec.model_name, n_ctx=n_ctx, n_threads=n_threads
    )
    env = _server_env()
    print(f"serving {spec.model_name} at http://{host}:{port}/v1", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.run(cmd, env=env, check=False).returncode
    return 0
