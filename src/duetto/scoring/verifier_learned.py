"""A post-generation verifier learned from labelled outcomes: cheap signals, one logistic fit.

Each signal alone is weak for a small model (its token confidence barely predicts correctness;
a per-task prior ignores the answer). Combined they separate better: the evaluator calls
`fit(requests, drafts, correct)` on the calibration split, then picks the threshold on the
fitted probabilities. Features of (request, draft), all free (no model call):

    mean and minimum token log-probability, share of tokens below log p = -2,
    answer length relative to max_tokens, truncated (finish_reason "length"),
    a final "Answer: <number>" line present, and one indicator per task type seen in the fit.

Fitted by L2-regularised logistic regression (`scoring.logistic`, numpy only). Unfitted, it scores
like `LogprobVerifier` (exp of the mean log-probability), so a config never run through
`duetto eval` can still serve. `state`/`load_state` carry the fit into `duetto serve`
(duetto.fitted).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from duetto.answers import estimate_tokens
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel
from duetto.scoring.logistic import fit_logistic, sigmoid
from duetto.scoring.verifiers import Verdict

_ANSWER_LINE = re.compile(r"answer\s*[:=]\s*-?\$?\d", re.IGNORECASE)
BASE_FEATURES = ("bias", "mean_lp", "min_lp", "low_share", "len_ratio", "truncated", "answer_line")


def base_features(request: ChatRequest, response: ChatResponse) -> list[float]:
    lps = [max(lp, -20.0) for lp in (response.logprobs or [])]
    mean = sum(lps) / len(lps) if lps else -5.0
    low = sum(1 for lp in lps if lp < -2.0) / len(lps) if lps else 1.0
    n_out = len(lps) or max(1, estimate_tokens(response.text))
    return [
        1.0,
        mean,
        min(lps) if lps else -20.0,
        low,
        min(n_out / max(1, request.max_tokens or 256), 1.0),
        1.0 if response.finish_reason == "length" else 0.0,
        1.0 if _ANSWER_LINE.search(response.text) else 0.0,
    ]


class LearnedVerifier:
    """Logistic combination of free answer signals and the task type, fitted on labelled drafts."""

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2
        self.tasks: list[str] = []
        self.weights: np.ndarray | None = None
        self.models: list[ChatModel] = []

    @property
    def fitted(self) -> bool:
        return self.weights is not None

    def features(self, request: ChatRequest, response: ChatResponse) -> np.ndarray:
        task = [1.0 if request.task == t else 0.0 for t in self.tasks]
        return np.array(base_features(request, response) + task, dtype=float)

    def fit(
        self,
        requests: Sequence[ChatRequest],
        responses: Sequence[ChatResponse],
        correct: Sequence[bool | float],
    ) -> LearnedVerifier:
        self.tasks = sorted({r.task for r in requests if r.task})
        x = np.stack([self.features(q, a) for q, a in zip(requests, responses, strict=True)])
        y = np.asarray(correct, dtype=float) >= 0.5
        coef, intercept = fit_logistic(x[:, 1:], y.astype(float), l2=self.l2)
        self.weights = np.concatenate([[intercept], coef])  # column 0 of the features is 1
        return self

    async def score(self, request: ChatRequest, response: ChatResponse) -> Verdict:
        if self.weights is None:  # unfitted: the plain sequence probability
            lps = response.logprobs or []
            return Verdict(math.exp(sum(lps) / len(lps)) if lps else 0.0)
        z = float(self.features(request, response) @ self.weights)
        return Verdict(float(sigmoid(np.array(z))))

    def state(self) -> dict[str, Any]:
        weights = None if self.weights is None else self.weights.tolist()
        return {"kind": "learned", "l2": self.l2, "tasks": self.tasks, "weights": weights}

    def load_state(self, d: dict[str, Any]) -> None:
        self.l2 = float(d.get("l2", self.l2))
        self.tasks = [str(t) for t in d["tasks"]]
        w = d["weights"]
        self.weights = None if w is None else np.asarray(w, dtype=float)
        if self.weights is not None and self.weights.size != len(BASE_FEATURES) + len(self.tasks):
            raise ValueError("learned verifier: weights do not match its features")
