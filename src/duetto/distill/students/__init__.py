"""Students: small models trained on a teacher's labels (head, lora, fewshot)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Student(Protocol):
    """A label student. `predict` returns one label and one confidence in [0, 1] per text."""

    name: str

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None: ...

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]: ...
