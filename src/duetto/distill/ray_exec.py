"""Batch steps of the loop (teacher labelling, student evaluation) on this process or on Ray.

Both executors run the same function over the same batches in the same order, so the Ray path
gives the same results as the local one. The shared object (a teacher or a trained student) is
put in Ray's object store once and handed to every task. ray is imported only by RayExecutor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

S = TypeVar("S")
R = TypeVar("R")

DEFAULT_BATCH = 256


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class Executor(Protocol):
    batch_size: int

    def map(self, fn: Callable[[S, list[str]], R], shared: S, parts: list[list[str]]) -> list[R]:
        """fn(shared, part) for every part, results in the order of `parts`."""
        ...


class LocalExecutor:
    def __init__(self, batch_size: int = DEFAULT_BATCH) -> None:
        self.batch_size = batch_size

    def map(self, fn: Callable[[S, list[str]], R], shared: S, parts: list[list[str]]) -> list[R]:
        return [fn(shared, part) for part in parts]


class RayExecutor:
    """Runs each batch as a Ray task: `address=None` starts a local Ray instance."""

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            from duetto.errors import ConfigError

            raise ConfigError("--ray needs the ray package: pip install 'duetto[ray]'") from exc
        self._ray = ray
        self.batch_size = batch_size
        self._started_here = not ray.is_initialized()
        if self._started_here:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kw["address"] = address
            elif num_cpus is not None:
                kw["num_cpus"] = num_cpus
            ray.init(**kw)

    def map(self, fn: Callable[[S, list[str]], R], shared: S, parts: list[list[str]]) -> list[R]:
        ray = self._ray
        if not parts:
            return []
        remote_fn = ray.remote(fn)
        ref = ray.put(shared)
        return list(ray.get([remote_fn.remote(ref, part) for part in parts]))

    def shutdown(self) -> None:
        if self._started_here:
            self._ray.shutdown()


# Task functions: module-level so that Ray can pickle them by reference.


def label_batch(teacher: Any, texts: list[str]) -> list[str]:
    return list(teacher.label(texts))


def predict_batch(student: Any, texts: list[str]) -> tuple[list[str], list[float]]:
    labels, conf = student.predict(texts)
    return list(labels), [float(c) for c in conf]


def label_all(executor: Executor, teacher: Any, texts: Sequence[str]) -> list[str]:
    out: list[str] = []
    for part in executor.map(label_batch, teacher, batches(texts, executor.batch_size)):
        out.extend(part)
    return out


def predict_all(
    executor: Executor, student: Any, texts: Sequence[str]
) -> tuple[list[str], list[float]]:
    labels: list[str] = []
    conf: list[float] = []
    for part_labels, part_conf in executor.map(
        predict_batch, student, batches(texts, executor.batch_size)
    ):
        labels.extend(part_labels)
        conf.extend(part_conf)
    return labels, conf
