"""Speculative decoding: the draft model's bookkeeping (fake llama, fast) and the real
Qwen2.5-Coder 1.5B target with its 0.5B draft (marked `standin`; skips without the GGUFs)."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python missing: pip install 'duetto[local]'")

from duetto.errors import ConfigError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.local import LlamaCppModel
from duetto.models.speculative import (
    GreedyLlamaDraft,
    SpeculativeLlamaModel,
    common_prefix_len,
    release_speculative_models,
)

# --------------------------------------------------------------------------- a fake draft llama

VOCAB = 16
EOS = 15


class _FakeCtx:
    def __init__(self, owner: _FakeLlama) -> None:
        self.owner = owner
        self.row = (ctypes.c_float * VOCAB)()

    def get_logits_ith(self, i: int) -> ctypes.Array[ctypes.c_float]:
        assert i == -1
        return self.row


class _FakeLlama:
    """Predicts `next(t) = (t + 1) % VOCAB` after the last evaluated token (15 is EOS)."""

    def __init__(self, n_ctx: int = 64) -> None:
        self._n_ctx = n_ctx
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self.n_tokens = 0
        self.decoded: list[int] = []  # every token ever evaluated, in order
        self._ctx = _FakeCtx(self)

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        return VOCAB

    def eval(self, tokens: list[int]) -> None:
        assert tokens, "a decode of nothing leaves stale logits"
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)
        self.decoded += tokens
        for j in range(VOCAB):
            self._ctx.row[j] = 0.0
        self._ctx.row[(tokens[-1] + 1) % VOCAB] = 5.0


@pytest.fixture
def fake_draft(monkeypatch: pytest.MonkeyPatch) -> Iterator[GreedyLlamaDraft]:
    from duetto.models import speculative

    monkeypatch.setattr(
        speculative, "_end_of_generation_test", lambda llama: lambda token: token == EOS
    )
    yield GreedyLlamaDraft(_FakeLlama(), num_draft=4)


def _ids(*tokens: int) -> np.ndarray:
    return np.array(tokens, dtype=np.intc)


def test_common_prefix_len() -> None:
    assert common_prefix_len(_ids(1, 2, 3), _ids(1, 2, 4, 5)) == 2
    assert common_prefix_len(_ids(1, 2), _ids(1, 2, 3)) == 2
    assert common_prefix_len(_ids(), _ids(1)) == 0
    assert common_prefix_len(_ids(7), _ids(8)) == 0


def test_draft_is_greedy_and_reuses_its_cache(fake_draft: GreedyLlamaDraft) -> None:
    llama = fake_draft.llama
    assert fake_draft(_ids(3, 1, 2)).tolist() == [3, 4, 5, 6]
    assert llama.decoded == [3, 1, 2, 3, 4, 5]  # the last draft token is not decoded yet
    # The target kept 3, 4 and then chose 9: only the new suffix is decoded.
    llama.decoded.clear()
    assert fake_draft(_ids(3, 1, 2, 3, 4, 9)).tolist() == [10, 11, 12, 13]
    assert llama.decoded == [9, 10, 11, 12]
    assert fake_draft.stats.verified == 4 and fake_draft.stats.accepted == 2


def test_draft_counts_full_acceptance_and_ignores_new_prompts(
    fake_draft: GreedyLlamaDraft,
) -> None:
    fake_draft(_ids(0, 1))  # drafts 2, 3, 4, 5
    fake_draft(_ids(0, 1, 2, 3, 4, 5, 6))  # all four kept, plus the target's own token
    assert (fake_draft.stats.verified, fake_draft.stats.accepted) == (4, 4)
    fake_draft.llama.decoded.clear()
    fake_draft(_ids(0, 7))  # a new generation: the previous draft is never judged
    assert (fake_draft.stats.verified, fake_draft.stats.accepted) == (4, 4)
    assert fake_draft.llama.decoded[0] == 7  # the shared first token is reused
    assert fake_draft.stats.acceptance == 1.0


def test_identical_input_still_decodes_one_token(fake_draft: GreedyLlamaDraft) -> None:
    fake_draft(_ids(4, 5))
    fake_draft.llama.decoded.clear()
    # The draft's cache holds 4 5 6 7 8; an input of 4 5 needs fresh logits after 5.
    assert fake_draft(_ids(4, 5)).tolist() == [6, 7, 8, 9]
    assert fake_draft.llama.decoded[0] == 5


def test_draft_stops_at_end_of_generation_and_context(fake_draft: GreedyLlamaDraft) -> None:
    assert fake_draft(_ids(12)).tolist() == [13, 14, 15]  # 15 is EOS: nothing after it
    small = GreedyLlamaDraft(_FakeLlama(n_ctx=5), num_draft=4)
    assert small(_ids(0, 1, 2)).tolist() == [3, 4]
    assert small(_ids(0, 1, 2, 3, 4)).tolist() == []


def test_num_draft_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        GreedyLlamaDraft(_FakeLlama(), num_draft=0)


# --------------------------------------------------------------------------- the real pair


# Continuations the target is sure of at every step. llama.cpp's CPU kernels are not batch
# invariant: a token's logits from the batched verification differ from a one-token decode by up
# to ~0.9 (measured on this 1.5B), so on a near-tie the two paths may legitimately part ways.
SURE_PROMPTS = [
    "Count from 1 to 25, separated by commas. Output only the numbers.",
    "Write the English alphabet in capital letters, separated by spaces.",
]


@pytest.fixture(scope="module")
def pair(
    standin_pair: tuple[Path, Path],
) -> Iterator[tuple[LlamaCppModel, SpeculativeLlamaModel]]:
    target, draft = standin_pair  # tests/conftest.py: skips unless both are fetched
    card = ModelCard(name="qwen2.5-coder-1.5b", context_size=1024)
    yield (
        LlamaCppModel(card, target),
        SpeculativeLlamaModel(card, target, draft, num_draft=4),
    )
    release_speculative_models()


@pytest.mark.standin
@pytest.mark.slow
async def test_greedy_output_equals_plain_decoding(
    pair: tuple[LlamaCppModel, SpeculativeLlamaModel],
) -> None:
    plain, speculative = pair
    for prompt in SURE_PROMPTS:
        request = ChatRequest.of(prompt, max_tokens=64, temperature=0.0)
        expected = await plain.complete(request)
        got = await speculative.complete(request)
        assert got.text == expected.text
        assert got.usage.tokens_out == expected.usage.tokens_out > 10
        # The target's own logprobs, read from the batch row each token was verified in.
        assert got.logprobs is not None and expected.logprobs is not None
        assert got.logprobs == pytest.approx(expected.logprobs, abs=0.3)
        assert all(math.isfinite(lp) and lp <= 0.0 for lp in got.logprobs)
    stats = speculative.draft.stats if speculative.draft else None
    assert stats is not None and stats.verified > 0
    assert stats.acceptance > 0.5, stats  # the 0.5B predicts counting and the alphabet well
    # Prefix reuse: the draft decodes each prompt once, not once per round.
    assert stats.evaluated < 2 * (stats.drafted + 2 * 40), stats


@pytest.mark.standin
@pytest.mark.slow
async def test_stop_sequence_and_max_tokens(
    pair: tuple[LlamaCppModel, SpeculativeLlamaModel],
) -> None:
    _, speculative = pair
    capped = await speculative.complete(ChatRequest.of(SURE_PROMPTS[0], max_tokens=7))
    assert capped.usage.tokens_out == 7 and capped.finish_reason == "length"
    stopped = await speculative.complete(
        ChatRequest.of(SURE_PROMPTS[0], max_tokens=64, temperature=0.0, stop=("10",))
    )
    assert stopped.finish_reason == "stop" and "10" not in stopped.text and "9" in stopped.text
