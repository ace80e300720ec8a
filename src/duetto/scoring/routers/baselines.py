"""Baseline routers: random (deterministic per text), prompt length, per-task prior."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from duetto.scoring.logistic import fit_logistic, sigmoid
from duetto.scoring.routers.base import Router, RouterInputs, log_length


class RandomRouter(Router):
    """Uniform noise, deterministic per text (the same prompt always gets the same score)."""

    kind = "random"

    def __init__(self, name: str | None = None, seed: int = 0) -> None:
        super().__init__(name)
        self.seed = seed

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        return None

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        out = np.empty((len(inputs), len(self.models)))
        for i, t in enumerate(inputs.texts):
            digest = hashlib.sha256(f"{self.seed}\x00{t}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            out[i] = rng.random(len(self.models))
        return out

    def _params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.seed = int(params["seed"])


class LengthRouter(Router):
    """Per-model logistic fit of quality on log prompt length (longer prompts are harder)."""

    kind = "length"

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        x = log_length(inputs.texts)
        self.mu, self.sd = float(x.mean()), float(x.std() + 1e-9)
        z = ((x - self.mu) / self.sd)[:, None]
        fits = [fit_logistic(z, scores[:, j], l2=1.0) for j in range(scores.shape[1])]
        self.coef = np.array([f[0][0] for f in fits])
        self.bias = np.array([f[1] for f in fits])

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        z = (log_length(inputs.texts) - self.mu) / self.sd
        return sigmoid(z[:, None] * self.coef[None, :] + self.bias[None, :])

    def _params(self) -> dict[str, Any]:
        return {"mu": self.mu, "sd": self.sd}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "bias": self.bias}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mu, self.sd = float(params["mu"]), float(params["sd"])
        self.coef, self.bias = arrays["coef"], arrays["bias"]


class PriorRouter(Router):
    """Each model's mean score per task (smoothed towards its global mean); no task → global."""

    kind = "prior"

    def __init__(self, name: str | None = None, smoothing: float = 5.0) -> None:
        super().__init__(name)
        self.smoothing = smoothing
        self.tasks: list[str] = []

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        self.global_mean = scores.mean(axis=0)
        tasks = inputs.tasks or [""] * len(inputs)
        self.tasks = sorted(set(tasks))
        index = {t: k for k, t in enumerate(self.tasks)}
        sums = np.zeros((len(self.tasks), scores.shape[1]))
        counts = np.zeros(len(self.tasks))
        for i, t in enumerate(tasks):
            sums[index[t]] += scores[i]
            counts[index[t]] += 1
        a = self.smoothing
        self.table = (sums + a * self.global_mean) / (counts[:, None] + a)

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        index = {t: k for k, t in enumerate(self.tasks)}
        tasks = inputs.tasks or [""] * len(inputs)
        rows = [self.table[index[t]] if t in index else self.global_mean for t in tasks]
        return np.array(rows).reshape(len(inputs), len(self.models))

    def _params(self) -> dict[str, Any]:
        return {"smoothing": self.smoothing, "tasks": self.tasks}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"table": self.table, "global_mean": self.global_mean}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.smoothing, self.tasks = float(params["smoothing"]), list(params["tasks"])
        self.table, self.global_mean = arrays["table"], arrays["global_mean"]
