"""Gateway building blocks without HTTP: breaker, rate limit, budget estimates, wire shapes,
live stats, the LLM-only counterfactual, storage redaction, settings and their serve defaults,
the online policy of an uncalibrated strategy, the gateway errors in the error tree."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from duetto import errors
from duetto.calibrate import Target, online_policy
from duetto.config import GatewayConfig, load_default_config, parse_config
from duetto.errors import (
    ConfigError,
    DuettoError,
    GatewayError,
    GatewayFailure,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    OverBudget,
    Rejected,
    UpstreamError,
    UserError,
)
from duetto.gateway.auth import TokenBucket, bearer, hash_key
from duetto.gateway.billing import partial_cost, worst_case_cost
from duetto.gateway.breaker import BreakerModel, CircuitBreaker, CircuitOpen, leaves
from duetto.gateway.metrics import LiveStats, Outcome
from duetto.gateway.protocol import ChatCompletionRequest, ChunkWriter, to_chat_request
from duetto.gateway.records import llm_only_cost, redact_for_storage
from duetto.gateway.settings import GatewaySettings
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.strategies import Route
from duetto.strategies.fallback import continuation
from duetto.strategies.route import LengthScorer
from duetto.testing.scripted import ScriptedModel
from duetto.trace import Step
from duetto.usage import Usage


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    b.success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == "open" and not b.allow()
    clock.t = 10.0
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # only one probe at a time
    b.failure()
    assert b.state == "open" and b.opened_count == 2
    clock.t = 20.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


async def test_breaker_model_fails_fast_and_ignores_client_errors() -> None:
    card = ModelCard("up", location="remote")
    inner = ScriptedModel(card, "x", fail_first=100, error=ModelTimeout("slow"))
    model = BreakerModel(inner, CircuitBreaker(failures=2, reset_s=60))
    for _ in range(2):
        with pytest.raises(ModelTimeout):
            await model.complete(ChatRequest.of("q"))
    with pytest.raises(CircuitOpen):
        await model.complete(ChatRequest.of("q"))
    assert len(inner.calls) == 2  # the third call never reached the upstream
    bad_request = ScriptedModel(card, "x", fail_first=5, error=UpstreamError("bad", status=400))
    model = BreakerModel(bad_request, CircuitBreaker(failures=1, reset_s=60))
    with pytest.raises(UpstreamError):
        await model.complete(ChatRequest.of("q"))
    assert model.breaker.state == "closed"


def test_token_bucket_allows_bursts_then_paces() -> None:
    bucket = TokenBucket(60, now=0.0)  # one a second, bursts of 60
    assert all(bucket.take(0.0) == 0.0 for _ in range(60))
    wait = bucket.take(0.0)
    assert 0.9 < wait <= 1.0
    assert bucket.take(1.0) == 0.0


def test_keys_and_bearer() -> None:
    assert hash_key("sk-a") != hash_key("sk-b") and len(hash_key("sk-a")) == 64
    assert bearer("Bearer sk-a") == "sk-a"
    assert bearer("Basic xyz") is None and bearer(None) is None and bearer("Bearer ") is None


def test_worst_case_cost_bounds_the_actual_cost() -> None:
    llm = ModelCard("llm", location="remote", price_in_per_mtok=1.0, price_out_per_mtok=4.0)
    slm = ModelCard("slm")
    req = ChatRequest.of("What is the capital of France? " * 5, max_tokens=50)
    one = worst_case_cost([slm, llm], req)
    assert one > llm.cost(len(req.text.split()), 50)  # words are fewer than bytes
    # a second call costs again, and may also read the first call's output
    assert worst_case_cost([llm, llm], req) > 2 * worst_case_cost([llm], req)
    assert worst_case_cost([slm], req) == 0.0
    assert 0 < partial_cost([slm, llm], req, 40) < one


def test_request_conversion_keeps_the_whole_conversation() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "max_completion_tokens": 7,
            "stop": "END",
            "temperature": 0.3,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": None},
                {"role": "user", "content": "c"},
            ],
            "some_new_openai_field": {"x": 1},
        }
    )
    req = to_chat_request(body)
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "user"]
    assert req.messages[1].text == "a\nb" and req.last_user == "c"
    assert req.max_tokens == 7 and req.stop == ("END",) and req.temperature == 0.3
    assert req.extra == {"some_new_openai_field": {"x": 1}}  # forwarded, not dropped
    # what the client did not set is not invented
    bare = to_chat_request(
        ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
    )
    assert (bare.max_tokens, bare.temperature, bare.seed, bare.n) == (None, None, None, None)


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0},
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function"}],
        },
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5},
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_request_schema_refuses_what_it_cannot_honour(bad: dict[str, object]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(bad)


def _events(data: bytes) -> list[object]:
    out: list[object] = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_chunk_writer_puts_usage_in_the_final_chunk() -> None:
    from duetto.messages import ChatResponse

    resp = ChatResponse(
        "hi there", "m", Usage(tokens_in=3, tokens_out=2), Step("m"), finish_reason="weird"
    )
    plain = ChunkWriter("dt-abc", "strategy", include_usage=False)
    chunks = _events(plain.role() + plain.delta("hi") + plain.finish(resp, {}) + plain.DONE)
    assert chunks[-1] == "[DONE]"
    last = chunks[-2]
    assert isinstance(last, dict)
    assert last["choices"][0]["finish_reason"] == "stop"  # unknown reasons map to stop
    usage = last["usage"]
    assert {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert all(isinstance(c, dict) and c["id"] == "chatcmpl-abc" for c in chunks[:-1])
    openai_style = ChunkWriter("dt-abc", "strategy", include_usage=True)
    chunks = _events(openai_style.delta("x") + openai_style.finish(resp, {}))
    assert isinstance(chunks[0], dict) and chunks[0]["usage"] is None
    assert isinstance(chunks[-1], dict)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5


def test_live_stats_rates_shares_savings_and_percentiles() -> None:
    stats = LiveStats(now=0.0)
    for i in range(100):
        remote = i % 4 == 0
        usage = Usage(
            calls=1,
            remote_calls=int(remote),
            cost_usd=0.01 if remote else 0.0,
            pii_sent=1 if i == 7 else 0,
        )
        stats.add(Outcome("route", "ok", usage, llm_only_cost_usd=0.01, latency_s=i / 1000), 10.0)
    stats.add(Outcome("route", "error"), 10.0)
    snap = stats.snapshot(now=20.0)
    assert snap["requests"] == 101 and snap["errors"] == 1
    assert snap["llm_share"] == pytest.approx(25 / 101)
    assert snap["saved_usd"] == pytest.approx(1.0 - 0.25)
    assert snap["p50_ms"] == pytest.approx(50, abs=1) and snap["p95_ms"] == pytest.approx(94, abs=1)
    assert snap["rate_rps"] == pytest.approx(100 / 20)
    assert snap["pii_sent"] == 1 and snap["strategies"][0]["name"] == "route"
    assert stats.snapshot(now=1000.0)["p50_ms"] is None  # out of the window


def test_llm_only_counterfactual_uses_first_prompt_and_last_answer() -> None:
    from duetto.messages import ChatResponse

    llm = ModelCard("llm", location="remote", price_in_per_mtok=1e6, price_out_per_mtok=2e6)
    draft = Step("slm", usage=Usage(tokens_in=10, tokens_out=4, calls=1))
    final = Step("llm", usage=Usage(tokens_in=30, tokens_out=6, calls=1, cost_usd=42.0))
    root = Step("cascade", kind="strategy", children=[draft, final])
    resp = ChatResponse("x", "cascade", root.total(), root)
    assert llm_only_cost(llm, resp) == pytest.approx(10 * 1 + 6 * 2)
    assert llm_only_cost(None, resp) == 42.0


def test_continuation_and_leaves() -> None:
    req = ChatRequest.of("tell me")
    cont = continuation(req, "Once upon")
    assert [m.role for m in cont.messages] == ["user", "assistant", "user"]
    assert cont.messages[1].content == "Once upon"
    slm, llm = ScriptedModel("slm"), ScriptedModel(ModelCard("llm", location="remote"))
    route = Route("r", [slm, BreakerModel(llm, CircuitBreaker())], LengthScorer(), threshold=0.5)
    assert [m.name for m in leaves(route)] == ["slm", "llm"]


def test_storage_redaction_reaches_nested_strings() -> None:
    body = {
        "request": {"messages": [{"content": "mail bob@example.org now"}]},
        "trace": {"extra": {"notes": ["call +1 415 555 0100"]}},
        "n": 3,
    }
    out = redact_for_storage(body)
    text = json.dumps(out)
    assert "bob@example.org" not in text and "<EMAIL_ADDRESS_1>" in text
    assert "555 0100" not in text and out["n"] == 3


def test_settings_from_config_hash_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        "models": {"a": {"backend": "fake"}},
        "privacy": {"policy": "redact"},
        "gateway": {
            "fallback": "a",
            "keys": [{"name": "team", "key_env": "TEAM_KEY", "budget_usd": 2.5, "rpm": 60}],
        },
    }
    cfg = parse_config(data)
    with pytest.raises(ConfigError, match="TEAM_KEY"):
        GatewaySettings.from_config(cfg)
    monkeypatch.setenv("TEAM_KEY", "sk-team")
    s = GatewaySettings.from_config(cfg, db="/tmp/x.db")
    assert s.keys[0].key_hash == hash_key("sk-team") and s.keys[0].budget_usd == 2.5
    assert s.redact_store and s.fallback == "a" and s.db == "/tmp/x.db"
    with pytest.raises(ConfigError, match=r"gateway\.fallback"):
        parse_config({**data, "gateway": {"fallback": "nope"}})
    with pytest.raises(ConfigError, match=r"gateway\.keys\[0\]"):
        parse_config({**data, "gateway": {"keys": [{"name": "x"}]}})


def test_settings_are_the_gateway_config_resolved() -> None:
    cfg = parse_config(
        {
            "models": {"a": {"backend": "fake"}},
            "gateway": {"request_timeout_s": 7.5, "breaker_failures": 2, "affinity": True},
        }
    )
    s = GatewaySettings.from_config(cfg)
    assert isinstance(s, GatewayConfig)  # one model: the config's fields, same defaults
    assert (s.request_timeout_s, s.fallback_timeout_s, s.breaker_failures) == (7.5, 7.5, 2)
    assert s.affinity and s.breaker_reset_s == 30.0 and s.keys == [] and s.db is None
    assert s.fallback is None  # a user's config without `gateway.fallback` has none
    assert s.detector == "auto"  # `privacy.detector` unset: Presidio if installed, else regex
    assert s.local_model == "a" and not s.redact_store
    shared = set(GatewayConfig.model_fields) - {"keys", "redact_store"}
    assert {f: getattr(GatewaySettings(), f) for f in shared} == {
        f: getattr(GatewayConfig(), f) for f in shared
    }
    with pytest.raises(ValidationError, match="fallback_timeout_s"):
        GatewaySettings(fallback_timeout_s=0)


def test_the_embedded_defaults_serve_as_duetto_serve_does() -> None:
    cfg = load_default_config()
    s = GatewaySettings.from_config(cfg)
    assert s.fallback == "slm" and s.detector == "auto" and s.local_model == "slm"
    cfg.gateway.fallback = "llm"  # a fallback named in the config wins
    assert GatewaySettings.from_config(cfg).fallback == "llm"
    other = load_default_config()
    other.target = "quality=0.9"  # any other config: no implicit fallback
    assert GatewaySettings.from_config(other).fallback is None


def test_create_app_from_python_uses_the_serve_settings() -> None:
    pytest.importorskip("fastapi")
    from duetto.engine import Engine
    from duetto.gateway import create_app

    app = create_app(Engine(load_default_config()))  # nothing starts before the lifespan
    settings = app.state.gateway.settings
    assert settings.fallback == "slm" and settings.detector == "auto"


def test_an_uncalibrated_budget_target_is_served_at_the_quality_floor() -> None:
    budget = online_policy(Target.parse("budget_usd_per_1k=0.2"))
    assert (budget.target.kind, budget.target.value, budget.threshold) == ("quality", 0.95, 0.5)
    share = online_policy(Target.parse("llm_share=0.3"), start=0.4)
    assert (share.target.kind, share.target.value, share.threshold) == ("llm_share", 0.3, 0.4)


def test_gateway_errors_are_in_the_one_tree() -> None:
    over = OverBudget("team", 2.5)
    assert isinstance(over, Rejected) and isinstance(over, GatewayError)
    assert isinstance(over, DuettoError) and not isinstance(over, UserError | ModelError)
    assert (over.status, over.kind, over.code) == (429, "insufficient_quota", "insufficient_quota")
    assert "'team'" in str(over) and "USD 2.5" in str(over)
    failure = GatewayFailure("llm timed out", 504)
    assert isinstance(failure, GatewayError) and failure.status == 504
    assert issubclass(CircuitOpen, ModelUnavailable) and issubclass(ModelUnavailable, ModelError)
    tree = errors.__doc__ or ""
    for name in ("GatewayError", "Rejected", "OverBudget", "GatewayFailure", "CircuitOpen"):
        assert f"── {name}" in tree
