"""Loaders for recorded multi-model outputs: prompts × models → score (and cost, response).

Suites:
- `routellm-gsm8k`, `routellm-mmlu`: RouteLLM's recorded correctness of Mixtral-8x7B (weak) and
  GPT-4-1106 (strong); the prompts RouteLLM lists as contaminated are dropped. Cost is counted
  in strong calls (weak 0, strong 1), so "cost" there is the strong-call share.
- `llmrouter`: LLMRouter's dcrouter train+test (9 open models, scores in [0, 1]); the test
  questions that appear verbatim in train are dropped (the train copy is kept). Cost per query
  is an estimate in dollars from `default_llm.json` prices, see `LLMROUTER_OUTPUT_TOKENS`.
- `jsonl:PATH`: the generic format, one JSON object per line:
  `{"prompt": str, "scores": {model: float}, "costs": {model: float}?, "responses": {model: str}?,
  "task": str?}`. Every line must score every model of the first line.

Every missing or malformed file raises `DataError` naming the file and the expected format.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from duetto.answers import estimate_tokens, prompt_key
from duetto.errors import DataError

ROUTELLM_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_STRONG = "gpt-4-1106-preview"
LLMROUTER_MODELS = (
    "qwen2.5-7b-instruct",
    "llama-3.1-8b-instruct",
    "gemma-2-9b-it",
    "mistral-7b-instruct-v0.3",
    "codegemma-7b",
    "llama3-chatqa-1.5-8b",
    "llama3-chatqa-1.5-70b",
    "llama-3.1-nemotron-51b-instruct",
    "llama-3.3-nemotron-super-49b-v1",
)
# The dataset has no token counts: input tokens are estimated as chars/4 and every answer is
# assumed to be this long. All prices there are equal for input and output, so model cost ratios
# are exactly the price ratios whatever the true lengths.
LLMROUTER_OUTPUT_TOKENS = 256
SUITES = ("routellm-gsm8k", "routellm-mmlu", "llmrouter")

CSV_FORMAT = "a CSV with columns prompt, {weak}, {strong} holding True/False"
JSONL_FORMAT = (
    'JSONL lines {"prompt": str, "scores": {model: float}, "costs": {model: float}?, '
    '"responses": {model: str}?, "task": str?}'
)
DCROUTER_FORMAT = 'a JSON list of {"question": str, "scores": {model: float in [0, 1]}}'
PRICES_FORMAT = 'a JSON object {model: {"input_price": float, "output_price": float}}'
CONTAM_FORMAT = 'JSONL lines {"eval_prompt": str, ...}'


@dataclass
class RecordedSuite:
    """Recorded outputs of `models` on `prompts`: `scores[i, j]` is model j's quality on prompt i.

    For two-model suites `models == [weak, strong]`. `groups[i]` identifies prompts that must stay
    in the same cross-validation fold (identical text)."""

    name: str
    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    tasks: list[str] | None = None
    responses: dict[str, list[str]] = field(default_factory=dict)
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n, m = len(self.prompts), len(self.models)
        if self.scores.shape != (n, m) or self.costs.shape != (n, m):
            raise DataError(f"suite {self.name}: scores/costs must be ({n}, {m}) arrays")
        if len(self.groups) != n:
            self.groups = group_ids(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def two_model(self) -> bool:
        return len(self.models) == 2

    @property
    def weak(self) -> str:
        return self.models[0]

    @property
    def strong(self) -> str:
        return self.models[-1]

    def weak_responses(self) -> list[str] | None:
        return self.responses.get(self.weak)

    def subset(self, idx: np.ndarray | list[int]) -> RecordedSuite:
        ix = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            prompts=[self.prompts[i] for i in ix],
            scores=self.scores[ix],
            costs=self.costs[ix],
            tasks=[self.tasks[i] for i in ix] if self.tasks is not None else None,
            responses={k: [v[i] for i in ix] for k, v in self.responses.items()},
            groups=self.groups[ix],
        )

    def limit(self, n: int | None, seed: int = 0) -> RecordedSuite:
        """A seeded random subset of `n` prompts (for quick runs); the whole suite if n is None."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))


def group_ids(prompts: list[str]) -> np.ndarray:
    """Same id for prompts equal up to whitespace and case."""
    seen: dict[str, int] = {}
    return np.array([seen.setdefault(prompt_key(p), len(seen)) for p in prompts], np.int64)


# ----- helpers ------------------------------------------------------------------------------


def _require(path: Path, expected: str) -> None:
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected=expected)


def _read_json(path: Path, expected: str) -> Any:
    _require(path, expected)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not valid JSON ({e})", file=str(path), expected=expected) from e


def _read_jsonl(path: Path, expected: str) -> list[Any]:
    _require(path, expected)
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(
                    f"line {lineno} is not valid JSON ({e})", file=str(path), expected=expected
                ) from e
    return rows


def _bool_cell(value: str | None, path: Path, row: int, column: str, expected: str) -> float:
    if value in ("True", "true", "1", "1.0"):
        return 1.0
    if value in ("False", "false", "0", "0.0"):
        return 0.0
    raise DataError(
        f"row {row}, column {column!r}: {value!r} is not True/False",
        file=str(path),
        expected=expected,
    )


