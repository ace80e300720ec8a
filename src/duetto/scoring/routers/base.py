"""Routers: scorers that predict, per prompt, how good each candidate model's answer will be.

Convention. A router is fitted on recorded scores `(n, m)` of `models` (for two-model routing
`models == [weak, strong]`). `predict_quality(inputs) -> (n, m)` estimates each model's score;
`score(inputs) -> (n,)` is the two-model routing score, **higher = the weak model is more likely
good enough** (predicted weak quality minus predicted strong quality). A route/cascade policy
keeps the weak answer when `score >= threshold` and calls the strong model otherwise. For many
models, pick `argmax(predict_quality - λ·cost)` (see `choose_models`).

Routers are saved as one `.npz` file (arrays + a JSON header, no pickle: `duetto.persist`) and
reloaded with `load_router(path)`; live strategies call `router.score_texts(texts, task)`.
Every subclass that sets `kind` registers itself (`__init_subclass__`), so `load_router` knows
it once its module is imported (the package imports them all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from duetto.errors import DataError, UserError
from duetto.persist import load_state, save_state

_REGISTRY: dict[str, type[Router]] = {}


@dataclass
class RouterInputs:
    """What a router may look at. `embeddings` are unit-norm vectors of `texts` from
    `routing_embedder()` (MiniLM, int8, 128 tokens);
    `responses` are the weak model's answers (only post-generation scorers read them)."""

    texts: list[str]
    tasks: list[str] | None = None
    embeddings: np.ndarray | None = None
    responses: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> RouterInputs:
        return replace(
            self,
            texts=[self.texts[i] for i in idx],
            tasks=[self.tasks[i] for i in idx] if self.tasks is not None else None,
            embeddings=self.embeddings[idx] if self.embeddings is not None else None,
            responses=[self.responses[i] for i in idx] if self.responses is not None else None,
        )

    def require_embeddings(self) -> np.ndarray:
        if self.embeddings is None:
            from duetto.scoring.embeddings import routing_embedder

            self.embeddings = routing_embedder().embed(self.texts)
        return self.embeddings

    def require_responses(self) -> list[str]:
        if self.responses is None:
            raise UserError("this scorer reads the weak model's answer: pass responses=")
        return self.responses


class Router(ABC):
    """Base of every router; subclasses implement `_fit`, `predict_quality` and the state hooks."""

    kind: ClassVar[str]
    needs_embeddings: ClassVar[bool] = False
    post_generation: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:  # a concrete router (not a shared base such as a feature map)
            _REGISTRY[cls.kind] = cls

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind
        self.models: list[str] = []

    # ---- training and scoring ----
    def fit(self, inputs: RouterInputs, scores: np.ndarray, models: list[str]) -> Router:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape != (len(inputs), len(models)):
            raise UserError(f"scores must be (n, m) = ({len(inputs)}, {len(models)})")
        self.models = list(models)
        self._fit(inputs, scores)
        return self

    @abstractmethod
    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None: ...

    @abstractmethod
    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        """(n, m) predicted score of each model."""

    def score(self, inputs: RouterInputs) -> np.ndarray:
        """Two-model routing score: higher = the weak model (models[0]) is more likely enough."""
        q = self.predict_quality(inputs)
        return np.asarray(q[:, 0] - q[:, -1])

    def score_texts(
        self, texts: list[str], task: str | None = None, responses: list[str] | None = None
    ) -> np.ndarray:
        """The entry point of live strategies: score raw prompts (embedding them if needed)."""
        inputs = RouterInputs(
            texts=list(texts),
            tasks=[task] * len(texts) if task is not None else None,
            responses=responses,
        )
        if self.needs_embeddings:
            inputs.require_embeddings()
        return self.score(inputs)

    # ---- persistence: JSON header + numpy arrays in one .npz ----
    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        return None

    def save(self, path: str | Path) -> Path:
        header = {"kind": self.kind, "name": self.name, "models": self.models}
        return save_state(path, {**header, "params": self._params()}, self._arrays())

    @classmethod
    def load(cls, path: str | Path) -> Router:
        return load_router(path)


def load_router(path: str | Path) -> Router:
    """Load any router saved with `Router.save`."""
    expected = "a router .npz written by Router.save"
    header, arrays = load_state(path, expected)
    registry = router_registry()
    if header.get("kind") not in registry:
        raise DataError(
            f"unknown router kind {header.get('kind')!r}", file=str(path), expected=expected
        )
    router = registry[header["kind"]](name=header["name"])
    router.models = list(header["models"])
    router._restore(header["params"], arrays)
    return router


def router_registry() -> dict[str, type[Router]]:
    """Every router kind that has been defined: kind → class."""
    return dict(_REGISTRY)


def log_length(texts: list[str]) -> np.ndarray:
    return np.log1p(np.array([len(t) for t in texts], dtype=np.float64))


def choose_models(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Per prompt, the model maximising predicted quality − λ·cost (cheaper wins ties)."""
    utility = quality - (lam + 1e-9) * costs
    return np.asarray(np.argmax(utility, axis=1))
