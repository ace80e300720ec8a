"""Routers: scorers that predict, per prompt, how good each candidate model's answer will be.

Convention. A router is fitted on recorded scores `(n, m)` of `models` (for two-model routing
`models == [weak, strong]`). `predict_quality(inputs) -> (n, m)` estimates each model's score;
`score(inputs) -> (n,)` is the two-model routing score, **higher = the weak model is more likely
good enough** (predicted weak quality minus predicted strong quality). A route/cascade policy
keeps the weak answer when `score >= threshold` and calls the strong model otherwise. For many
models, pick `argmax(predict_quality - λ·cost)` (see `choose_models`).

Routers are saved as one `.npz` file (arrays + a JSON header, no pickle) and reloaded with
`load_router(path)`; live strategies call `router.score_texts(texts, task)`.

Pre-generation routers live here; post-generation (cascade) scorers that read the weak model's
answer live in `routers_cascade.py`.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from duetto.errors import DataError, UserError

FORMAT_VERSION = 1


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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -35.0, 35.0))))


class Router(ABC):
    """Base of every router; subclasses implement `_fit`, `predict_quality` and the state hooks."""

    kind: ClassVar[str]
    needs_embeddings: ClassVar[bool] = False
    post_generation: ClassVar[bool] = False

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
        out = Path(path)
        if out.suffix != ".npz":
            out = out.with_suffix(".npz")
        out.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "models": self.models,
            "params": self._params(),
        }
        arrays = {f"a_{k}": v for k, v in self._arrays().items()}
        np.savez(out, __header__=np.array(json.dumps(header)), **arrays)  # type: ignore[arg-type]
        return out

    @classmethod
    def load(cls, path: str | Path) -> Router:
        return load_router(path)


def load_router(path: str | Path) -> Router:
    """Load any router saved with `Router.save`."""
    p = Path(path)
    expected = "a router .npz written by Router.save"
    if not p.is_file():
        raise DataError("router file not found", file=str(p), expected=expected)
    try:
        with np.load(p, allow_pickle=False) as z:
            header = json.loads(str(z["__header__"]))
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"unreadable router file ({e})", file=str(p), expected=expected) from e
    registry = router_registry()
    if header.get("kind") not in registry:
        raise DataError(
            f"unknown router kind {header.get('kind')!r}", file=str(p), expected=expected
        )
    router = registry[header["kind"]](name=header["name"])
    router.models = list(header["models"])
    router._restore(header["params"], arrays)
    return router


def router_registry() -> dict[str, type[Router]]:
    from duetto.scoring import routers_cascade

    classes: list[type[Router]] = [
        RandomRouter,
        LengthRouter,
        PriorRouter,
        LogisticRouter,
        KnnRouter,
        MFRouter,
        EnsembleRouter,
        *routers_cascade.CASCADE_ROUTERS,
    ]
    return {c.kind: c for c in classes}


def choose_models(quality: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Per prompt, the model maximising predicted quality − λ·cost (cheaper wins ties)."""
    utility = quality - (lam + 1e-9) * costs
    return np.asarray(np.argmax(utility, axis=1))


# ---- baselines ---------------------------------------------------------------------------


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


def _fit_soft_logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Logistic regression on soft labels y in [0, 1] (each row counted as y positive and 1 − y
    negative), L2 strength 1/c. Returns (coef, intercept). Constant targets → intercept only."""
    from sklearn.linear_model import LogisticRegression

    y = np.clip(y, 0.0, 1.0)
    mean = float(y.mean())
    if mean <= 1e-6 or mean >= 1 - 1e-6:
        return np.zeros(x.shape[1]), math.log((mean + 1e-3) / (1 - mean + 1e-3))
    xx = np.vstack([x, x])
    yy = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ww = np.concatenate([y, 1 - y])
    keep = ww > 0
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit(xx[keep], yy[keep], sample_weight=ww[keep])
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _log_length(texts: list[str]) -> np.ndarray:
    return np.log1p(np.array([len(t) for t in texts], dtype=np.float64))


class LengthRouter(Router):
    """Per-model logistic fit of quality on log prompt length (longer prompts are harder)."""

    kind = "length"

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        x = _log_length(inputs.texts)
        self.mu, self.sd = float(x.mean()), float(x.std() + 1e-9)
        z = ((x - self.mu) / self.sd)[:, None]
        fits = [_fit_soft_logistic(z, scores[:, j], 1.0) for j in range(scores.shape[1])]
        self.coef = np.array([f[0][0] for f in fits])
        self.bias = np.array([f[1] for f in fits])

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        z = (_log_length(inputs.texts) - self.mu) / self.sd
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


# ---- learned on embeddings ---------------------------------------------------------------


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
        parts = [emb, ((_log_length(inputs.texts) - 6.0) / 2.0)[:, None]]
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
        fits = [_fit_soft_logistic(x, scores[:, j], self.c) for j in range(scores.shape[1])]
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
