"""Speculative decoding between two local GGUFs of one tokenizer family (llama.cpp).

A small draft model (e.g. Qwen2.5-Coder-0.5B) proposes `num_draft` tokens greedily; the target
(e.g. Qwen2.5-Coder-1.5B) checks them all in one batched decode and keeps the longest prefix it
would have produced itself, plus one token of its own. At temperature 0 the output is the
target's greedy output; only the number of target decodes changes.

llama-cpp-python provides the verification loop (`Llama(draft_model=...)` in `Llama.generate`);
this module provides the draft side, `GreedyLlamaDraft`, which keeps the draft model's KV cache
across calls and feeds it only the tokens it has not seen (the longest common prefix with what
it evaluated last is reused), so a draft round costs about `num_draft` single-token decodes of
the small model. `SpeculativeLlamaModel` is the duetto backend around the pair.

Needs the `local` extra (llama-cpp-python); this module is never imported by `import duetto`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp.llama_speculative import LlamaDraftModel

from duetto.errors import ConfigError, ModelUnavailable
from duetto.models.base import ModelCard
from duetto.models.local import LlamaCppModel, _Engine

__all__ = [
    "DraftStats",
    "GreedyLlamaDraft",
    "SpeculativeLlamaModel",
    "build_speculative_llama",
    "common_prefix_len",
    "release_speculative_models",
]

DEFAULT_NUM_DRAFT = 3  # measured best of 3 and 6 here (benchmarks/speculative.py)


def common_prefix_len(a: npt.NDArray[np.intc], b: npt.NDArray[np.intc]) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(slots=True)
class DraftStats:
    """Counters of one draft model. `accepted / verified` is the acceptance rate."""

    calls: int = 0
    drafted: int = 0  # tokens proposed
    verified: int = 0  # proposed tokens whose fate the target has shown (all but the last round)
    accepted: int = 0  # of those, kept by the target
    evaluated: int = 0  # tokens the draft model decoded (prefix reuse keeps this small)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.verified if self.verified else float("nan")


class GreedyLlamaDraft(LlamaDraftModel):
    """Drafts up to `num_draft` tokens greedily with a small `Llama`, reusing its KV cache.

    `Llama.generate` calls it with every token of the target so far (prompt + output); only the
    suffix beyond the longest common prefix with the draft's own cache is decoded. Not
    thread-safe: it belongs to one target `Llama`, whose users already serialise.
    """

    def __init__(self, llama: Any, num_draft: int = DEFAULT_NUM_DRAFT) -> None:
        if num_draft < 1:
            raise ConfigError(f"num_draft must be >= 1, got {num_draft}")
        self.llama = llama
        self.num_draft = num_draft
        self.stats = DraftStats()
        self._n_vocab = int(llama.n_vocab())
        self._eog = _end_of_generation_test(llama)
        self._last_input: npt.NDArray[np.intc] = np.empty(0, dtype=np.intc)
        self._last_draft: npt.NDArray[np.intc] = np.empty(0, dtype=np.intc)

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        input_ids = np.asarray(input_ids, dtype=np.intc)
        self._count_accepted(input_ids)
        llama = self.llama
        room = llama.n_ctx() - len(input_ids)
        if room <= 0 or len(input_ids) == 0:
            return self._remember(input_ids, np.empty(0, dtype=np.intc))

        # Reuse the cached prefix; at least one token is decoded so the logits are fresh.
        reuse = min(common_prefix_len(llama.input_ids[: llama.n_tokens], input_ids),
                    len(input_ids) - 1)  # fmt: skip
        llama.n_tokens = reuse  # eval() drops the KV cache beyond n_tokens first
        llama.eval(input_ids[reuse:].tolist())
        self.stats.evaluated += len(input_ids) - reuse

        draft: list[int] = []
        for i in range(min(self.num_draft, room)):
            token = self._argmax_last()
            draft.append(token)
            if self._eog(token) or i == self.num_draft - 1 or i == room - 1:
                break  # the last token is decoded on the next call, if the target keeps it
            llama.eval([token])
            self.stats.evaluated += 1
        return self._remember(input_ids, np.array(draft, dtype=np.intc))

    def reset_stats(self) -> None:
        self.stats = DraftStats()
        self._last_draft = np.empty(0, dtype=np.intc)

    def _argmax_last(self) -> int:
        row = np.ctypeslib.as_array(self.llama._ctx.get_logits_ith(-1), shape=(self._n_vocab,))
        return int(row.argmax())

    def _count_accepted(self, input_ids: npt.NDArray[np.intc]) -> None:
        """The target's tokens after the previous input show how much of the last draft it kept."""
        previous, draft = self._last_input, self._last_draft
        extends = len(input_ids) > len(previous) and np.array_equal(
            input_ids[: len(previous)], previous
        )
        if len(draft) == 0 or not extends:  # a new generation: the last draft was never checked
            return
        continuation = input_ids[len(previous) : len(previous) + len(draft)]
        self.stats.verified += len(draft)
        self.stats.accepted += common_prefix_len(continuation, draft)

    def _remember(
        self, input_ids: npt.NDArray[np.intc], draft: npt.NDArray[np.intc]
    ) -> npt.NDArray[np.intc]:
        self.stats.calls += 1
        self.stats.drafted += len(draft)
        self._last_input = input_ids.copy()
        self._last_draft = draft
        return draft