def _contaminated(path: Path) -> set[str]:
    if not path.exists():  # optional: absent list means nothing to drop
        return set()
    out = set()
    for i, row in enumerate(_read_jsonl(path, CONTAM_FORMAT), 1):
        if not isinstance(row, dict) or not isinstance(row.get("eval_prompt"), str):
            raise DataError(f"line {i} lacks eval_prompt", file=str(path), expected=CONTAM_FORMAT)
        out.add(row["eval_prompt"])
    return out


def _read_routellm_csv(
    path: Path, with_responses: bool
) -> tuple[list[str], list[list[float]], list[str]]:
    expected = CSV_FORMAT.format(weak=ROUTELLM_WEAK, strong=ROUTELLM_STRONG)
    _require(path, expected)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        needed = ["prompt", ROUTELLM_WEAK, ROUTELLM_STRONG]
        if with_responses:
            needed.append(ROUTELLM_WEAK + "_response")
        missing = [c for c in needed if c not in columns]
        if missing:
            raise DataError(f"missing score column(s) {missing}", file=str(path), expected=expected)
        prompts, scores, responses = [], [], []
        for i, row in enumerate(reader, 2):
            prompts.append(row["prompt"])
            scores.append([_bool_cell(row[m], path, i, m, expected) for m in needed[1:3]])
            if with_responses:
                responses.append(row[ROUTELLM_WEAK + "_response"] or "")
    if not prompts:
        raise DataError("no rows", file=str(path), expected=expected)
    return prompts, scores, responses


# ----- suites -------------------------------------------------------------------------------


def load_routellm_gsm8k(data_dir: Path) -> RecordedSuite:
    folder = data_dir / "routellm_evals" / "gsm8k"
    prompts, scores, responses = _read_routellm_csv(folder / "gsm8k_responses.csv", True)
    drop = _contaminated(folder / "contaminated_prompts.jsonl")
    keep = [i for i, p in enumerate(prompts) if p not in drop]
    return RecordedSuite(
        name="routellm-gsm8k",
        prompts=[prompts[i] for i in keep],
        models=[ROUTELLM_WEAK, ROUTELLM_STRONG],
        scores=np.array([scores[i] for i in keep], dtype=np.float64),
        costs=np.tile([0.0, 1.0], (len(keep), 1)),
        tasks=None,
        responses={ROUTELLM_WEAK: [responses[i] for i in keep]},
    )


def load_routellm_mmlu(data_dir: Path) -> RecordedSuite:
    folder = data_dir / "routellm_evals" / "mmlu_responses"
    files = sorted(folder.glob("mmlu_*.csv"))
    if not files:
        raise DataError(
            "no mmlu_<subject>.csv files",
            file=str(folder),
            expected=CSV_FORMAT.format(weak=ROUTELLM_WEAK, strong=ROUTELLM_STRONG),
        )
    drop = _contaminated(folder / "contaminated_prompts.jsonl")
    prompts: list[str] = []
    scores: list[list[float]] = []
    tasks: list[str] = []
    for path in files:
        subject = path.stem.removeprefix("mmlu_")
        ps, ss, _ = _read_routellm_csv(path, False)
        for p, s in zip(ps, ss, strict=True):
            if p not in drop:
                prompts.append(p)
                scores.append(s)
                tasks.append(subject)
    return RecordedSuite(
        name="routellm-mmlu",
        prompts=prompts,
        models=[ROUTELLM_WEAK, ROUTELLM_STRONG],
        scores=np.array(scores, dtype=np.float64),
        costs=np.tile([0.0, 1.0], (len(prompts), 1)),
        tasks=tasks,
    )


def _dcrouter_rows(path: Path, models: tuple[str, ...]) -> list[tuple[str, list[float]]]:
    data = _read_json(path, DCROUTER_FORMAT)
    if not isinstance(data, list) or not data:
        raise DataError("expected a non-empty list", file=str(path), expected=DCROUTER_FORMAT)
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise DataError(f"item {i} lacks 'question'", file=str(path), expected=DCROUTER_FORMAT)
        sc = row.get("scores")
        if not isinstance(sc, dict):
            raise DataError(f"item {i} lacks 'scores'", file=str(path), expected=DCROUTER_FORMAT)
        missing = [m for m in models if not isinstance(sc.get(m), int | float)]
        if missing:
            raise DataError(
                f"item {i} has no score for model(s) {missing}",
                file=str(path),
                expected=DCROUTER_FORMAT,
            )
        out.append((row["question"], [float(sc[m]) for m in models]))
    return out


