"""The `head` student: a logistic-regression classifier on MiniLM sentence embeddings.

Trains in about a second on CPU for 1,000 examples. Each intent name (underscores read as
spaces, e.g. "card arrival") is added as one extra training example: the label list is known to
the deployment, and with ~7-13 teacher labels per intent this anchor measurably helps the rare
intents. The confidence is the top class probability; the loop escalates below a threshold.
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
    ) -> None:
        self.label_names = list(label_names)
        self.c = c
        self._embedder = embedder
        self.classifier: Any = None

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
        if len(set(y.tolist())) < 2:
            raise ValueError("the head student needs at least two distinct labels")
        self.classifier = LogisticRegression(C=self.c, max_iter=3000).fit(x, y)

    def predict_embedded(self, x: np.ndarray) -> tuple[list[str], list[float]]:
        if self.classifier is None:
            raise RuntimeError("HeadStudent.predict called before fit")
        if len(x) == 0:
            return [], []
        proba = self.classifier.predict_proba(x)
        best = proba.argmax(axis=1)
        labels = [str(v) for v in self.classifier.classes_[best]]
        return labels, [float(v) for v in proba[np.arange(len(best)), best]]

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
