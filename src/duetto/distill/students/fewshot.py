"""The `fewshot` student: the teacher's answers as a bank of demonstrations for the SLM.

For each query, the k most similar teacher-labelled queries (MiniLM cosine) are retrieved and
shown to the embedded SmolLM2 as worked examples; the SLM then picks one of the labels those
demonstrations carry, by constrained decoding (it can only spell one of them). When all k
demonstrations agree, no SLM call is needed. The confidence is the similarity-weighted vote
share of the chosen label among the demonstrations, which the loop thresholds like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duetto.distill.students import embedder_from_name, embedder_name
from duetto.distill.teachers import LabelTrie
from duetto.scoring.embeddings import MiniLMEmbedder, TextEmbedder, default_embedder


def vote_shares(sims: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Similarity-weighted share of each label among the retrieved demonstrations."""
    weights = np.clip(np.asarray(sims, dtype=float), 1e-6, None)
    total = float(weights.sum())
    out: dict[str, float] = {}
    for w, lab in zip(weights.tolist(), labels, strict=True):
        out[lab] = out.get(lab, 0.0) + w / total
    return out


def demo_messages(query: str, demos: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    lines = ["Label the last query like the examples. Examples:"]
    lines += [f"Query: {t}\nLabel: {lab}" for t, lab in demos]
    return [
        {"role": "system", "content": "\n".join(lines)},
        {"role": "user", "content": f"Query: {query}\nLabel:"},
    ]


class FewShotStudent:
    name = "fewshot"

    def __init__(
        self,
        label_names: Sequence[str] = (),
        *,
        k: int = 8,
        model_path: str | Path | None = None,
        embedder: TextEmbedder | None = None,
        use_model: bool = True,
    ) -> None:
        self.label_names = list(label_names)
        self.k = k
        self.model_path = Path(model_path) if model_path is not None else None
        self.use_model = use_model  # False: the retrieval vote alone (no SLM), for tests
        self._embedder = embedder
        self.bank_texts: list[str] = []
        self.bank_labels: list[str] = []
        self.bank: np.ndarray | None = None
        self._llama: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_llama"] = None
        if isinstance(self._embedder, MiniLMEmbedder):
            state["_embedder"] = None
        return state

    @property
    def embedder(self) -> TextEmbedder:
        return self._embedder if self._embedder is not None else default_embedder()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.bank_texts, self.bank_labels = list(texts), list(labels)
        self.bank = self.embedder.embed(self.bank_texts)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        if self.bank is None:
            raise RuntimeError("FewShotStudent.predict called before fit")
        if not texts:
            return [], []
        sims = self.embedder.embed(list(texts)) @ self.bank.T
        k = min(self.k, len(self.bank_texts))
        labels: list[str] = []
        confidences: list[float] = []
        for text, row in zip(texts, sims, strict=True):
            top = np.argsort(-row)[:k]
            demo_labels = [self.bank_labels[i] for i in top]
            shares = vote_shares(row[top], demo_labels)
            if len(shares) == 1 or not self.use_model:
                choice = max(shares, key=lambda lab: shares[lab])
            else:
                # Most similar demonstration last: nearest to the query in the prompt.
                demos = [(self.bank_texts[i], self.bank_labels[i]) for i in top[::-1]]
                choice = self._choose(text, demos, sorted(shares))
            labels.append(choice)
            confidences.append(min(1.0, shares[choice]))
        return labels, confidences

    # ---- persistence (duetto.persist: JSON + arrays, no pickle) ----

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.bank is None:
            raise RuntimeError("FewShotStudent.state called before fit")
        params = {
            "label_names": self.label_names,
            "k": self.k,
            "model_path": str(self.model_path) if self.model_path is not None else None,
            "use_model": self.use_model,
            "embedder": embedder_name(self._embedder),
            "bank_texts": self.bank_texts,
            "bank_labels": self.bank_labels,
        }
        return params, {"bank": self.bank}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> FewShotStudent:
        student = cls(
            params["label_names"],
            k=int(params["k"]),
            model_path=params.get("model_path"),
            embedder=embedder_from_name(params.get("embedder")),
            use_model=bool(params["use_model"]),
        )
        student.bank_texts = [str(t) for t in params["bank_texts"]]
        student.bank_labels = [str(t) for t in params["bank_labels"]]
        student.bank = arrays["bank"]
        return student

    def _choose(self, query: str, demos: list[tuple[str, str]], choices: list[str]) -> str:
        llama = self._load()
        from llama_cpp import llama_chat_format

        prompt = llama_chat_format.format_chatml(messages=demo_messages(query, demos)).prompt
        tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
        n_vocab = llama.n_vocab()
        trie = LabelTrie.build(
            {c: llama.tokenize(c.encode(), add_bos=False, special=False) for c in choices}
        )
        llama.reset()

        def next_logits(token: int | None) -> Any:
            llama.eval(tokens if token is None else [token])
            return np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))

        return trie.decode(next_logits)

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            from duetto.models.local import smollm2_path

            path = self.model_path or smollm2_path()
            self._llama = Llama(model_path=str(path), n_ctx=2048, n_threads=2, verbose=False)
        return self._llama