def _end_of_generation_test(llama: Any) -> Any:
    import llama_cpp

    vocab = llama._model.vocab

    def is_eog(token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    return is_eog


# --------------------------------------------------------------------------- building the pair


def build_speculative_llama(
    target_path: str | Path,
    draft_path: str | Path,
    *,
    num_draft: int = DEFAULT_NUM_DRAFT,
    n_ctx: int = 4096,
    n_threads: int = 2,
) -> Any:
    """A target `llama_cpp.Llama` whose `generate` verifies drafts of a `GreedyLlamaDraft`.

    The draft is reachable as `llama.draft_model` (its `.stats` count drafted/accepted tokens).
    Both files must share a tokenizer (same vocabulary size and end-of-sequence token).
    """
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - this module imports llama_cpp already
        raise ModelUnavailable("llama-cpp-python is not installed") from exc
    for path in (Path(target_path), Path(draft_path)):
        if not path.is_file():
            raise ModelUnavailable(f"model file not found: {path}")
    try:
        small = Llama(model_path=str(draft_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except Exception as exc:  # llama_cpp raises ValueError/RuntimeError with little structure
        raise ModelUnavailable(f"llama.cpp could not load {draft_path}: {exc}") from exc
    draft = GreedyLlamaDraft(small, num_draft)
    try:
        # logits_all=True explicitly: llama-cpp-python forces it for a draft model but sizes its
        # score buffer from the argument, which overflows past n_batch tokens otherwise.
        target = Llama(
            model_path=str(target_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            logits_all=True,
            draft_model=draft,
            verbose=False,
        )
    except Exception as exc:
        small.close()
        raise ModelUnavailable(f"llama.cpp could not load {target_path}: {exc}") from exc
    if (target.n_vocab(), target.token_eos()) != (small.n_vocab(), small.token_eos()):
        target.close()
        small.close()
        raise ConfigError(
            f"draft {Path(draft_path).name} and target {Path(target_path).name} do not share a "
            f"tokenizer (vocabulary {small.n_vocab()} vs {target.n_vocab()})"
        )
    return target


def _engine_of(llama: Any) -> _Engine:
    """The same chat formatting as `duetto.models.local` uses, around a ready `Llama`."""
    from llama_cpp import llama_chat_format

    eos, bos = llama.token_eos(), llama.token_bos()
    template = llama.metadata.get("tokenizer.chat_template")
    format_chat: Any
    if template:
        format_chat = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
    else:
        format_chat = llama_chat_format.format_chatml
    return _Engine(llama=llama, format_chat=format_chat, n_vocab=llama.n_vocab(), eos=eos,
                   lock=threading.Lock())  # fmt: skip


_SPEC_ENGINES: dict[tuple[str, str, int, int], _Engine] = {}
_SPEC_LOCK = threading.Lock()


def _load_pair(target: Path, draft: Path, num_draft: int, n_ctx: int, n_threads: int) -> _Engine:
    key = (str(target.resolve()), str(draft.resolve()), num_draft, n_ctx)
    with _SPEC_LOCK:
        engine = _SPEC_ENGINES.get(key)
        if engine is None:
            llama = build_speculative_llama(target, draft, num_draft=num_draft, n_ctx=n_ctx,
                                            n_threads=n_threads)  # fmt: skip
            engine = _SPEC_ENGINES[key] = _engine_of(llama)
        return engine


def release_speculative_models() -> None:
    """Free every target/draft pair loaded by `SpeculativeLlamaModel` in this process."""
    with _SPEC_LOCK:
        engines = list(_SPEC_ENGINES.values())
        _SPEC_ENGINES.clear()
    for engine in engines:
        with engine.lock:
            engine.llama.draft_model.llama.close()
            engine.llama.close()


class SpeculativeLlamaModel(LlamaCppModel):
    """`LlamaCppModel` on the target GGUF, decoding speculatively with a small draft GGUF.

    Same requests, logprobs (of the target) and accounting as `LlamaCppModel`; at temperature 0
    the text is the target's own greedy text. At temperature > 0 llama-cpp-python accepts a
    drafted token when the target's sampler draws the same token, which keeps the target's
    sampling distribution (but not the token stream of a plain seeded run).
    """

    def __init__(
        self,
        card: ModelCard,
        model_path: str | Path,
        draft_model_path: str | Path,
        *,
        num_draft: int = DEFAULT_NUM_DRAFT,
        n_ctx: int | None = None,
        n_threads: int = 2,
    ) -> None:
        super().__init__(card, model_path, n_ctx=n_ctx, n_threads=n_threads)
        if num_draft < 1:
            raise ConfigError(f"num_draft must be >= 1, got {num_draft}")
        self.draft_model_path = Path(draft_model_path)
        self.num_draft = num_draft

    @property
    def draft(self) -> GreedyLlamaDraft | None:
        """The loaded draft model (its `.stats`), or None before the first call or `load()`."""
        key = (str(self.model_path.resolve()), str(self.draft_model_path.resolve()),
               self.num_draft, self.n_ctx)  # fmt: skip
        engine = _SPEC_ENGINES.get(key)
        return engine.llama.draft_model if engine is not None else None

    async def _engine(self) -> _Engine:
        return await asyncio.to_thread(
            _load_pair,
            self.model_path,
            self.draft_model_path,
            self.num_draft,
            self.n_ctx,
            self.n_threads,
        )
