"""The `head` student: a logistic-regression classifier on MiniLM sentence embeddings.

Trains in about a second on CPU for 1,000 examples. Each intent name (underscores read as
spaces, e.g. "card arrival") is added as one extra training example: the label list is known to
the deployment, and with ~7-13 teacher labels per intent this anchor measurably helps the rare
intents. The confidence is the top class probability; the loop escalates below a threshold.

`anchor_weight` sets how much each intent name counts against one trace (1: as one example).
`verify_k=K` trains only on traces whose label is among the K intents whose names are nearest the
query: a verifier of the teacher's answer from a signal the teacher did not use. A noisy teacher
(the 1.5B local model is right on ~40% of clinc150's in-scope queries) then teaches fewer but
cleaner examples. Traces labelled out-of-scope are always kept; `dropped` counts the rest.

`novelty=True` (datasets with out-of-scope queries): the confidence is multiplied by the cosine
similarity of the query to the nearest example the student learned from (traces the teacher gave
an intent, and the intent names). A softmax over the known intents can be sure of a query unlike
any of them; the similarity is what says "unlike" - measured on clinc150 in docs/distill.md.
A MiniLM embedder is not pickled (a worker loads its own), so the student ships to Ray.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duetto.scoring.embeddings import MiniLMEmbedder, TextEmbedder, default_embedder


def label_text(label: str) -> str:
    return label.replace("_", " ").strip()


class HeadStudent:
    name = "head"

    def __init__(
        self,
        label_names: Sequence[str] = (),
        *,
        c: float = 30.0,
        embedder: TextEmbedder | None = None,
        novelty: bool = False,
        out_of_scope: str | None = None,
        anchor_weight: float = 1.0,
        verify_k: int = 0,
    ) -> None:
        self.label_names = list(label_names)
        self.c = c
        self._embedder = embedder
        self.novelty = novelty
        self.anchor_weight = anchor_weight
        self.verify_k = verify_k
        self.kept: np.ndarray | None = None  # which traces the verifier kept at the last fit
        self.out_of_scope = out_of_scope  # traces with this label are not "known" examples
        self.classifier: Any = None
        self.known: np.ndarray | None = None  # unit embeddings of the in-scope examples

    @property
    def dropped(self) -> int:
        """Traces the verifier left out at the last fit."""
        return 0 if self.kept is None else int((~self.kept).sum())

    @property
    def embedder(self) -> TextEmbedder:
        return self._embedder if self._embedder is not None else default_embedder()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self._embedder, MiniLMEmbedder):  # heavy: the receiver loads its own
            state["_embedder"] = None
        return state

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        from sklearn.linear_model import LogisticRegression

        anchors = self.label_names
        x = self.embedder.embed([*texts, *(label_text(n) for n in anchors)])
        y = np.asarray([*labels, *anchors])
        n = len(texts)
        keep = np.ones(len(y), dtype=bool)
        if self.verify_k and anchors:
            keep[:n] = self._plausible(x[:n], x[n:], y[:n])
        self.kept = keep[:n]
        if len(set(y[keep].tolist())) < 2:
            raise ValueError("the head student needs at least two distinct labels")
        weights = np.r_[np.ones(n), np.full(len(anchors), self.anchor_weight)]
        self.classifier = LogisticRegression(C=self.c, max_iter=3000).fit(
            x[keep], y[keep], sample_weight=weights[keep]
        )
        if self.novelty:  # every trace the teacher gave an intent, verified or not
            self.known = np.asarray(x[y != self.out_of_scope], dtype=np.float32)

    def _plausible(self, x: np.ndarray, names: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per trace: its label is out-of-scope or among the verify_k nearest intent names."""
        top = np.argsort(-(x @ names.T), axis=1)[:, : self.verify_k]
        index = {label: i for i, label in enumerate(self.label_names)}
        return np.asarray(
            [
                label == self.out_of_scope or index.get(label, -1) in row
                for label, row in zip(labels.tolist(), top.tolist(), strict=True)
            ],
            dtype=bool,
        )

    def predict_embedded(self, x: np.ndarray) -> tuple[list[str], list[float]]:
        if self.classifier is None:
            raise RuntimeError("HeadStudent.predict called before fit")
        if len(x) == 0:
            return [], []
        proba = self.classifier.predict_proba(x)
        best = proba.argmax(axis=1)
        labels = [str(v) for v in self.classifier.classes_[best]]
        conf = proba[np.arange(len(best)), best]
        if self.novelty and self.known is not None and len(self.known):
            nearest = np.asarray(x, dtype=np.float32) @ self.known.T
            conf = conf * np.clip(nearest.max(axis=1), 0.0, 1.0)
        return labels, [float(v) for v in conf]

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        return self.predict_embedded(self.embedder.embed(list(texts)))

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(pickle.dumps(self))

    @classmethod
    def load(cls, path: str | Path) -> HeadStudent:
        obj = pickle.loads(Path(path).read_bytes())  # only files this tool wrote itself
        if not isinstance(obj, cls):
            raise TypeError(f"{path} does not hold a HeadStudent")
        return obj
