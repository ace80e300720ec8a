"""Issue 6 end to end: the gateway on a real socket in front of the fake OpenAI upstream, which
records every request body it receives. Under `redact` the upstream sees only placeholders and
the client gets the values back (also streamed, with placeholders split across chunks); under
`local_only` nothing reaches the upstream for a request with PII; stored copies are redacted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import duetto.testing.fake_server as fake_server
from duetto.config import parse_config
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.gateway import GatewaySettings, create_app
from duetto.gateway.auth import hash_key
from duetto.scoring import pii
from duetto.testing import FakeOpenAIServer, ServerThread

pytestmark = pytest.mark.timeout(120)

TEAM, HOSPITAL = "sk-team", "sk-hospital"
EMAIL, SSN, PHONE = "ana.lopez@example.org", "123-45-6789", "+1 415 555 0100"
SECRET = f"I am {EMAIL}, SSN {SSN}; call {PHONE} please."
VALUES = (EMAIL, SSN, PHONE)
LOCAL_ANSWER = "answered on the device"


@pytest.fixture(autouse=True)
def regex_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap detector, whatever an earlier test installed (restored afterwards)."""
    monkeypatch.setattr(pii, "_detector", pii.regex_detect)


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:  # answers "echo: <last user message>"
        yield server


def config(upstream: FakeOpenAIServer, privacy: dict[str, Any], **gateway: Any) -> Any:
    return parse_config(
        {
            "endpoints": {"up": {"base_url": upstream.base_url, "retries": 0}},
            "models": {
                "slm": {"backend": "fake", "script": LOCAL_ANSWER, "card": {"name": "slm-card"}},
                "llm": {
                    "backend": "openai",
                    "endpoint": "up",
                    "model": "fake-llm",
                    "card": {"name": "llm-card", "location": "remote", "trusted": False},
                },
                "llm-open": {
                    "backend": "openai",
                    "endpoint": "up",
                    "model": "fake-llm",
                    "card": {"name": "llm-open-card", "location": "remote", "trusted": False},
                },
            },
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "threshold": 0.5,
                    "scorer": {"kind": "length", "scale_chars": 10},
                }
            },
            "gateway": {
                "keys": [
                    {"name": "team", "key_sha256": hash_key(TEAM)},
                    {"name": "hospital", "key_sha256": hash_key(HOSPITAL)},
                ],
                **gateway,
            },
            "privacy": {"detector": "regex", **privacy},
        }
    )


POLICIES = {
    "default": "redact",
    "api_keys": {"hospital": "local_only"},
    "routes": {"llm-open": "allow"},
}


@contextlib.contextmanager
def gateway(cfg: Any, tmp_path: Path) -> Iterator[ServerThread]:
    settings = GatewaySettings.from_config(cfg, db=str(tmp_path / "gw.db"))
    with ServerThread(create_app(Engine(cfg), settings)) as server:
        yield server


def client(gw: ServerThread, key: str = TEAM) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def ask(gw: ServerThread, text: str, *, key: str = TEAM, model: str = "llm") -> tuple[str, str]:
    """(answer, trace id), non-streamed."""
    raw = client(gw, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return raw.parse().choices[0].message.content or "", raw.headers["x-duetto-trace-id"]


def ask_streamed(
    gw: ServerThread, text: str, *, key: str = TEAM, model: str = "llm"
) -> tuple[list[str], str]:
    """(deltas the client received, trace id)."""
    with client(gw, key).chat.completions.with_streaming_response.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True
    ) as raw:
        trace_id = raw.headers["x-duetto-trace-id"]
        deltas = [c.choices[0].delta.content or "" for c in raw.parse() if c.choices]
    return [d for d in deltas if d], trace_id


def stored(gw: ServerThread, trace_id: str) -> dict[str, Any]:
    assert gw.loop is not None
    record = asyncio.run_coroutine_threadsafe(gw.app.state.store.get(trace_id), gw.loop).result(30)
    assert record is not None
    out: dict[str, Any] = record.to_dict()
    return out


def upstream_text(upstream: FakeOpenAIServer) -> str:
    return json.dumps(upstream.requests)


