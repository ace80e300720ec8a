"""Pipeline: stages in order, outputs passed on in the documented message forms."""

from __future__ import annotations

import pytest

from duetto.errors import ConfigError
from duetto.messages import ChatRequest, add_system_note
from duetto.models.base import ModelCard
from duetto.strategies.pipeline import Pipeline, Stage, json_validator, regex_validator
from duetto.testing.scripted import ScriptedModel

SLM = ModelCard(name="slm")
LLM = ModelCard(
    name="llm", location="remote", trusted=False, price_in_per_mtok=1e6, price_out_per_mtok=2e6
)  # 1 USD per input token, 2 per output token: easy sums


def test_context_stage_notes_reach_the_next_stage() -> None:
    slm = ScriptedModel(SLM, "FACTS: 2 apples")
    llm = ScriptedModel(LLM, "You have 2 apples.")
    p = Pipeline("p", [Stage(slm, "extractor", "Extract the facts."), Stage(llm, "answerer")])
    r = p.complete_sync(ChatRequest.of("How many apples do I have? I bought 2."))
    assert r.text == "You have 2 apples."
    first, second = slm.calls[0], llm.calls[0]
    assert first.messages[0].role == "system" and first.messages[0].content == "Extract the facts."
    assert second.messages[0].content == "Notes from extractor:\nFACTS: 2 apples"
    assert "Extract the facts." not in second.text  # an instruction stays with its stage
    assert second.last_user == "How many apples do I have? I bought 2."
    # Trace: pipeline → stage nodes → model leaves; usage sums the two calls.
    assert r.trace.mode == "pipeline" and r.trace.decision == "completed"
    assert [c.role for c in r.trace.children] == ["extractor", "answerer"]
    assert [c.children[0].name for c in r.trace.children] == ["slm", "llm"]
    assert r.usage.calls == 2 and r.usage.remote_calls == 1
    llm_tokens_in = sum(len(m.content.split()) for m in second.messages)
    assert r.usage.cost_usd == pytest.approx(LLM.cost(llm_tokens_in, 4))  # the SLM is free


def test_draft_and_replace_forms() -> None:
    llm = ScriptedModel(LLM, "the answer is 42")
    fmt = ScriptedModel(SLM, "42")
    p = Pipeline(
        "p", [Stage(llm, "drafter", pass_as="draft"), Stage(fmt, "formatter", "Digits only.")]
    )
    p.complete_sync(ChatRequest.of("q?", system="Be terse."))
    sys = fmt.calls[0].messages[0].content
    assert sys.startswith("Be terse.")
    assert "Draft answer from drafter:\nthe answer is 42" in sys and sys.endswith("Digits only.")

    rewriter = ScriptedModel(SLM, "What is 6 times 7?")
    answerer = ScriptedModel(LLM, "42")
    p2 = Pipeline("p2", [Stage(rewriter, "rewriter", pass_as="replace"), Stage(answerer, "ans")])
    convo = ChatRequest.from_dicts(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "uh, six sevens?"},
            {"role": "assistant", "content": "?"},
            {"role": "user", "content": "six times seven"},
        ]
    )
    p2.complete_sync(convo)
    sent = answerer.calls[0].messages
    assert [(m.role, m.content) for m in sent] == [("system", "S"), ("user", "What is 6 times 7?")]


def test_invalid_output_keeps_previous_answer_and_is_marked() -> None:
    llm = ScriptedModel(LLM, '{"label": "refund"}')
    fmt = ScriptedModel(SLM, "refund, I think")
    schema = {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}}
    p = Pipeline(
        "p", [Stage(llm, "drafter", pass_as="draft"), Stage(fmt, "formatter", validate=schema)]
    )
    r = p.complete_sync(ChatRequest.of("classify"))
    assert r.text == '{"label": "refund"}'
    assert r.trace.decision == "fallback" and r.trace.extra["invalid"] == 1
    stage = r.trace.children[1]
    assert stage.decision == "invalid" and "previous answer kept" in (stage.note or "")
    assert r.usage.calls == 2  # the rejected call still cost something

    good = ScriptedModel(SLM, '```json\n{"label": "refund"}\n```')
    p_ok = Pipeline("p", [Stage(llm, "d", pass_as="draft"), Stage(good, "f", validate=schema)])
    r2 = p_ok.complete_sync(ChatRequest.of("classify"))
    assert r2.trace.decision == "completed" and r2.trace.children[1].decision == "valid"
    assert "```json" in r2.text


def test_validators() -> None:
    v = json_validator(
        {
            "type": "object",
            "required": ["n"],
            "additionalProperties": False,
            "properties": {
                "n": {"type": "integer"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
            },
        }
    )
    assert v('{"n": 3}') and v('{"n": 3, "tags": ["a"]}')
    assert not v('{"n": "3"}') and not v('{"n": true}') and not v('{"n": 1, "x": 2}')
    assert not v('{"n": 1, "tags": ["c"]}') and not v("not json") and not v("[1]")
    assert regex_validator(r"^\d+$")("42") and not regex_validator(r"^\d+$")("42 apples")
    with pytest.raises(ConfigError):
        Stage(ScriptedModel(SLM), "x", pass_as="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Pipeline("empty", [])


def test_add_system_note_merges_into_first_system_message() -> None:
    r = add_system_note(ChatRequest.of("q", system="S"), "N")
    assert [m.role for m in r.messages] == ["system", "user"] and r.messages[0].content == "S\n\nN"


async def test_stream_streams_last_stage_and_matches_complete() -> None:
    slm = ScriptedModel(SLM, "notes")
    llm = ScriptedModel(LLM, "final answer here")
    p = Pipeline("p", [Stage(slm, "x"), Stage(llm, "y")])
    chunks = [c async for c in p.stream(ChatRequest.of("q"))]
    final = chunks[-1].response
    assert final is not None
    assert "".join(c.delta for c in chunks) == final.text == "final answer here"
    assert final.usage.calls == 2 and final.trace.children[1].role == "y"
    assert final.usage.ttft_ms is not None and final.usage.ttft_ms <= final.trace.latency_ms + 1e-6
