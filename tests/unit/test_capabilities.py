"""Capabilities: what a request needs, what a card has, and strategies that choose only among
capable candidates (route, cascade, fuse, pipeline, assist, fallback, rules)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from duetto.capabilities import (
    card_capabilities,
    combine,
    context_needed,
    lacking,
    required_capabilities,
)
from duetto.config import parse_config
from duetto.engine import make_card
from duetto.errors import MissingCapability, ModelError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring.verifiers import LogprobVerifier
from duetto.strategies import (
    Cascade,
    Fallback,
    Fuse,
    Pipeline,
    RedactAssist,
    Route,
    Stage,
    TaskPriorScorer,
)
from duetto.strategies.capable import intermediate
from duetto.strategies.cascade import free_signal
from duetto.strategies.route import choose_n
from duetto.testing.scripted import ScriptedModel

HAS_WIRE = "tools" in {f.name for f in dataclasses.fields(ChatRequest)}
needs_wire = pytest.mark.skipif(not HAS_WIRE, reason="needs the i-wire request types")

JSON_FORMAT = {"type": "json_object"}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def card(name: str, **kw: Any) -> ModelCard:
    return ModelCard(name=name, **kw)


def slm(**kw: Any) -> ScriptedModel:
    kw.setdefault("context_size", 2048)
    return ScriptedModel(card("slm", json_schema=True, logprobs=True, **kw), "small", logprob=-0.1)


def llm(**kw: Any) -> ScriptedModel:
    caps = {"tools": True, "json_schema": True, "logprobs": True, "context_size": 32000}
    c = card("llm", location="remote", trusted=False, **{**caps, **kw})
    return ScriptedModel(c, "large", logprob=-0.1)


def image_request(**kw: Any) -> ChatRequest:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    return ChatRequest.from_dicts([{"role": "user", "content": parts}], **kw)


def long_request(chars: int = 12_000) -> ChatRequest:
    return ChatRequest.of("x " * (chars // 2), max_tokens=64)


# --- what a request needs -----------------------------------------------------------------------


def test_plain_request_needs_nothing_but_context() -> None:
    r = ChatRequest.of("hello", max_tokens=10)
    assert required_capabilities(r) == set()
    assert 10 < context_needed(r) < 20  # 2 tokens of text + template + 10 for the answer
    assert lacking(card("m", context_size=16), r) == []
    assert lacking(card("m", context_size=8), r)[0].startswith("context: needs ~")


def test_json_response_format_needs_json_schema() -> None:
    r = ChatRequest.of("hi", response_format=JSON_FORMAT)
    assert required_capabilities(r) == {"json_schema"}
    assert lacking(card("m"), r) == ["json_schema"]
    assert lacking(card("m", json_schema=True), r) == []
    text = ChatRequest.of("hi", response_format={"type": "text"})
    assert required_capabilities(text) == set()


def test_max_output_tokens_is_a_limit() -> None:
    r = ChatRequest.of("hi", max_tokens=5000)
    assert lacking(card("m", max_output_tokens=4096), r) == [
        "max_output_tokens: asks 5000, allows 4096"
    ]
    assert lacking(card("m", max_output_tokens=8000), r) == []


@needs_wire
def test_tools_images_audio_logprobs_needed() -> None:
    tools = ChatRequest.of("weather?", tools=(TOOL,))
    assert required_capabilities(tools) == {"tools"}
    assert required_capabilities(ChatRequest.of("w", tools=(TOOL,), tool_choice="none")) == set()
    assert required_capabilities(image_request()) == {"vision"}
    audio = ChatRequest.from_dicts(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
                ],
            }
        ]
    )
    assert required_capabilities(audio) == {"audio"}
    assert required_capabilities(ChatRequest.of("x", logprobs=True)) == {"logprobs"}
    # the tools' JSON counts in the context estimate
    assert context_needed(tools) > context_needed(ChatRequest.of("weather?"))


def test_card_capabilities_and_combine() -> None:
    a = card_capabilities(card("a", vision=True, context_size=2048))
    b = card_capabilities(card("b", tools=True, context_size=32000, max_output_tokens=4096))
    assert a["vision"] and not a["tools"] and a["context_tokens"] == 2048
    union = combine([a, b], "union")
    assert union["vision"] and union["tools"] and union["context_tokens"] == 32000
    assert union["max_output_tokens"] is None  # a has no limit
    inter = combine([a, b], "intersection")
    assert not inter["vision"] and not inter["tools"] and inter["context_tokens"] == 2048
    assert inter["max_output_tokens"] == 4096


# --- config cards ---------------------------------------------------------------------------------


def test_config_cards_default_per_backend_and_context_from_n_ctx() -> None:
    cfg = parse_config(
        {
            "endpoints": {"e": {"base_url": "http://x/v1"}},
            "models": {
                "slm": {"backend": "local", "path": "smollm2", "n_ctx": 2048},
                "llm": {"backend": "openai", "endpoint": "e", "card": {"vision": True}},
                "big": {"backend": "local", "n_ctx": 1024, "card": {"context_size": 9999}},
            },
        }
    )
    s = make_card("slm", cfg.models["slm"])
    assert (s.json_schema, s.logprobs, s.tools, s.vision, s.context_size) == (
        True,
        True,
        True,
        False,
        2048,
    )
    r = make_card("llm", cfg.models["llm"])
    assert r.tools and r.json_schema and r.vision and not r.audio and r.context_size == 8192
    assert make_card("big", cfg.models["big"]).context_size == 1024  # never more than n_ctx


def test_embedded_defaults_say_what_each_model_can_do() -> None:
    from duetto.config import load_default_config

    cfg = load_default_config()
    s, big = make_card("slm", cfg.models["slm"]), make_card("llm", cfg.models["llm"])
    assert s.json_schema and not s.vision and not s.audio and s.context_size == 2048
    assert big.tools and big.json_schema and big.logprobs and not big.vision
    assert s.tools  # forced tool calls by grammar
    assert big.context_size == cfg.models["llm"].n_ctx


def test_unknown_card_key_is_an_error() -> None:
    from duetto.errors import ConfigError

    with pytest.raises(ConfigError, match=r"models\.m\.card\.visoin"):
        parse_config({"models": {"m": {"backend": "fake", "card": {"visoin": True}}}})


# --- route ----------------------------------------------------------------------------------------


def route(**kw: Any) -> Route:
    return Route("r", [slm(), llm()], TaskPriorScorer({}, default=0.9), threshold=0.5, **kw)


async def test_route_skips_an_incapable_cheap_model() -> None:
    r = route()
    plain = await r.complete(ChatRequest.of("hi"))
    assert plain.trace.decision == "cheap"
    out = await r.complete(long_request())  # does not fit the SLM's 2048 tokens
    assert out.text == "large" and out.trace.decision == "capability"
    assert out.trace.extra["skipped"][0].startswith("skipped slm: lacks context: needs ~")


async def test_route_with_no_capable_model_is_a_400_naming_capability_and_strategy() -> None:
    r = Route("r", [slm(), llm(json_schema=False)], TaskPriorScorer({}), threshold=0.5)
    big_json = ChatRequest.of("x " * 6000, response_format=JSON_FORMAT)
    with pytest.raises(MissingCapability) as info:
        await r.complete(big_json)
    err = info.value
    assert err.status == 400 and err.kind == "invalid_request_error"
    assert "json_schema" in str(err) and "context" in str(err) and "route 'r'" in str(err)
    assert r.lacks(big_json) and r.lacks(ChatRequest.of("hi")) == []


async def test_route_rule_pinning_an_incapable_model_is_refused_not_rerouted() -> None:
    r = route(rules=[{"when": {"min_chars": 1000}, "target": "slm"}])
    with pytest.raises(MissingCapability, match="a rule pins slm: lacks context"):
        await r.complete(long_request())


def test_choose_n_only_among_allowed() -> None:
    import numpy as np

    q = np.array([0.9, 0.5, 0.7])
    assert choose_n(q, [0, 0, 0], 0.0) == 0
    assert choose_n(q, [0, 0, 0], 0.0, allowed=[1, 2]) == 2


# --- cascade --------------------------------------------------------------------------------------


def cascade(*models: ScriptedModel, threshold: float = 0.5) -> Cascade:
    return Cascade("c", list(models), LogprobVerifier(), threshold=threshold)


async def test_cascade_goes_straight_to_the_llm_when_the_slm_cannot() -> None:
    small, large = slm(), llm()
    c = cascade(small, large)
    out = await c.complete(long_request())
    assert out.text == "large" and out.trace.decision == "capability"
    assert small.calls == [] and len(large.calls) == 1
    assert out.trace.extra["answered_by"] == "llm" and out.trace.score is None
    accepted = await c.complete(ChatRequest.of("hi"))
    assert accepted.trace.decision == "accepted" and accepted.text == "small"


async def test_multi_level_cascade_verifies_the_capable_levels_only() -> None:
    mid = ScriptedModel(card("mid", context_size=32000), "middle", logprob=-5.0)
    c = Cascade("c", [slm(), mid, llm()], LogprobVerifier(), threshold=0.5)
    out = await c.complete(long_request())
    # slm skipped; mid drafts with low confidence and is escalated; llm answers unverified
    assert out.text == "large" and out.trace.decision == "escalated"
    assert [n.name for n in out.trace.children] == ["c.level1", "llm"]


async def test_cascade_with_no_capable_level_refuses() -> None:
    c = cascade(slm(), llm(context_size=100))
    with pytest.raises(MissingCapability, match="cascade 'c'"):
        await c.complete(long_request())


async def test_cascade_json_that_does_not_parse_escalates_without_a_verifier_call() -> None:
    small = ScriptedModel(card("slm", json_schema=True), "not json", logprob=-0.01)
    large = ScriptedModel(card("llm", json_schema=True), '{"a": 1}')
    c = cascade(small, large)
    out = await c.complete(ChatRequest.of("give json", response_format=JSON_FORMAT))
    assert out.text == '{"a": 1}' and out.trace.decision == "escalated"
    level0 = out.trace.children[0]
    assert level0.extra["signal"] == "json_schema" and level0.score == 0.0
    ok = ScriptedModel(card("slm", json_schema=True), '{"b": 2}', logprob=-0.01)
    out = await cascade(ok, large).complete(
        ChatRequest.of("give json", response_format=JSON_FORMAT)
    )
    assert out.text == '{"b": 2}' and "signal" not in out.trace.children[0].extra


# --- fuse, pipeline, assist, fallback ---------------------------------------------------------


async def test_fuse_asks_only_capable_members() -> None:
    small, large = slm(), llm()
    f = Fuse("f", [small, large], method="vote")
    out = await f.complete(long_request())
    assert out.text == "large" and small.calls == []
    assert out.trace.extra["skipped"][0].startswith("skipped slm")
    with pytest.raises(MissingCapability, match="fuse 'f'"):
        await Fuse("f", [slm(), llm(context_size=10)]).complete(long_request())


async def test_fuse_aggregator_must_be_capable() -> None:
    f = Fuse("f", [llm(), llm()], method="aggregate", aggregator=slm())
    with pytest.raises(MissingCapability, match="slm: lacks context"):
        await f.complete(long_request())
    assert f.capabilities()["context_tokens"] == 2048  # the aggregator bounds it


async def test_pipeline_needs_every_stage_to_read_and_the_last_to_answer() -> None:
    small, large = slm(), llm()
    p = Pipeline("p", [Stage(large, "draft", pass_as="draft"), Stage(small, "format")])
    with pytest.raises(MissingCapability, match=r"stage 1 \(format\) slm: lacks context"):
        await p.complete(long_request())
    assert small.calls == [] and large.calls == []
    # JSON shapes the answer: the last stage must have it, the first need not
    plain_first = ScriptedModel(card("plain"), "notes")
    p2 = Pipeline("p2", [Stage(plain_first, "notes"), Stage(slm(), "answer")])
    out = await p2.complete(ChatRequest.of("json please", response_format=JSON_FORMAT))
    assert out.text == "small"
    assert plain_first.calls[0].response_format is None  # intermediate: without the format
    caps = p2.capabilities()
    assert caps["json_schema"] and caps["context_tokens"] == 2048


def test_intermediate_request_drops_only_answer_fields() -> None:
    r = ChatRequest.of("x", response_format=JSON_FORMAT, max_tokens=7)
    i = intermediate(r)
    assert i.response_format is None and i.max_tokens == 7 and i.messages == r.messages


async def test_assist_requires_its_answerer() -> None:
    a = RedactAssist("a", slm())
    with pytest.raises(MissingCapability, match="assist 'a'"):
        await a.complete(long_request())


async def test_fallback_skips_an_incapable_primary_and_never_uses_an_incapable_backup() -> None:
    small, large = slm(), llm()
    fb = Fallback("fb", small, large)
    out = await fb.complete(long_request())
    assert out.text == "large" and small.calls == []
    assert out.trace.decision == "capability" and "skipped slm" in (out.trace.note or "")
    failing = ScriptedModel(card("big", context_size=32000), "x", fail_first=9)
    backup = slm()
    with pytest.raises(ModelError, match="scripted failure"):
        await Fallback("fb2", failing, backup).complete(long_request())
    assert backup.calls == []  # it would have dropped what the request needs
    with pytest.raises(MissingCapability, match="fallback 'fb3'"):
        await Fallback("fb3", slm(), slm()).complete(long_request())


async def test_fallback_stream_with_incapable_primary_uses_backup() -> None:
    fb = Fallback("fb", slm(), llm())
    chunks = [c async for c in fb.stream(long_request())]
    final = chunks[-1].response
    assert final is not None and final.text == "large"


# --- tools through every mode (needs the wire types) ---------------------------------------------


def tool_model(name: str, calls: list[tuple[str, dict[str, Any] | str]], **caps: Any) -> Any:
    from duetto.messages import ToolCall  # type: ignore[attr-defined]
    from duetto.models.base import LeafModel, RawResult

    class Caller(LeafModel):
        def __init__(self) -> None:
            super().__init__(card(name, tools=True, json_schema=True, **caps))
            self.calls: list[ChatRequest] = []

        async def _call(self, request: ChatRequest) -> RawResult:
            self.calls.append(request)
            tc = [
                ToolCall(f"call_{i}", n, a if isinstance(a, str) else json.dumps(a))
                for i, (n, a) in enumerate(calls)
            ]
            raw = RawResult(text="", tokens_in=5, tokens_out=5, logprobs=[-0.01])
            raw.tool_calls = tuple(tc)  # type: ignore[attr-defined]
            raw.finish_reason = "tool_calls"
            return raw

    return Caller()


@needs_wire
async def test_cascade_accepts_a_valid_tool_call_and_escalates_an_invalid_one() -> None:
    weather = ChatRequest.of("weather in Paris?", tools=(TOOL,))
    good = tool_model("slm", [("get_weather", {"city": "Paris"})])
    big = tool_model("llm", [("get_weather", {"city": "Paris"})])
    out = await cascade(good, big, threshold=0.99).complete(weather)
    assert out.trace.decision == "accepted" and big.calls == []
    assert out.tool_calls and out.tool_calls[0].name == "get_weather"
    assert out.trace.extra["tool_calls"] == ["get_weather"]
    assert out.trace.children[0].extra["signal"] == "tool_schema"
    bad = tool_model("slm", [("get_weather", {"town": "Paris"})])  # misses `city`
    out = await cascade(bad, big).complete(weather)
    assert out.trace.decision == "escalated" and len(big.calls) == 1
    assert free_signal(weather, out) == (1.0, "tool_schema")


@needs_wire
async def test_tool_turn_then_next_turn_by_whichever_model_the_route_picks() -> None:
    caller = tool_model("llm", [("get_weather", {"city": "Paris"})], location="remote")
    small = slm()
    r = Route("r", [small, caller], TaskPriorScorer({}, default=0.9), threshold=0.5)
    first = await r.complete(ChatRequest.of("weather in Paris?", tools=(TOOL,)))
    assert first.tool_calls and first.trace.decision == "capability"
    history = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [first.tool_calls[0].to_dict()]},
        {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "18 C, sunny"},
    ]
    second = await r.complete(ChatRequest.from_dicts(history))  # tools not offered again
    assert second.text == "small" and second.trace.decision == "cheap"


@needs_wire
async def test_fuse_votes_on_tool_calls() -> None:
    a = tool_model("a", [("get_weather", {"city": "Paris"})])
    b = tool_model("b", [("get_weather", '{"city":  "Paris"}')])  # same call, other spacing
    c = tool_model("c", [("get_weather", {"city": "Rome"})])
    out = await Fuse("f", [c, a, b], method="vote").complete(
        ChatRequest.of("weather?", tools=(TOOL,))
    )
    assert out.tool_calls[0].arguments in ('{"city": "Paris"}', '{"city":  "Paris"}')
    assert out.score == pytest.approx(2 / 3)


@needs_wire
async def test_pipeline_gives_tools_to_the_last_stage_only() -> None:
    first = llm()
    last = tool_model("last", [("get_weather", {"city": "Paris"})])
    p = Pipeline("p", [Stage(first, "notes"), Stage(last, "answer")])
    out = await p.complete(ChatRequest.of("weather?", tools=(TOOL,)))
    assert out.tool_calls and first.calls[0].tools == () and last.calls[0].tools == (TOOL,)
    refused = Pipeline("p2", [Stage(last, "notes"), Stage(slm(), "answer")])
    with pytest.raises(MissingCapability, match=r"tools.*stage 1 \(answer\)"):
        await refused.complete(ChatRequest.of("weather?", tools=(TOOL,)))


@needs_wire
async def test_image_request_with_text_only_models_names_vision() -> None:
    with pytest.raises(MissingCapability, match="needs vision"):
        await route().complete(image_request())
    seer = ScriptedModel(card("seer", vision=True), "a cat")
    out = await Route("r", [slm(), seer], TaskPriorScorer({}), threshold=0.5).complete(
        image_request()
    )
    assert out.text == "a cat" and "skipped slm: lacks vision" in out.trace.extra["skipped"]
