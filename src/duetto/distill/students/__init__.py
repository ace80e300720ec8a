"""Students: small models trained on a teacher's labels (head, lora, fewshot).

A label student saves its fitted state the way routers do (`duetto.persist`: a JSON header and
numpy arrays in one .npz, no pickle): `state() -> (params, arrays)` and
`from_state(params, arrays)`; `save_student` / `load_student` write and read any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from duetto.errors import DataError
from duetto.persist import load_state, save_state

EXPECTED = "a student .npz written by duetto distill"


class Student(Protocol):
    """A label student. `predict` returns one label and one confidence in [0, 1] per text."""

    name: str

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> None: ...

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]: ...


def embedder_name(embedder: Any) -> str | None:
    """How a student's embedder is saved: None for the default (MiniLM, which a loader gets
    again), "hashed-words" for the test embedder; any other cannot be saved."""
    from duetto.distill.synthetic import HashedWords
    from duetto.scoring.embeddings import MiniLMEmbedder

    if embedder is None or isinstance(embedder, MiniLMEmbedder):
        return None
    if isinstance(embedder, HashedWords):
        return HashedWords.name
    raise DataError(f"cannot save a student whose embedder is {type(embedder).__name__}")


def embedder_from_name(name: str | None) -> Any:
    from duetto.distill.synthetic import HashedWords

    if name is None:
        return None
    if name == HashedWords.name:
        return HashedWords()
    raise DataError(f"unknown embedder {name!r}", expected=EXPECTED)


def save_student(student: Any, path: str | Path) -> Path:
    """Write a head or fewshot student (".npz" added when missing); returns the path."""
    params, arrays = student.state()
    return save_state(path, {"kind": student.name, "params": params}, arrays)


def load_student(path: str | Path) -> Any:
    """A head or fewshot student written by `save_student` (`duetto distill --traces`)."""
    from duetto.distill.students.fewshot import FewShotStudent
    from duetto.distill.students.head import HeadStudent

    header, arrays = load_state(path, EXPECTED)
    kinds: dict[str, Any] = {"head": HeadStudent, "fewshot": FewShotStudent}
    if header.get("kind") not in kinds:
        raise DataError(f"not a duetto student ({header.get('kind')!r})", file=str(path))
    return kinds[header["kind"]].from_state(header["params"], arrays)
