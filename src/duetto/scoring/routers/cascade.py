"""Post-generation (cascade) scorers: they read the weak model's answer before deciding.

A cascade always pays for the weak answer, then escalates when the answer looks wrong. That
extra evidence is what lets a cascade beat any pre-generation router. The signals here target
step-by-step arithmetic answers (GSM8K-style, final answer after `####`):

- arithmetic consistency: every `a op b = c` the answer writes (inline or in `<<a op b=c>>`
  calculator annotations) is re-computed; a wrong step is a strong sign of a wrong answer;
- answer format: a final `#### N` marker, an integer answer, the answer equal to the last
  computed value, hedging words ("however", "approximately", …);
- coverage: how many of the question's numbers the answer uses.

`answer_features` is pure (text in, floats out); the scorers are Routers (see routers/base.py
for the score convention: higher = keep the weak answer).
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from typing import Any

import numpy as np

from duetto.scoring.logistic import fit_logistic, sigmoid
from duetto.scoring.routers.base import Router, RouterInputs

_NUM = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_ANNOT = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_MARKER = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_HEDGES = (
    "however",
    "approximately",
    "assume",
    "assuming",
    "round",
    "cannot",
    "can't",
    "not possible",
    "actually",
    "mistake",
    "incorrect",
    "wait",
    "unclear",
    "not enough information",
    "estimate",
)
_OPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
FEATURE_NAMES = (
    "has_marker",
    "answer_numeric",
    "answer_integer",
    "answer_negative",
    "answer_log_magnitude",
    "n_checks",
    "n_wrong",
    "any_wrong",
    "share_wrong",
    "answer_is_last_result",
    "answer_in_body",
    "answer_in_question",
    "hedges",
    "log_response_chars",
    "n_lines",
    "question_numbers_used",
    "log_prompt_chars",
    "n_question_numbers",
    "n_markers",
)


def parse_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").strip())
    except ValueError:
        return None


def safe_eval(expr: str) -> float | None:
    """Evaluate + − × ÷ arithmetic on numbers; None for anything else (never runs code)."""
    cleaned = (
        expr.replace("\\", "")
        .replace("×", "*")
        .replace("÷", "/")
        .replace("$", "")
        .replace(",", "")
        .strip()
    )
    cleaned = re.sub(r"(?<=\d)\s*x\s*(?=[\d(])", "*", cleaned)
    if not cleaned or not re.fullmatch(r"[\d\s.+\-*/()]+", cleaned) or len(cleaned) > 200:
        return None
    try:
        tree = ast.parse(cleaned, mode="eval")
    except SyntaxError:
        return None

    def run(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return run(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](run(node.left), run(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](run(node.operand)))
        raise ValueError("unsupported")

    try:
        value = run(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _close(a: float, b: float) -> bool:
    # answers are often rounded to 2 decimals or to an integer
    return abs(a - b) <= max(0.01, 0.005 * abs(b)) or round(a) == b


def arithmetic_checks(response: str) -> tuple[int, int, list[float]]:
    """(number of checkable equations, number wrong, computed results in order)."""
    n_checks = n_wrong = 0
    results: list[float] = []
    for expr, value in _ANNOT.findall(response):
        got, claimed = safe_eval(expr), parse_number(value)
        if got is None or claimed is None:
            continue
        n_checks += 1
        n_wrong += not _close(got, claimed)
        results.append(claimed)
    plain = _ANNOT.sub(" ", response)
    for line in plain.splitlines():
        parts = line.split("=")
        for left, right in itertools.pairwise(parts):
            m_left = re.search(r"[\d\s.+\-*/()x×÷\\$,]+$", left)
            m_right = re.match(r"\s*\$?\s*(-?[\d,]*\.?\d+)", right)
            if not m_left or not m_right or not re.search(r"\d\s*[-+*/x×÷\\]", m_left.group()):
                continue
            got, claimed = safe_eval(m_left.group()), parse_number(m_right.group(1))
            if got is None or claimed is None:
                continue
            n_checks += 1
            n_wrong += not _close(got, claimed)
            results.append(claimed)
    return n_checks, n_wrong, results


def answer_features(prompt: str, response: str) -> np.ndarray:
    """The post-generation signals of one (question, weak answer) pair, in FEATURE_NAMES order."""
    markers = _MARKER.findall(response)
    answer = parse_number(markers[-1]) if markers else None
    if answer is None:  # no marker: fall back to the last number written
        nums = _NUM.findall(response)
        answer = parse_number(nums[-1]) if nums else None
    body = response.split("####")[0]
    n_checks, n_wrong, results = arithmetic_checks(response)
    q_nums = {v for v in (parse_number(x) for x in _NUM.findall(prompt)) if v is not None}
    body_nums = {v for v in (parse_number(x) for x in _NUM.findall(body)) if v is not None}
    lower = response.lower()
    feats = {
        "has_marker": float(bool(markers)),
        "answer_numeric": float(answer is not None),
        "answer_integer": float(answer is not None and float(answer).is_integer()),
        "answer_negative": float(answer is not None and answer < 0),
        "answer_log_magnitude": math.log10(abs(answer) + 1) if answer is not None else 0.0,
        "n_checks": float(n_checks),
        "n_wrong": float(n_wrong),
        "any_wrong": float(n_wrong > 0),
        "share_wrong": n_wrong / n_checks if n_checks else 0.0,
        "answer_is_last_result": float(
            answer is not None and bool(results) and _close(answer, results[-1])
        ),
        "answer_in_body": float(answer is not None and answer in body_nums),
        "answer_in_question": float(answer is not None and answer in q_nums),
        "hedges": float(sum(lower.count(h) for h in _HEDGES)),
        "log_response_chars": math.log1p(len(response)),
        "n_lines": float(response.strip().count("\n") + 1),
        "question_numbers_used": len(q_nums & body_nums) / len(q_nums) if q_nums else 1.0,
        "log_prompt_chars": math.log1p(len(prompt)),
        "n_question_numbers": float(len(q_nums)),
        "n_markers": float(len(markers)),
    }
    return np.array([feats[k] for k in FEATURE_NAMES], dtype=np.float64)


def feature_matrix(inputs: RouterInputs) -> np.ndarray:
    responses = inputs.require_responses()
    return np.stack([answer_features(p, r) for p, r in zip(inputs.texts, responses, strict=True)])


class _PostGeneration(Router):
    """Scores only the weak model (models[0]); other models get their training mean."""

    post_generation = True

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        self.global_mean = scores.mean(axis=0)

    def weak_quality(self, inputs: RouterInputs) -> np.ndarray:
        raise NotImplementedError

    def predict_quality(self, inputs: RouterInputs) -> np.ndarray:
        out = np.tile(self.global_mean, (len(inputs), 1)).astype(np.float64)
        out[:, 0] = self.weak_quality(inputs)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"global_mean": self.global_mean}

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.global_mean = arrays["global_mean"]


class ArithmeticCheckScorer(_PostGeneration):
    """Rule: every wrong arithmetic step lowers the score; no checkable step is neutral."""

    kind = "arith_check"

    def weak_quality(self, inputs: RouterInputs) -> np.ndarray:
        f = feature_matrix(inputs)
        return -f[:, FEATURE_NAMES.index("n_wrong")]


class AnswerFormatScorer(_PostGeneration):
    """Rule: a well-formed final answer (marker, integer, equal to the last computed value,
    no hedging) scores higher."""

    kind = "answer_format"

    def weak_quality(self, inputs: RouterInputs) -> np.ndarray:
        f = feature_matrix(inputs)
        col = {k: f[:, i] for i, k in enumerate(FEATURE_NAMES)}
        good = col["has_marker"] + col["answer_integer"] + col["answer_is_last_result"]
        bad = np.minimum(col["hedges"], 2.0) + (col["n_markers"] > 1)
        return np.asarray(good - bad, dtype=np.float64)


class CascadeLogisticScorer(_PostGeneration):
    """Learned combination: logistic regression on the answer features, optionally with the
    prompt's MiniLM embedding (so it also knows which questions are hard)."""

    kind = "cascade_logreg"

    def __init__(self, name: str | None = None, c: float = 1.0, use_embedding: bool = True) -> None:
        super().__init__(name)
        self.c, self.use_embedding = c, use_embedding

    @property
    def needs_embeddings(self) -> bool:  # type: ignore[override]
        return self.use_embedding

    def _x(self, inputs: RouterInputs) -> np.ndarray:
        f = (feature_matrix(inputs) - self.mu) / self.sd
        if self.use_embedding:
            f = np.hstack([f, inputs.require_embeddings().astype(np.float64)])
        return np.asarray(f)

    def _fit(self, inputs: RouterInputs, scores: np.ndarray) -> None:
        super()._fit(inputs, scores)
        raw = feature_matrix(inputs)
        self.mu, self.sd = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        self.coef, self.bias = fit_logistic(self._x(inputs), scores[:, 0], l2=1.0 / self.c)

    def weak_quality(self, inputs: RouterInputs) -> np.ndarray:
        return sigmoid(self._x(inputs) @ self.coef + self.bias)

    def _params(self) -> dict[str, Any]:
        return {"c": self.c, "use_embedding": self.use_embedding}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": self.global_mean,
            "mu": self.mu,
            "sd": self.sd,
            "coef": self.coef,
            "bias": np.array([self.bias]),
        }

    def _restore(self, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.c, self.use_embedding = float(params["c"]), bool(params["use_embedding"])
        self.global_mean, self.mu, self.sd = arrays["global_mean"], arrays["mu"], arrays["sd"]
        self.coef, self.bias = arrays["coef"], float(arrays["bias"][0])
