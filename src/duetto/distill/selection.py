"""Which traces teach a student: select the teacher's accepted answers of a task, dedupe them
to one example per prompt, and split the prompts into train, calibration and test
(`duetto.distill.traces` runs the whole command; the rules are in its docstring)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from duetto.answers import prompt_key
from duetto.distill.trace_sources import TraceExample
from duetto.errors import DataError, UserError

Redacted = Literal["drop", "keep"]
MAX_LABEL_CHARS = 64


@dataclass(frozen=True, slots=True)
class Selection:
    task: str  # "*" selects every task
    teacher_models: tuple[str, ...] = ()  # empty: any remote model is the teacher
    min_score: float | None = None
    redacted: Redacted = "drop"
    labels: tuple[str, ...] | None = None  # label tasks: the allowed answers


@dataclass(slots=True)
class Item:
    """One deduplicated prompt with the teacher's answer."""

    prompt: str
    answer: str
    gold: str | None = None
    system: str | None = None


def clean_label(text: str) -> str:
    """An answer read as a label: trimmed of white space, quotes and a final period."""
    return text.strip().strip("`'\"").strip().rstrip(".").strip()


def _label_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", clean_label(text).casefold())


def select(
    examples: Iterable[TraceExample], sel: Selection
) -> tuple[list[TraceExample], dict[str, int]]:
    """The teacher's accepted answers of the task, and a count of every reason a record was
    left out (in the order the rules apply)."""
    counts: Counter[str] = Counter()
    canonical = {_label_key(lab): lab for lab in sel.labels} if sel.labels else None
    teachers = set(sel.teacher_models)
    out: list[TraceExample] = []
    for e in examples:
        counts["records"] += 1
        if not e.accepted:
            counts["not_accepted"] += 1
        elif sel.task != "*" and e.task is not None and e.task != sel.task:
            counts["other_task"] += 1
        elif (e.model not in teachers) if teachers else (e.remote is False):
            counts["not_teacher"] += 1
        elif e.remote is None and not teachers:
            counts["unknown_model"] += 1
        elif sel.min_score is not None and e.score is None:
            counts["no_score"] += 1
        elif sel.min_score is not None and (e.score or 0.0) < sel.min_score:
            counts["below_min_score"] += 1
        elif not e.answer.strip():
            counts["empty_answer"] += 1
        elif e.redacted and sel.redacted == "drop":
            counts["redacted_dropped"] += 1
        else:
            if canonical is not None:
                label = canonical.get(_label_key(e.answer))
                if label is None:
                    counts["not_a_label"] += 1
                    continue
                e = replace(e, answer=label)
            if e.redacted:
                counts["redacted_kept"] += 1
            out.append(e)
    counts["selected"] = len(out)
    return out, dict(counts)


def dedupe(examples: Sequence[TraceExample], labels: bool) -> tuple[list[Item], dict[str, int]]:
    """One item per prompt, in first-seen order. Several answers to one prompt: the most
    frequent wins, ties to the most recent."""
    groups: dict[str, list[TraceExample]] = {}
    for e in examples:
        groups.setdefault(prompt_key(e.prompt), []).append(e)
    items: list[Item] = []
    conflicts = 0
    for group in groups.values():
        answers = [clean_label(e.answer) if labels else e.answer.strip() for e in group]
        counts = Counter(answers)
        if len(counts) > 1:
            conflicts += 1
        best = max(counts.values())
        answer = next(a for a in reversed(answers) if counts[a] == best)
        gold = next((e.gold for e in group if e.gold is not None), None)
        items.append(Item(group[-1].prompt, answer, gold, group[-1].system))
    stats = {
        "duplicates": len(examples) - len(items),
        "conflicting_prompts": conflicts,
        "unique_prompts": len(items),
    }
    return items, stats


def looks_like_labels(answers: Sequence[str]) -> bool:
    """Short one-line answers, many repeated: a label task rather than free generation."""
    distinct = set(answers)
    short = all(len(a) <= MAX_LABEL_CHARS and "\n" not in a for a in distinct)
    return short and len(distinct) <= max(20, len(answers) // 2)


def split_items(
    items: Sequence[Item], holdout: float, seed: int
) -> tuple[list[Item], list[Item], list[Item]]:
    """(train, calibration, test): a seeded shuffle; held-out = round(holdout * n), at least 2,
    half for the threshold, half for the report. Prompts are unique, so no prompt is in two."""
    if not 0.0 < holdout < 1.0:
        raise UserError(f"--holdout must be in (0, 1), got {holdout}")
    n = len(items)
    n_hold = max(2, round(holdout * n))
    if n - n_hold < 2:
        raise DataError(
            f"only {n} distinct prompts: need at least {n_hold + 2} ({n_hold} held out, 2 to train)"
        )
    order = list(items)
    random.Random(seed).shuffle(order)
    n_calib = n_hold // 2
    return order[n_hold:], order[:n_calib], order[n_calib:n_hold]


def read_labels(spec: str | None) -> tuple[str, ...] | None:
    """`--labels`: a JSON list file, a file with one label per line, or a comma list."""
    if spec is None:
        return None
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = [line for line in text.splitlines() if line.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataError("expected a JSON list of strings or one label per line", file=str(path))
        labels = [v.strip() for v in value if v.strip()]
    else:
        labels = [v.strip() for v in spec.split(",") if v.strip()]
    if len(labels) < 2:
        raise DataError(f"--labels {spec!r}: need at least two labels (a file or a,b,c)")
    return tuple(dict.fromkeys(labels))
