"""Routers learned on prompt embeddings (MiniLM ⊕ task one-hot ⊕ length): logistic regression,
cosine kNN, matrix factorisation (RouteLLM's `mf`), and their ensemble (`default_router`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from duetto.scoring.logistic import fit_logistic, sigmoid
from duetto.scoring.routers.base import Router, RouterInputs, log_length, router_registry


class _EmbeddingFeatures(Router):
    """Shared feature map: MiniLM embedding ⊕ task one-hot (when tasks are known) ⊕ log length."""

    needs_embeddings = True

    def __init__(self, name: str | None = None, task_weight: float = 1.0) -> None:
        super().__init__(name)
        self.task_weight = task_weight
        self.task_vocab: list[str] = []

    def _learn_vocab(self, inputs: RouterInputs) -> None:
        self.task_vocab = sorted(set(inputs.tasks)) if inputs.tasks is not None else []

    def features(self, inputs: RouterInputs) -> np.ndarray:
        emb = inputs.require_embeddings().astype(np.float64)
        parts = [emb, ((log_length(inputs.texts) - 6.0) / 2.0)[:, None]]
        if self.task_vocab:
            index = {t: k for k, t in enumerate(self.task_vocab)}
            onehot = np.zeros((len(inputs), len(self.task_vocab)))
            for i, t in enumerate(inputs.tasks or []):
                if t in index:
                    onehot[i, index[t]] = self.task_weight
            parts.append(onehot)
        return np.hstack(parts)

    def _feature_params(self) -> dict[str, Any]:
        return {"task_weight": self.task_weight, "task_vocab": self.task_vocab}

    def _restore_features(self, params: dict[str, Any]) -> None:
        self.task_weight = float(params["task_weight"])
        self.task_vocab = list(params["task_vocab"])


class LogisticRouter(_EmbeddingFeatures):
    """One L2 logistic regression per model on the feature map."""

    kind = "logreg"

    def __init__(self, name: str | None = None, c: float = 1.0, task_weight: float = 1.0) -> None:
        super().__init__(name, task_weight)
        self.c = c

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        self._learn_vocab(inputs)
        x = self.features(inputs)
        fits = [fit_logistic(x, scores[:, j], l2=1.0 / self.c) for j in range(scores.shape[1])]
        self.coef = np.stack([f[0] for f in fits], axis=1)
        self.bias = np.array([f[1] for f in fits])

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        return sigmoid(self.features(inputs) @ self.coef + self.bias[None, :])

    def _params(self) -> dict[str, Any]:
        return {"c": self.c, **self._feature_params()}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "bias": self.bias}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.c = float(params["c"])
        self._restore_features(params)
        self.coef, self.bias = arrays["coef"], arrays["bias"]


class KnnRouter(Router):
    """Cosine k-nearest neighbours on embeddings; a model's predicted quality is its mean score
    over the neighbours, shrunk towards its global mean."""

    kind = "knn"
    needs_embeddings = True

    def __init__(self, name: str | None = None, k: int = 40, shrink: float = 5.0) -> None:
        super().__init__(name)
        self.k, self.shrink = k, shrink

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        self.bank = inputs.require_embeddings().astype(np.float32)
        self.bank_scores = scores.astype(np.float32)
        self.global_mean = scores.mean(axis=0)

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        emb = inputs.require_embeddings().astype(np.float32)
        k = min(self.k, len(self.bank))
        out = np.empty((len(inputs), len(self.models)))
        for start in range(0, len(inputs), 512):  # chunks bound the (chunk × bank) matrix
            sims = emb[start : start + 512] @ self.bank.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            neigh = self.bank_scores[top].sum(axis=1)
            out[start : start + 512] = (neigh + self.shrink * self.global_mean) / (k + self.shrink)
        return out

    def _params(self) -> dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "bank_scores": self.bank_scores, "global_mean": self.global_mean}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.k, self.shrink = int(params["k"]), float(params["shrink"])
        self.bank, self.bank_scores = arrays["bank"], arrays["bank_scores"]
        self.global_mean = arrays["global_mean"]


class MFRouter(_EmbeddingFeatures):
    """Matrix factorisation in the spirit of RouteLLM's `mf` router: a prompt is projected to a
    latent vector p = W·x, each model has a latent vector v_m and a bias b_m, and
    quality(m, prompt) = σ(p·v_m + b_m). Trained full-batch with Adam on soft binary
    cross-entropy (pointwise over every recorded model score) with L2 on W and v."""

    kind = "mf"

    def __init__(
        self,
        name: str | None = None,
        dim: int = 32,
        epochs: int = 100,
        lr: float = 0.01,
        l2: float = 1e-3,
        seed: int = 0,
        task_weight: float = 1.0,
    ) -> None:
        super().__init__(name, task_weight)
        self.dim, self.epochs, self.lr, self.l2, self.seed = dim, epochs, lr, l2, seed

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        self._learn_vocab(inputs)
        x = self.features(inputs)
        n, d = x.shape
        m = scores.shape[1]
        rng = np.random.default_rng(self.seed)
        params = {
            "w": rng.normal(0, 1 / math.sqrt(d), (d, self.dim)),
            "v": rng.normal(0, 1 / math.sqrt(self.dim), (self.dim, m)),
            "b": np.log((scores.mean(0) + 1e-3) / (1 - scores.mean(0) + 1e-3)),
        }
        moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
        for step in range(1, self.epochs + 1):
            p = x @ params["w"]
            logits = p @ params["v"] + params["b"]
            g = (sigmoid(logits) - scores) / n  # dBCE/dlogit, averaged
            grads = {
                "v": p.T @ g + self.l2 * params["v"],
                "w": x.T @ (g @ params["v"].T) + self.l2 * params["w"],
                "b": g.sum(axis=0),
            }
            for k, grad in grads.items():  # Adam
                m1, m2 = moments[k]
                m1 *= 0.9
                m1 += 0.1 * grad
                m2 *= 0.999
                m2 += 0.001 * grad * grad
                hat1 = m1 / (1 - 0.9**step)
                hat2 = m2 / (1 - 0.999**step)
                params[k] -= self.lr * hat1 / (np.sqrt(hat2) + 1e-8)
        self.w, self.v, self.b = params["w"], params["v"], params["b"]

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        return sigmoid((self.features(inputs) @ self.w) @ self.v + self.b[None, :])

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "epochs": self.epochs,
            "lr": self.lr,
            "l2": self.l2,
            "seed": self.seed,
            **self._feature_params(),
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"w": self.w, "v": self.v, "b": self.b}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.dim, self.epochs = int(params["dim"]), int(params["epochs"])
        self.lr, self.l2, self.seed = float(params["lr"]), float(params["l2"]), int(params["seed"])
        self._restore_features(params)
        self.w, self.v, self.b = arrays["w"], arrays["v"], arrays["b"]


class EnsembleRouter(Router):
    """Weighted mean of member routers' predicted quality (members are saved inside the file)."""

    kind = "ensemble"

    def __init__(
        self,
        name: str | None = None,
        members: list[Router] | None = None,
        weights: list[float] | None = None,
    ) -> None:
        super().__init__(name)
        self.members = members or []
        self.weights = weights or [1.0] * len(self.members)

    @property
    def needs_embeddings(self) -> bool:  # type: ignore[override]
        return any(m.needs_embeddings for m in self.members)

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        for m in self.members:
            m.fit(inputs, scores, self.models)

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        total = sum(self.weights)
        return (
            sum(  # type: ignore[return-value]
                w * m.predict_quality(inputs)
                for w, m in zip(self.weights, self.members, strict=True)
            )
            / total
        )

    def _params(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "members": [
                {"kind": m.kind, "name": m.name, "params": m._params()} for m in self.members
            ],
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"m{i}_{k}": v for i, m in enumerate(self.members) for k, v in m._arrays().items()}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        registry = router_registry()
        self.weights = [float(w) for w in params["weights"]]
        self.members = []
        for i, spec in enumerate(params["members"]):
            member = registry[spec["kind"]](name=spec["name"])
            member.models = self.models
            prefix = f"m{i}_"
            member._restore(
                spec["params"],
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)},
            )
            self.members.append(member)


def default_router() -> EnsembleRouter:
    """The router the live strategies should use: logistic regression (C=0.1) on MiniLM +
    task one-hot + length, averaged with half-weight cosine kNN (k=100). Chosen by 5-fold CV on
    routellm-gsm8k, routellm-mmlu and llmrouter (docs/routing.md)."""
    return EnsembleRouter(
        name="ensemble",
        members=[LogisticRouter(c=0.1), KnnRouter(k=100)],
        weights=[1.0, 0.5],
    )
