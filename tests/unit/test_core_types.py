"""The core data types: Usage, Step, ChatRequest.key, ModelCard, ScriptedModel, regex PII."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from functools import partial

import pytest

from duetto.errors import ModelTimeout, UpstreamError
from duetto.messages import ChatRequest, Message
from duetto.models.base import ModelCard
from duetto.scoring.pii import count_pii, regex_detect
from duetto.testing.scripted import ScriptedModel
from duetto.trace import Step
from duetto.usage import Usage

# ---- Usage --------------------------------------------------------------------------------


def test_usage_adds_every_field_and_keeps_first_ttft() -> None:
    a = Usage(
        tokens_in=3,
        tokens_out=5,
        bytes_sent=100,
        bytes_received=40,
        latency_ms=10.0,
        ttft_ms=None,
        cost_usd=0.25,
        energy_j=1.5,
        pii_sent=1,
        calls=1,
        remote_calls=1,
    )
    b = Usage(
        tokens_in=7,
        tokens_out=1,
        bytes_sent=1,
        bytes_received=2,
        latency_ms=5.0,
        ttft_ms=4.0,
        cost_usd=0.5,
        energy_j=0.5,
        pii_sent=2,
        calls=2,
        remote_calls=0,
    )
    total = a + b
    for f in fields(Usage):
        if f.name != "ttft_ms":
            assert getattr(total, f.name) == getattr(a, f.name) + getattr(b, f.name), f.name
    assert total.ttft_ms == 4.0  # the first known time to first token
    assert (Usage(ttft_ms=1.0) + b).ttft_ms == 1.0
    assert (a + Usage()) == a and a.tokens_in == 3  # operands unchanged


def test_usage_dict_round_trip_ignores_unknown_keys() -> None:
    u = Usage(tokens_in=2, cost_usd=0.1, ttft_ms=3.0)
    d = u.to_dict()
    assert Usage.from_dict(d) == u
    assert Usage.from_dict({**d, "not_a_field": 1}) == u


# ---- Step ---------------------------------------------------------------------------------


def _tree() -> Step:
    draft = Step("slm", usage=Usage(tokens_out=10, calls=1, latency_ms=50.0))
    verify = Step(
        "llm", usage=Usage(tokens_out=20, calls=1, remote_calls=1, cost_usd=0.01, latency_ms=200.0)
    )
    inner = Step(
        "cascade",
        kind="strategy",
        mode="cascade",
        decision="escalated",
        score=0.3,
        threshold=0.5,
        children=[draft, verify],
        latency_ms=240.0,
    )
    return Step(
        "top",
        kind="strategy",
        mode="pipeline",
        children=[inner],
        usage=Usage(calls=0, energy_j=0.5),
        extra={"why": "test"},
    )


def test_step_total_sums_subtree_and_uses_measured_latency() -> None:
    root = _tree()
    total = root.total()
    assert total.tokens_out == 30 and total.calls == 2 and total.remote_calls == 1
    assert total.cost_usd == pytest.approx(0.01) and total.energy_j == 0.5
    assert total.latency_ms == 240.0  # no wall time at the root: the child's measured one stands
    inner = root.children[0].total()
    assert inner.latency_ms == 240.0  # measured wall time, not 50 + 200
    assert [s.name for s in root.leaves()] == ["slm", "llm"]


def test_step_dict_round_trip() -> None:
    root = _tree()
    d = root.to_dict()
    assert "note" not in d and d["children"][0]["decision"] == "escalated"
    assert Step.from_dict(d) == root


# ---- ChatRequest.key ----------------------------------------------------------------------


def test_request_key_is_stable_and_sensitive_to_what_changes_the_answer() -> None:
    base = ChatRequest.of("2+2?", system="Be brief.")
    assert base.key() == ChatRequest.of("2+2?", system="Be brief.").key()
    assert len(base.key()) == 32
    variants = [
        ChatRequest.of("2+3?", system="Be brief."),
        ChatRequest.of("2+2?"),
        ChatRequest.of("2+2?", system="Be brief.", max_tokens=10),
        ChatRequest.of("2+2?", system="Be brief.", temperature=0.7),
        ChatRequest.of("2+2?", system="Be brief.", stop=("\n",)),
        ChatRequest.of("2+2?", system="Be brief.", seed=None),
        base.with_messages([Message("user", "2+2?"), Message("system", "Be brief.")]),
    ]
    keys = {v.key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)
    # bookkeeping that never leaves the process does not change the key
    tagged = ChatRequest.of("2+2?", system="Be brief.", task="math", metadata={"item_id": 1})
    assert tagged.key() == base.key()


def test_request_helpers() -> None:
    r = ChatRequest.from_dicts(
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "u2"},
        ]
    )
    assert r.last_user == "u2" and r.text == "s\nu1\n\nu2"
    assert ChatRequest(messages=(Message("system", "only"),)).last_user == ""


# ---- ModelCard ----------------------------------------------------------------------------


def test_card_cost_and_energy() -> None:
    remote = ModelCard(
        "llm",
        location="remote",
        price_in_per_mtok=2.5,
        price_out_per_mtok=10.0,
        energy_j_per_token_in=0.2,
        energy_j_per_token_out=2.0,
    )
    assert remote.cost(1_000_000, 0) == pytest.approx(2.5)
    assert remote.cost(2000, 500) == pytest.approx((2000 * 2.5 + 500 * 10.0) / 1e6)
    assert remote.energy(100, 10, cpu_seconds=99.0) == pytest.approx(100 * 0.2 + 10 * 2.0)
    local = ModelCard("slm", watts_per_core=12.0)
    assert local.energy(100, 10, cpu_seconds=2.0) == pytest.approx(24.0)  # tokens don't matter
    assert local.cost(10**6, 10**6) == 0.0 and not local.is_remote and remote.is_remote
    assert remote.to_dict()["price_out_per_mtok"] == 10.0
    with pytest.raises(AttributeError):
        remote.name = "other"  # type: ignore[misc]  # frozen


# ---- ScriptedModel ------------------------------------------------------------------------


async def test_scripted_answers_from_dict_function_and_list() -> None:
    table = ScriptedModel("t", {"hi": "hello"}, default="?")
    assert (await table.complete(ChatRequest.of("hi"))).text == "hello"
    assert (await table.complete(ChatRequest.of("other"))).text == "?"
    fn = ScriptedModel("f", lambda r: r.last_user[::-1])
    assert (await fn.complete(ChatRequest.of("abc"))).text == "cba"
    seq = ScriptedModel("s", ["a", "b"])
    texts = [(await seq.complete(ChatRequest.of("x"))).text for _ in range(3)]
    assert texts == ["a", "b", "a"] and len(seq.calls) == 3


async def test_scripted_failures_then_success() -> None:
    model = ScriptedModel("m", "ok", fail_first=2, error=ModelTimeout("slow"))
    for _ in range(2):
        with pytest.raises(ModelTimeout):
            await model.complete(ChatRequest.of("x"))
    assert (await model.complete(ChatRequest.of("x"))).text == "ok"
    default = ScriptedModel("d", fail_first=1)
    with pytest.raises(UpstreamError) as info:
        await default.complete(ChatRequest.of("x"))
    assert info.value.status == 500 and info.value.retryable


async def test_scripted_logprobs_give_confidence() -> None:
    model = ScriptedModel("m", "one two three", logprob=-0.5)
    r = await model.complete(ChatRequest.of("x"))
    assert r.logprobs == [-0.5, -0.5, -0.5]
    assert r.confidence == pytest.approx(math.exp(-0.5))
    assert (await ScriptedModel("n", "x").complete(ChatRequest.of("x"))).confidence is None


async def test_leaf_accounting_for_remote_untrusted_card() -> None:
    card = ModelCard(
        "llm", location="remote", trusted=False, price_in_per_mtok=1.0, price_out_per_mtok=2.0
    )
    model = ScriptedModel(card, "four words of answer")
    request = ChatRequest.of("mail me at jane.doe@example.com or call +1 415-555-0100")
    assert (await model.complete(request)).usage.pii_sent == 0  # no counter given: not counted
    model.pii_counter = partial(count_pii, detector=regex_detect)  # as the Engine gives leaves
    r = await model.complete(request)
    u = r.usage
    assert u.calls == 1 and u.remote_calls == 1
    assert u.tokens_out == 4 and u.tokens_in == len(request.text.split())
    assert u.cost_usd == pytest.approx(card.cost(u.tokens_in, u.tokens_out))
    assert u.energy_j == pytest.approx(card.energy(u.tokens_in, u.tokens_out, 0.0))
    assert u.pii_sent == 2
    assert r.trace.name == "llm" and r.trace.usage is u and r.trace.latency_ms == u.latency_ms
    trusted_model = ScriptedModel("slm", "x")
    trusted_model.pii_counter = partial(count_pii, detector=regex_detect)
    trusted = await trusted_model.complete(request)
    assert trusted.usage.pii_sent == 0 and trusted.usage.remote_calls == 0


async def test_default_stream_yields_text_then_response() -> None:
    model = ScriptedModel("m", "streamed text")
    chunks = [c async for c in model.stream(ChatRequest.of("x"))]
    assert "".join(c.delta for c in chunks) == "streamed text"
    final = chunks[-1].response
    assert final is not None and final.text == "streamed text" and final.usage.ttft_ms is not None
    assert all(c.response is None for c in chunks[:-1])


# ---- regex PII ----------------------------------------------------------------------------


def _types(text: str) -> list[str]:
    return [e.type for e in regex_detect(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+x@mail.example.org today", ["EMAIL_ADDRESS"]),
        ("card 4111 1111 1111 1111 please", ["CREDIT_CARD"]),
        ("ssn 123-45-6789", ["US_SSN"]),
        ("ssn 000-45-6789", []),
        ("server at 192.168.10.1", ["IP_ADDRESS"]),
        ("IBAN DE89 3704 0044 0532 0130 00", ["IBAN_CODE"]),
        ("call +1 415-555-0100 now", ["PHONE_NUMBER"]),
        ("nothing personal here, version 3.11", []),
    ],
)
def test_regex_detect(text: str, expected: list[str]) -> None:
    assert _types(text) == expected


def test_card_number_failing_luhn_is_not_a_card() -> None:
    assert "CREDIT_CARD" not in _types("card 4111 1111 1111 1112 please")


def test_regex_spans_are_exact_sorted_and_not_overlapping() -> None:
    text = "a@b.co then 4111-1111-1111-1111 then 10.0.0.1"
    found = regex_detect(text)
    assert [e.type for e in found] == ["EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS"]
    for e in found:
        assert text[e.start : e.end] == e.text
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))