def test_redact_upstream_sees_placeholders_client_gets_values(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        answer, trace_id = ask(gw, SECRET)
        assert answer == f"echo: {SECRET}"  # the upstream echoed placeholders; restored here
        assert len(upstream.requests) == 1
        sent = upstream_text(upstream)
        assert not any(v in sent for v in VALUES)
        assert all(p in sent for p in ("<EMAIL_ADDRESS_1>", "<US_SSN_1>", "<PHONE_NUMBER_1>"))
        record = stored(gw, trace_id)
        trace = record["trace"]
        assert trace["extra"]["privacy"]["action"] == "redact"
        assert trace["extra"]["privacy"]["entities"] == {
            "EMAIL_ADDRESS": 1,
            "US_SSN": 1,
            "PHONE_NUMBER": 1,
        }
        assert trace["usage"]["pii_sent"] == 0 and trace["usage"]["bytes_sent"] > 0
        text = json.dumps(record)  # the stored copy is redacted: request and answer
        assert not any(v in text for v in VALUES) and "<EMAIL_ADDRESS_1>" in text


def test_redact_streamed_with_placeholders_split_across_chunks(
    upstream: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake upstream streams 4-character pieces: every placeholder is cut across chunks
    monkeypatch.setattr(
        fake_server, "_tokens", lambda text: [text[i : i + 4] for i in range(0, len(text), 4)]
    )
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        deltas, trace_id = ask_streamed(gw, SECRET)
        assert "".join(deltas) == f"echo: {SECRET}"
        assert len(deltas) > 3  # still a stream, not one buffered answer
        assert not any("<" in d for d in deltas)  # no half placeholder ever reached the client
        assert upstream.counts["streams"] == 1
        assert not any(v in upstream_text(upstream) for v in VALUES)
        record = stored(gw, trace_id)
        assert record["trace"]["extra"]["privacy"]["action"] == "redact"
        assert not any(v in json.dumps(record) for v in VALUES)


def test_local_only_sends_nothing_upstream_for_requests_with_pii(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        answer, trace_id = ask(gw, SECRET, key=HOSPITAL)
        deltas, stream_id = ask_streamed(gw, SECRET, key=HOSPITAL, model="route")
        assert answer == LOCAL_ANSWER and "".join(deltas) == LOCAL_ANSWER
        assert upstream.exchanges == [] and upstream.counts["requests"] == 0  # zero bytes
        for tid, requested in ((trace_id, "llm"), (stream_id, "route")):
            record = stored(gw, tid)
            assert record["answered_by"] == "slm-card"
            privacy = record["trace"]["extra"]["privacy"]
            assert privacy["action"] == "local" and privacy["requested"] == requested
            usage = record["usage"]
            assert usage["bytes_sent"] == 0 and usage["remote_calls"] == 0
            assert usage["pii_sent"] == 0
            assert not any(v in json.dumps(record) for v in VALUES)
        # without PII, the same key's request still goes to the remote model
        answer, _ = ask(gw, "What is the capital of France?", key=HOSPITAL)
        assert answer == "echo: What is the capital of France?"
        assert len(upstream.requests) == 1


def test_allow_sends_as_is_and_counts_the_leak(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        answer, trace_id = ask(gw, f"write to {EMAIL}", model="llm-open")
        assert answer == f"echo: write to {EMAIL}" and EMAIL in upstream_text(upstream)
        record = stored(gw, trace_id)
        assert record["usage"]["pii_sent"] == 1
        assert "privacy" not in record["trace"].get("extra", {})


def test_trusted_models_get_the_request_as_is(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    cfg = config(upstream, POLICIES)
    with gateway(cfg, tmp_path) as gw:
        answer, trace_id = ask(gw, SECRET, key=HOSPITAL, model="slm")
        assert answer == LOCAL_ANSWER and upstream.requests == []
        record = stored(gw, trace_id)
        assert "privacy" not in record["trace"].get("extra", {})
        assert not any(v in json.dumps(record) for v in VALUES)  # stored copy still redacted


def test_redacted_request_rescued_by_the_fallback_is_restored(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    cfg = config(upstream, POLICIES, fallback="slm")
    with gateway(cfg, tmp_path) as gw:
        upstream.fail_next(1, status=500)
        answer, trace_id = ask(gw, SECRET)
        assert answer == LOCAL_ANSWER
        record = stored(gw, trace_id)
        assert record["fallback"] and record["trace"]["extra"]["privacy"]["action"] == "redact"
        assert not any(v in upstream_text(upstream) for v in VALUES)


async def test_local_only_without_a_trusted_local_model_refuses_to_start(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "endpoints": {"up": {"base_url": "http://127.0.0.1:9/v1"}},
            "models": {"llm": {"backend": "openai", "endpoint": "up", "model": "m"}},
            "privacy": {"default": "local_only", "detector": "regex"},
        }
    )
    app = create_app(Engine(cfg), GatewaySettings.from_config(cfg, db=str(tmp_path / "g.db")))
    with pytest.raises(ConfigError, match="local_only"):
        async with app.router.lifespan_context(app):
            pass


def test_request_without_pii_under_redact_goes_out_unchanged(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        answer, trace_id = ask(gw, "hello there")
        assert answer == "echo: hello there"
        body = upstream.requests[0]
        assert body["messages"] == [{"role": "user", "content": "hello there"}]
        privacy = stored(gw, trace_id)["trace"]["extra"]["privacy"]
        assert privacy["action"] == "send" and privacy["placeholders"] == 0


def test_the_redacted_values_are_never_logged_in_metrics(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        ask(gw, SECRET)
        ask(gw, SECRET, key=HOSPITAL)
        metrics = httpx.get(gw.url + "/metrics").text
        assert not any(v in metrics for v in VALUES)


SECRET_AND_IDS = (
    "db password: Tr0ub4dor&3xQz, passport K7203418, IBAN GB82 WEST 1234 5698 7654 33 "
    "(wrong checksum), card 4539 1488 0343 6468."
)
SECRET_VALUES = ("Tr0ub4dor&3xQz", "K7203418", "GB82 WEST 1234", "4539 1488 0343 6468")


@pytest.mark.parametrize("stream", [False, True])
def test_redact_sends_no_secret_or_identifier(
    upstream: FakeOpenAIServer, tmp_path: Path, stream: bool
) -> None:
    with gateway(config(upstream, POLICIES), tmp_path) as gw:
        if stream:
            deltas, _ = ask_streamed(gw, SECRET_AND_IDS)
            answer = "".join(deltas)
        else:
            answer, _ = ask(gw, SECRET_AND_IDS)
        assert answer == f"echo: {SECRET_AND_IDS}"  # restored for the client
        sent = upstream_text(upstream)
        assert not any(v in sent for v in SECRET_VALUES), sent
        assert "<PASSWORD_1>" in sent and "<IBAN_CODE_1>" in sent and "<CREDIT_CARD_1>" in sent
