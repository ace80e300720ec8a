"""A distilled label student served as a chat model, and the `distill` mode that deploys it.

`StudentModel` answers closed-form requests (intents, a fixed set of categories) with the label
a student (`duetto.distill.students`, e.g. the MiniLM `head`) predicts among the request's own
options, and reports its confidence as the one token's log-probability, so any cascade reads it
with the `logprob` verifier. Requests it cannot answer (no options, a task it was not trained on)
get an empty answer at confidence 0: a cascade escalates them. The options come from
`request.metadata["choices"]` (the deployment knows its prompt templates; metadata never leaves
the process). It is a local, free model: no remote call, no PII sent anywhere.

`DistilledStudent` is the distillation mode on its own: the student answers every request it can
answer, whatever its confidence; everything else goes to the fallback model (the LLM).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ChatModel, LeafModel, ModelCard, RawResult
from duetto.strategies.base import Strategy

NO_ANSWER_LOGPROB = math.log(1e-9)  # "confidence 0" without an infinity in the trace


def request_choices(request: ChatRequest) -> tuple[str, ...]:
    return tuple(str(c) for c in request.metadata.get("choices") or ())


class StudentModel(LeafModel):
    """Per task, a fitted student with `embedder` and `predict_embedded`/`predict_proba`
    (duetto.distill.students.head.HeadStudent); `text_of` picks what the student reads."""

    def __init__(
        self,
        students: Mapping[str, Any],
        *,
        name: str = "student",
        label: str = "distilled student (MiniLM head, in process)",
    ) -> None:
        super().__init__(ModelCard(name=name, location="local", trusted=True, label=label))
        self.students = dict(students)
        self._vectors: dict[tuple[str, str], np.ndarray] = {}

    def can_answer(self, request: ChatRequest) -> bool:
        return (request.task or "") in self.students and bool(request_choices(request))

    def warm(self, requests: Sequence[ChatRequest]) -> None:
        """Embed the texts of many requests in one batch (each is embedded once anyway)."""
        by_task: dict[str, list[str]] = {}
        for r in requests:
            if self.can_answer(r) and (r.task or "", r.last_user) not in self._vectors:
                by_task.setdefault(r.task or "", []).append(r.last_user)
        for task, texts in by_task.items():
            unique = list(dict.fromkeys(texts))
            vecs = self.students[task].embedder.embed(unique)
            self._vectors.update({(task, t): v for t, v in zip(unique, vecs, strict=True)})

    def predict(self, request: ChatRequest) -> tuple[str, float]:
        """(label, confidence) among the request's options; ("", 0.0) when it cannot answer."""
        if not self.can_answer(request):
            return "", 0.0
        task = request.task or ""
        self.warm([request])
        x = self._vectors[task, request.last_user][None, :]
        student = self.students[task]
        return pick_among(student, x, request_choices(request))

    async def _call(self, request: ChatRequest) -> RawResult:
        text, conf = await asyncio.to_thread(self.predict, request)
        lp = math.log(conf) if conf > 0 else NO_ANSWER_LOGPROB
        return RawResult(
            text=text,
            tokens_in=0,
            tokens_out=1 if text else 0,
            logprobs=[lp],
            extra={"student_confidence": round(conf, 6)},
        )


def pick_among(student: Any, x: np.ndarray, choices: Sequence[str]) -> tuple[str, float]:
    """The student's most probable option among `choices` and its probability renormalised
    over them, times the student's novelty factor (similarity to what it learned) if it has one."""
    classes = [str(c) for c in student.classes]
    index = {c: i for i, c in enumerate(classes)}
    known = [c for c in choices if c in index]
    if not known:
        return "", 0.0
    proba = student.predict_proba(x)[0]
    p = np.array([proba[index[c]] for c in known], dtype=float)
    total = float(p.sum())
    if total <= 0:
        return "", 0.0
    best = int(p.argmax())
    conf = float(p[best] / total)
    known_x = getattr(student, "known", None) if getattr(student, "novelty", False) else None
    if known_x is not None and len(known_x):
        sim = float((np.asarray(x, dtype=np.float32) @ known_x.T).max())
        conf *= min(max(sim, 0.0), 1.0)
    return known[best], conf


class DistilledStudent(Strategy):
    """The distillation mode: the student answers what it can; the fallback the rest."""

    mode: ClassVar[str] = "distill"

    def __init__(self, name: str, student: StudentModel, fallback: ChatModel) -> None:
        super().__init__(name, [student, fallback])
        self.student = student
        self.fallback = fallback

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        local = self.student.can_answer(request)
        out = await (self.student if local else self.fallback).complete(request)
        return self.respond(
            out.text,
            t0,
            [out],
            decision="local" if local else "fallback",
            extra={"answered_by": out.model},
            base=out,
        )
