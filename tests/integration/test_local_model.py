"""The in-process llama.cpp backend on the real SmolLM2-135M-Instruct (the `local` extra)."""

from __future__ import annotations

import asyncio
import importlib.util
import math

import numpy as np
import pytest

from duetto.errors import ConfigError, ModelError, ModelUnavailable
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.local import (
    LlamaCppModel,
    find_stop,
    held_back,
    smollm2_card,
    token_logprob,
)

# --------------------------------------------------------------------------- pure helpers


def test_token_logprob_matches_full_log_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=5000) * 4).astype(np.float32)
    full = logits - np.log(np.exp(logits.astype(np.float64)).sum())
    for token in (0, 17, int(logits.argmax()), 4999):
        assert token_logprob(logits, token) == pytest.approx(float(full[token]), abs=1e-4)
    assert token_logprob(logits, int(logits.argmax())) <= 0.0


def test_find_stop_earliest_and_from_start() -> None:
    assert find_stop("a, b; c.", [";", ","]) == 1
    assert find_stop("abc", ["x"]) == -1
    assert find_stop("xx--yy--", ["--"], start=4) == 6


def test_held_back_keeps_possible_stop_prefix() -> None:
    assert held_back("hello <|en", ["<|end|>"]) == 4
    assert held_back("hello", ["<|end|>"]) == 0
    assert held_back("ab##", ["###", "#!"]) == 2
    assert held_back("anything", []) == 0


def test_remote_card_rejected() -> None:
    with pytest.raises(ConfigError):
        LlamaCppModel(ModelCard(name="x", location="remote"), "/nonexistent.gguf")


