"""`duetto models fetch | serve` and the one error exit every command shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app
from duetto.models.standin import fetch as standin_fetch
from duetto.models.standin import server as standin_server


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_fetch_prints_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []

    def fake_fetch(size: str, cache_dir: object = None) -> Path:
        seen.append((size, cache_dir))
        return tmp_path / f"{size}.gguf"

    monkeypatch.setattr(standin_fetch, "fetch_standin", fake_fetch)
    monkeypatch.setattr("duetto.models.standin.fetch_standin", fake_fetch)
    code, out = run("models", "fetch", "--size", "1.5b", "--cache-dir", str(tmp_path))
    assert code == 0
    assert out.strip() == f"stand-in LLM (1.5b): {tmp_path / '1.5b.gguf'}"
    assert seen == [("1.5b", tmp_path)]


def test_an_unknown_size_is_one_error_line_and_exit_2() -> None:
    code, out = run("models", "fetch", "--size", "9b")
    assert code == 2
    assert out.strip() == "error: unknown stand-in size '9b': one of ['0.5b', '1.5b']"


def test_serve_runs_the_server_command_in_the_foreground(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    class Done:
        returncode = 3

    monkeypatch.setattr(standin_server, "fetch_standin", lambda size, cache=None: tmp_path / "m")
    monkeypatch.setattr(standin_server, "_server_env", lambda: {"PATH": "/bin"})
    monkeypatch.setattr(
        standin_server.subprocess, "run", lambda cmd, **_: calls.append(cmd) or Done()
    )
    code, _ = run("models", "serve", "--port", "8123", "--n-threads", "1")
    assert code == 3  # the server's exit code
    (cmd,) = calls
    assert cmd[cmd.index("--port") + 1] == "8123" and cmd[cmd.index("--n_threads") + 1] == "1"
    assert cmd[cmd.index("--model_alias") + 1] == "qwen2.5-coder-0.5b-instruct"