def load_llmrouter(data_dir: Path) -> RecordedSuite:
    folder = data_dir / "llmrouter_ulab"
    models = LLMROUTER_MODELS
    prices_path = folder / "default_llm.json"
    prices = _read_json(prices_path, PRICES_FORMAT)
    price_in, price_out = [], []
    for m in models:
        card = prices.get(m) if isinstance(prices, dict) else None
        if not isinstance(card, dict) or not all(
            isinstance(card.get(k), int | float) for k in ("input_price", "output_price")
        ):
            raise DataError(
                f"no prices for model {m!r}", file=str(prices_path), expected=PRICES_FORMAT
            )
        price_in.append(float(card["input_price"]))
        price_out.append(float(card["output_price"]))
    train = _dcrouter_rows(folder / "dcrouter_train.json", models)
    test = _dcrouter_rows(folder / "dcrouter_test.json", models)
    seen: set[str] = set()
    rows = []
    for question, sc in train + test:  # train first: a duplicated test question is dropped
        key = prompt_key(question)
        if key not in seen:
            seen.add(key)
            rows.append((question, sc))
    prompts = [q for q, _ in rows]
    tokens_in = np.array([estimate_tokens(p) for p in prompts], dtype=np.float64)
    costs = (
        tokens_in[:, None] * np.array(price_in)[None, :]
        + LLMROUTER_OUTPUT_TOKENS * np.array(price_out)[None, :]
    ) / 1e6
    return RecordedSuite(
        name="llmrouter",
        prompts=prompts,
        models=list(models),
        scores=np.array([s for _, s in rows], dtype=np.float64),
        costs=costs,
    )


def load_jsonl(path: Path) -> RecordedSuite:
    rows = _read_jsonl(path, JSONL_FORMAT)
    if not rows:
        raise DataError("no rows", file=str(path), expected=JSONL_FORMAT)
    first = rows[0].get("scores") if isinstance(rows[0], dict) else None
    if not isinstance(first, dict) or len(first) < 2:
        raise DataError(
            "line 1 needs 'scores' for at least two models", file=str(path), expected=JSONL_FORMAT
        )
    models = list(first)
    prompts: list[str] = []
    scores, costs = [], []
    tasks: list[str] = []
    responses: dict[str, list[str]] = {}
    has_cost = isinstance(rows[0].get("costs"), dict)
    for lineno, row in enumerate(rows, 1):
        where = f"line {lineno}"
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise DataError(f"{where} lacks 'prompt'", file=str(path), expected=JSONL_FORMAT)
        sc = row.get("scores")
        if not isinstance(sc, dict):
            raise DataError(f"{where} lacks 'scores'", file=str(path), expected=JSONL_FORMAT)
        missing = [m for m in models if not isinstance(sc.get(m), int | float)]
        if missing:
            raise DataError(
                f"{where} has no score for model(s) {missing}",
                file=str(path),
                expected=JSONL_FORMAT,
            )
        prompts.append(row["prompt"])
        scores.append([float(sc[m]) for m in models])
        if has_cost:
            co = row.get("costs")
            bad = not isinstance(co, dict) or any(
                not isinstance(co.get(m), int | float) for m in models
            )
            if bad:
                raise DataError(
                    f"{where}: 'costs' must give every model a number",
                    file=str(path),
                    expected=JSONL_FORMAT,
                )
            assert isinstance(co, dict)
            costs.append([float(co[m]) for m in models])
        tasks.append(str(row.get("task", "")))
        for m, text in (row.get("responses") or {}).items():
            if m in models:
                responses.setdefault(m, [""] * (lineno - 1)).append(str(text))
        for m in responses:  # keep every response list aligned with prompts
            if len(responses[m]) < len(prompts):
                responses[m].append("")
    score_arr = np.array(scores, dtype=np.float64)
    if has_cost:
        cost_arr = np.array(costs, dtype=np.float64)
    else:  # without costs, the better model on average counts as the expensive one
        order = np.argsort(score_arr.mean(axis=0))
        cost_arr = np.tile(np.argsort(order).astype(np.float64), (len(prompts), 1))
        cost_arr /= max(1.0, float(len(models) - 1))
    # two-model suites: put the cheaper model first (weak), the dearer last (strong)
    perm = np.argsort(cost_arr.mean(axis=0), kind="stable")
    return RecordedSuite(
        name=f"jsonl:{path.name}",
        prompts=prompts,
        models=[models[j] for j in perm],
        scores=score_arr[:, perm],
        costs=cost_arr[:, perm],
        tasks=tasks if any(tasks) else None,
        responses=responses,
    )


def load_suite(name: str, data_dir: str | Path = "../shared/datasets") -> RecordedSuite:
    """Load a suite by name (`routellm-gsm8k`, `routellm-mmlu`, `llmrouter`, `jsonl:PATH`)."""
    root = Path(data_dir)
    if name.startswith("jsonl:"):
        return load_jsonl(Path(name.removeprefix("jsonl:")))
    if name.endswith(".jsonl"):
        return load_jsonl(Path(name))
    loaders = {
        "routellm-gsm8k": load_routellm_gsm8k,
        "routellm-mmlu": load_routellm_mmlu,
        "llmrouter": load_llmrouter,
    }
    if name not in loaders:
        raise DataError(f"unknown suite {name!r}; known: {', '.join(SUITES)} or jsonl:PATH")
    return loaders[name](root)