async def test_missing_weights_are_unavailable(tmp_path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed (pip install 'duetto[local]')")
    model = LlamaCppModel(smollm2_card(), tmp_path / "missing.gguf")
    with pytest.raises(ModelUnavailable, match="not found"):
        await model.complete(ChatRequest.of("hi"))


# --------------------------------------------------------------------------- the real model


# `smollm2` (tests/conftest.py): the real model, one per module; skips without the local extra.


COUNT = ChatRequest.of("Count from 1 to 10, separated by commas.", max_tokens=40)


@pytest.mark.local_model
async def test_generation_has_text_counts_and_logprobs(smollm2: LlamaCppModel) -> None:
    r = await smollm2.complete(
        ChatRequest.of("What is 2 + 2?", system="Answer briefly.", max_tokens=24)
    )
    assert r.text.strip()
    assert r.model == "smollm2-135m"
    assert r.usage.tokens_in > 5 and 0 < r.usage.tokens_out <= 24
    assert r.logprobs is not None and len(r.logprobs) == r.usage.tokens_out
    assert all(lp <= 0.0 and math.isfinite(lp) for lp in r.logprobs)
    assert r.confidence is not None and 0.0 < r.confidence <= 1.0
    assert r.finish_reason in ("stop", "length")
    assert r.usage.cost_usd == 0.0 and r.usage.remote_calls == 0 and r.usage.pii_sent == 0
    assert r.usage.energy_j > 0.0
    assert r.usage.ttft_ms is not None and 0 < r.usage.ttft_ms <= r.usage.latency_ms


@pytest.mark.local_model
async def test_system_prompt_changes_the_prompt(smollm2: LlamaCppModel) -> None:
    plain = await smollm2.complete(ChatRequest.of("Hi", max_tokens=1))
    with_system = await smollm2.complete(
        ChatRequest.of("Hi", system="You are a terse assistant for a bank.", max_tokens=1)
    )
    assert with_system.usage.tokens_in != plain.usage.tokens_in


@pytest.mark.local_model
async def test_max_tokens_is_a_hard_cap(smollm2: LlamaCppModel) -> None:
    r = await smollm2.complete(ChatRequest.of("Write a long story about a cat.", max_tokens=5))
    assert r.usage.tokens_out == 5 and r.finish_reason == "length"


@pytest.mark.local_model
async def test_stop_sequence_honoured(smollm2: LlamaCppModel) -> None:
    full = await smollm2.complete(COUNT)
    assert "5" in full.text, "precondition: the model counts past 5"
    stopped = await smollm2.complete(ChatRequest.of(COUNT.last_user, max_tokens=40, stop=("5",)))
    assert "5" not in stopped.text
    assert stopped.finish_reason == "stop"
    assert full.text.startswith(stopped.text)
    assert stopped.usage.tokens_out < full.usage.tokens_out


@pytest.mark.local_model
async def test_temperature_zero_is_deterministic(smollm2: LlamaCppModel) -> None:
    a = await smollm2.complete(COUNT)
    await smollm2.complete(ChatRequest.of("Something else entirely.", max_tokens=8))
    b = await smollm2.complete(COUNT)
    assert a.text == b.text
    assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


@pytest.mark.local_model
async def test_seed_makes_sampling_reproducible(smollm2: LlamaCppModel) -> None:
    req = ChatRequest.of("Tell me a word.", temperature=1.0, seed=1234, max_tokens=12)
    a = await smollm2.complete(req)
    b = await smollm2.complete(req)
    assert a.text == b.text


@pytest.mark.local_model
async def test_stream_deltas_concatenate_to_the_text(smollm2: LlamaCppModel) -> None:
    complete = await smollm2.complete(COUNT)
    deltas: list[str] = []
    final = None
    async for chunk in smollm2.stream(COUNT):
        if chunk.response is not None:
            final = chunk.response
        else:
            deltas.append(chunk.delta)
    assert final is not None
    assert len([d for d in deltas if d]) > 3, "streamed in several pieces"
    assert "".join(deltas) == final.text == complete.text
    assert final.usage.tokens_out == complete.usage.tokens_out


@pytest.mark.local_model
async def test_stream_never_splits_a_character(smollm2: LlamaCppModel) -> None:
    # SmolLM2's byte-level tokenizer splits CJK characters across tokens.
    req = ChatRequest.of("Translate to Japanese: Tokyo is the capital of Japan.", max_tokens=30)
    deltas = [c.delta async for c in smollm2.stream(req) if c.response is None]
    text = "".join(deltas)
    assert any(ord(ch) > 0x2E80 for ch in text), f"precondition: CJK output, got {text!r}"
    assert "\ufffd" not in text


@pytest.mark.local_model
async def test_stream_stop_sequence_never_leaks(smollm2: LlamaCppModel) -> None:
    req = ChatRequest.of(COUNT.last_user, max_tokens=40, stop=(", 5",))
    deltas = [c.delta async for c in smollm2.stream(req) if c.response is None]
    text = "".join(deltas)
    assert ", 5" not in text and text.rstrip().endswith("4")


@pytest.mark.local_model
async def test_concurrent_calls_are_serialised(smollm2: LlamaCppModel) -> None:
    prompts = ["Name a colour.", "Name a fruit.", "Name an animal.", "Name a city."]
    reqs = [ChatRequest.of(p, max_tokens=10) for p in prompts]
    sequential = [await smollm2.complete(r) for r in reqs]
    concurrent = await asyncio.gather(*(smollm2.complete(r) for r in reqs))
    assert [r.text for r in concurrent] == [r.text for r in sequential]


@pytest.mark.local_model
async def test_abandoned_stream_releases_the_model(smollm2: LlamaCppModel) -> None:
    stream = smollm2.stream(ChatRequest.of("Write a long story.", max_tokens=200))
    async for chunk in stream:
        if chunk.delta:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    r = await asyncio.wait_for(smollm2.complete(ChatRequest.of("Hi", max_tokens=3)), timeout=30)
    assert r.usage.tokens_out > 0


@pytest.mark.local_model
async def test_models_share_one_loaded_engine(smollm2: LlamaCppModel) -> None:
    from duetto.models import local

    other = LlamaCppModel.smollm2(n_ctx=2048)
    await smollm2.load()
    await other.load()
    assert await smollm2._engine() is await other._engine()
    assert sum(1 for k in local._ENGINES if k[1] == 2048) == 1


@pytest.mark.local_model
async def test_prompt_longer_than_context_is_an_error(smollm2: LlamaCppModel) -> None:
    tiny = LlamaCppModel(smollm2.card, smollm2.model_path, n_ctx=64)
    with pytest.raises(ModelError, match="context"):
        await tiny.complete(ChatRequest.of("word " * 200))
