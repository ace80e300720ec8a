"""Span-level precision, recall and F2 of a PII detector on labelled text.

Two input formats:
- presidio-research (`../shared/datasets/presidio_research_synth/*.json`): a JSON list of
  `{"full_text", "spans": [{"entity_type", "entity_value", "start_position", "end_position"}]}`;
- generic JSONL, one object a line: `{"text": ..., "spans": [{"type", "start", "end"}]}` or
  `{"text": ..., "entities": [{"type", "value"}]}` (every occurrence of `value` is labelled).
  `label`/`entity_type` are accepted for `type`.

Matching (`match`): "overlap" (default) counts a gold span as found when a prediction of the
same type overlaps it, and a prediction as correct when it overlaps a gold span of its type —
what redaction needs: the value is at least partly hidden. "exact" needs identical offsets.
`char_recall` (share of gold characters covered by same-type predictions) shows how much of
each value a partial hit still lets through; `any_type_recall` ignores the type (a PERSON
tagged ORGANIZATION is still redacted). F2 weighs recall four times precision, as Presidio
recommends for PII. Predicted types the data never labels are not scored (the data cannot
tell a hit from a miss): they are counted under `unlabelled_predictions`. `tiers` rolls every
type up to its risk tier; its `any_type_precision` counts a prediction as correct when it
overlaps any labelled span (it hid something personal), the precision that matters on an
exhaustively labelled set.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from duetto.errors import DataError
from duetto.scoring.pii import Entity

# Dataset label -> detector (Presidio) type, where the names differ.
DEFAULT_LABEL_MAP: dict[str, str] = {
    "GPE": "LOCATION",  # synth_dataset_v2: geopolitical entity (city, country)
    "ADDRESS": "STREET_ADDRESS",  # generated_small/large use the older name
    "DOMAIN_NAME": "URL",  # values are full URLs ("https://www.UEarly.se/")
    "PHONE": "PHONE_NUMBER",
    "EMAIL": "EMAIL_ADDRESS",
    "CREDIT_CARD_NUMBER": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "SSN": "US_SSN",
    "NAME": "PERSON",
    "ORG": "ORGANIZATION",
}
Match = Literal["overlap", "exact"]


@dataclass(frozen=True, slots=True)
class LabelledText:
    text: str
    spans: tuple[Entity, ...]


@dataclass(slots=True)
class TypeCounts:
    support: int = 0  # gold spans
    found: int = 0  # gold spans matched by a prediction
    found_any_type: int = 0
    predicted: int = 0
    correct: int = 0  # predictions matching a gold span
    correct_any_type: int = 0  # predictions overlapping a gold span of any type
    gold_chars: int = 0
    covered_chars: int = 0

    def add(self, other: TypeCounts) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def scores(self) -> dict[str, float | int]:
        p = self.correct / self.predicted if self.predicted else 0.0
        r = self.found / self.support if self.support else 0.0
        return {
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f2": round(f_beta(p, r, 2.0), 4),
            "support": self.support,
            "predicted": self.predicted,
            "char_recall": round(self.covered_chars / self.gold_chars, 4)
            if self.gold_chars
            else 0.0,
            "any_type_recall": round(self.found_any_type / self.support, 4)
            if self.support
            else 0.0,
            "any_type_precision": round(self.correct_any_type / self.predicted, 4)
            if self.predicted
            else 0.0,
        }


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    denom = b2 * precision + recall
    return (1 + b2) * precision * recall / denom if denom else 0.0


@dataclass(slots=True)
class EvalReport:
    per_type: dict[str, TypeCounts]
    samples: int
    match: Match
    unlabelled_predictions: Counter[str] = field(default_factory=Counter)
    # Counts of every type (labelled or not), for the per-tier roll-up.
    all_types: dict[str, TypeCounts] = field(default_factory=dict)

    def by_tier(self) -> dict[str, TypeCounts]:
        """Counts summed per risk tier (`duetto.privacy.tiers`), unlabelled predictions too."""
        from duetto.privacy.tiers import TIERS, tier_of

        out: dict[str, TypeCounts] = {t: TypeCounts() for t in TIERS}
        for etype, counts in (self.all_types or self.per_type).items():
            out[tier_of(etype)].add(counts)
        return out

    def micro(self) -> TypeCounts:
        total = TypeCounts()
        for counts in self.per_type.values():
            total.add(counts)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": {t: c.scores() for t, c in sorted(self.per_type.items())},
            "micro": self.micro().scores(),
            "samples": self.samples,
            "match": self.match,
            "unlabelled_predictions": dict(self.unlabelled_predictions.most_common()),
            "tiers": {t: c.scores() for t, c in self.by_tier().items()},
        }


def _overlaps(a: Entity, b: Entity, match: Match) -> bool:
    if match == "exact":
        return a.start == b.start and a.end == b.end
    return a.start < b.end and b.start < a.end


def score_sample(
    gold: Iterable[Entity], predicted: Iterable[Entity], match: Match = "overlap"
) -> dict[str, TypeCounts]:
    """Counts for one text. Pure: the detector ran before."""
    gold, predicted = list(gold), list(predicted)
    out: dict[str, TypeCounts] = {}
    for g in gold:
        c = out.setdefault(g.type, TypeCounts())
        c.support += 1
        same = [p for p in predicted if p.type == g.type]
        c.found += any(_overlaps(g, p, match) for p in same)
        c.found_any_type += any(_overlaps(g, p, match) for p in predicted)
        covered: set[int] = set()
        for p in same:
            covered.update(range(max(g.start, p.start), min(g.end, p.end)))
        c.gold_chars += g.end - g.start
        c.covered_chars += len(covered)
    for p in predicted:
        c = out.setdefault(p.type, TypeCounts())
        c.predicted += 1
        c.correct += any(_overlaps(p, g, match) for g in gold if g.type == p.type)
        c.correct_any_type += any(_overlaps(p, g, match) for g in gold)
    return out


def evaluate(
    samples: Iterable[LabelledText],
    detector: Callable[[str], list[Entity]],
    match: Match = "overlap",
) -> EvalReport:
    totals: dict[str, TypeCounts] = {}
    n = 0
    for sample in samples:
        n += 1
        for etype, counts in score_sample(sample.spans, detector(sample.text), match).items():
            totals.setdefault(etype, TypeCounts()).add(counts)
    labelled = {t: c for t, c in totals.items() if c.support > 0}
    unlabelled = Counter({t: c.predicted for t, c in totals.items() if c.support == 0})
    return EvalReport(
        per_type=labelled,
        samples=n,
        match=match,
        unlabelled_predictions=unlabelled,
        all_types=totals,
    )


# --- loading -----------------------------------------------------------------------------------

_FORMATS = (
    "a JSON list of presidio-research rows {full_text, spans:[{entity_type, start_position, "
    "end_position}]}, or JSONL lines {text, spans:[{type, start, end}]} or "
    "{text, entities:[{type, value}]}"
)


def load_labelled(
    path: str | Path, limit: int | None = None, label_map: Mapping[str, str] | None = None
) -> list[LabelledText]:
    """Read either format (told apart by content), mapping labels with `label_map`."""
    path = Path(path)
    mapping = DEFAULT_LABEL_MAP if label_map is None else label_map
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", file=str(path), expected=_FORMATS) from exc
    rows: list[Any]
    if raw.lstrip().startswith("["):
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc}", file=str(path), expected=_FORMATS) from exc
        lines = list(range(1, len(rows) + 1))
    else:
        rows, lines = [], []
        for no, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"line {no}: invalid JSON: {exc.msg}", file=str(path), expected=_FORMATS
                ) from exc
            lines.append(no)
    if not rows:
        raise DataError("no labelled rows", file=str(path), expected=_FORMATS)
    out: list[LabelledText] = []
    for row, no in zip(rows, lines, strict=True):
        if limit is not None and len(out) >= limit:
            break
        out.append(_parse_row(row, mapping, f"{path}: row {no}"))
    return out


def _parse_row(row: Any, mapping: Mapping[str, str], where: str) -> LabelledText:
    if not isinstance(row, dict):
        raise DataError("row is not an object", file=where, expected=_FORMATS)
    text = row.get("full_text", row.get("text"))
    if not isinstance(text, str):
        raise DataError("no string `text` (or `full_text`)", file=where, expected=_FORMATS)
    spans: list[Entity] = []
    try:
        for s in row.get("spans") or []:
            etype = str(s.get("entity_type") or s.get("type") or s.get("label"))
            start = int(s["start_position"] if "start_position" in s else s["start"])
            end = int(s["end_position"] if "end_position" in s else s["end"])
            if not 0 <= start < end <= len(text):
                raise DataError(f"span {start}:{end} outside the text", file=where)
            spans.append(Entity(mapping.get(etype, etype), start, end, text[start:end]))
        for e in row.get("entities") or []:
            etype = str(e.get("type") or e.get("entity_type") or e.get("label"))
            value = str(e["value"])
            spans.extend(_occurrences(text, value, mapping.get(etype, etype), where))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"malformed span: {exc!r}", file=where, expected=_FORMATS) from exc
    return LabelledText(text, tuple(sorted(spans, key=lambda e: e.start)))


def _occurrences(text: str, value: str, etype: str, where: str) -> list[Entity]:
    if not value:
        raise DataError("empty entity value", file=where)
    found, i = [], text.find(value)
    while i >= 0:
        found.append(Entity(etype, i, i + len(value), value))
        i = text.find(value, i + len(value))
    if not found:
        raise DataError(f"entity value {value!r} does not occur in the text", file=where)
    return found
