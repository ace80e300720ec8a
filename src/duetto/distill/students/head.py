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
A MiniLM embedder is not pickled (a worker loads its own), so the student ships to Ray. On disk
it is `state()` in one .npz (`duetto.distill.students.save_student`, no pickle).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from duetto.distill.students import (
    EXPECTED,
    embedder_from_name,
    embedder_name,
    load_student,
    save_student,
)
from duetto.errors import DataError
from duetto.scoring.embeddings import MiniLMEmbedder, TextEmbedder, default_embedder
from duetto.scoring.logistic import sigmoid


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
        # The fitted multinomial logistic regression: classes, (k, d) weights, (k,) biases
        # ((1, d) and (1,) for two classes, as sklearn keeps them).
        self.classes: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None
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
        with warnings.catch_warnings():
            # one anchor per class plus a few traces: "more classes than half the samples" is
            # what a few-shot head is, not a mistake to warn a user about
            warnings.filterwarnings("ignore", message="The number of unique classes")
            fitted = LogisticRegression(C=self.c, max_iter=3000).fit(
                x[keep], y[keep], sample_weight=weights[keep]
            )
        self.classes = np.asarray(fitted.classes_).astype(str)
        self.coef = np.asarray(fitted.coef_, dtype=np.float64)
        self.intercept = np.asarray(fitted.intercept_, dtype=np.float64)
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

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities, as sklearn's LogisticRegression computes them."""
        assert self.coef is not None and self.intercept is not None
        z = np.asarray(x, dtype=np.float64) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # two classes: one logit
            p = sigmoid(z[:, 0])
            return np.column_stack([1.0 - p, p])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict_embedded(self, x: np.ndarray) -> tuple[list[str], list[float]]:
        if self.classes is None:
            raise RuntimeError("HeadStudent.predict called before fit")
        if len(x) == 0:
            return [], []
        proba = self.predict_proba(x)
        best = proba.argmax(axis=1)
        labels = [str(v) for v in self.classes[best]]
        conf = proba[np.arange(len(best)), best]
        if self.novelty and self.known is not None and len(self.known):
            nearest = np.asarray(x, dtype=np.float32) @ self.known.T
            conf = conf * np.clip(nearest.max(axis=1), 0.0, 1.0)
        return labels, [float(v) for v in conf]

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        return self.predict_embedded(self.embedder.embed(list(texts)))

    # ---- persistence (duetto.persist: JSON + arrays, no pickle) ----

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.classes is None or self.coef is None or self.intercept is None:
            raise RuntimeError("HeadStudent.state called before fit")
        params = {
            "label_names": self.label_names,
            "c": self.c,
            "novelty": self.novelty,
            "out_of_scope": self.out_of_scope,
            "anchor_weight": self.anchor_weight,
            "verify_k": self.verify_k,
            "embedder": embedder_name(self._embedder),
        }
        arrays = {"classes": self.classes, "coef": self.coef, "intercept": self.intercept}
        if self.kept is not None:
            arrays["kept"] = self.kept
        if self.known is not None:
            arrays["known"] = self.known
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> HeadStudent:
        student = cls(
            params["label_names"],
            c=float(params["c"]),
            embedder=embedder_from_name(params.get("embedder")),
            novelty=bool(params["novelty"]),
            out_of_scope=params.get("out_of_scope"),
            anchor_weight=float(params["anchor_weight"]),
            verify_k=int(params["verify_k"]),
        )
        student.classes = arrays["classes"].astype(str)
        student.coef, student.intercept = arrays["coef"], arrays["intercept"]
        student.kept, student.known = arrays.get("kept"), arrays.get("known")
        return student

    def save(self, path: str | Path) -> Path:
        return save_student(self, path)

    @classmethod
    def load(cls, path: str | Path) -> HeadStudent:
        student = load_student(path)
        if not isinstance(student, cls):
            raise DataError("not a head student", file=str(path), expected=EXPECTED)
        return student
