"""Assist: one model (or a local tool) helps, another model answers.

SLM → LLM, before the remote call:
  - `RedactAssist`: detected PII becomes typed numbered placeholders (<EMAIL_ADDRESS_1>) in every
    message sent to the answerer; the placeholders are restored in the answer (also when
    streaming). The trace records entity counts per type, never the values.
  - `CompressAssist`: the last user message is shrunk before the answerer sees it, by an
    extractive heuristic (`mode="extract"`, no model call) or by the compressor model rewriting
    it (`mode="llm"`). The trace extra records characters, bytes and (estimated) tokens saved.
LLM → SLM:
  - `HintAssist`: the teacher writes task hints (`kind="hints"`) or few-shot demonstrations
    (`kind="fewshot"`) once per task type (`request.task`), cached in memory and optionally in a
    JSON file; the student answers with them. The teacher call appears in the trace only on a
    cache miss.

Capabilities: the model that answers (answerer, student) must have what the request needs
(tools, images, ...); the helper (compressor, teacher) reads text only. Otherwise
MissingCapability (a 400) before any call. Tools pass through to the answerer; with redaction,
its tool-call arguments keep the placeholders (the tool receives no PII).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Literal

from duetto.errors import ConfigError, DataError
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk, add_system_note
from duetto.models.base import ChatModel
from duetto.scoring.pii import Entity, detect
from duetto.scoring.redact import StreamRestorer, redact_request, restore
from duetto.strategies._compose import distinct, relay
from duetto.strategies.base import Strategy

# --- redaction ------------------------------------------------------------------------------


async def restored(
    stream: AsyncIterator[StreamChunk], restorer: StreamRestorer
) -> AsyncIterator[StreamChunk]:
    """`stream` with placeholders restored in its deltas (a split placeholder is held back
    until it is whole); the final chunk passes unchanged after the held-back tail."""
    async for chunk in stream:
        if chunk.response is None:
            if shown := restorer.feed(chunk.delta):
                yield StreamChunk(delta=shown)
            continue
        if tail := restorer.flush():
            yield StreamChunk(delta=tail)
        yield chunk


class RedactAssist(Strategy):
    mode = "assist"

    def __init__(
        self,
        name: str,
        answerer: ChatModel,
        detector: Callable[[str], list[Entity]] = detect,
        restore: bool = True,
    ) -> None:
        super().__init__(name, [answerer])
        self.answerer = answerer
        self.detector = detector
        self.restore = restore

    @property
    def answerers(self) -> Sequence[ChatModel]:
        return (self.answerer,)

    def _redact(self, request: ChatRequest) -> tuple[ChatRequest, dict[str, str], Counter[str]]:
        """(request with placeholders, placeholder → value, entity counts by type)."""
        entities = [self.detector(m.text) for m in request.messages]
        counts = Counter(e.type for found in entities for e in found)
        safe, mapping = redact_request(request, entities)
        return safe, mapping, counts

    def _extra(self, mapping: dict[str, str], counts: Counter[str]) -> dict[str, object]:
        return {
            "entities": sum(counts.values()),
            "placeholders": len(mapping),
            "types": dict(counts),
            "restored": self.restore,
        }

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        self.require(request)
        safe, mapping, counts = self._redact(request)
        out = await self.answerer.complete(safe)
        text = restore(out.text, mapping) if self.restore else out.text
        decision = "redacted" if mapping else "clean"
        return self.respond(
            text,
            t0,
            [out],
            decision=decision,
            role="redact",
            extra=self._extra(mapping, counts),
            base=out,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        t0 = time.perf_counter()
        self.require(request)
        safe, mapping, counts = self._redact(request)

        def finish(out: ChatResponse) -> ChatResponse:
            text = restore(out.text, mapping) if self.restore else out.text
            return self.respond(
                text,
                t0,
                [out],
                decision="redacted" if mapping else "clean",
                role="redact",
                extra=self._extra(mapping, counts),
                base=out,
            )

        restorer = StreamRestorer(mapping if self.restore else {})
        async for chunk in relay(restored(self.answerer.stream(safe), restorer), t0, finish):
            yield chunk


# --- compression ----------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z0-9]+")
_STOP_WORDS = (
    "the a an and or of to in on for with is are was were be been it this that what which who "
    "how why when where do does did can could should would will you your i we they he she"
)
_STOP = frozenset(_STOP_WORDS.split())

COMPRESS_SYSTEM = (
    "Rewrite the user's request as briefly as possible. Keep every fact, name, number and the "
    "question itself. Do not answer it. Output only the rewritten request."
)


def _content_words(text: str) -> set[str]:
    return {w for w in (x.lower() for x in _WORD.findall(text)) if w not in _STOP and len(w) > 2}


def extractive_compress(text: str, ratio: float = 0.5) -> str:
    """Keep the sentences most related to the question, in their order, within `ratio` of the
    characters. The last sentence and every question are always kept; sentences with numbers
    weigh more (a dropped number is usually a wrong answer)."""
    sentences = [s for s in _SENTENCE.split(text.strip()) if s.strip()]
    if len(sentences) <= 2:
        return text
    must = {len(sentences) - 1} | {i for i, s in enumerate(sentences) if s.rstrip().endswith("?")}
    focus: set[str] = set()
    for i in must:
        focus |= _content_words(sentences[i])
    budget = ratio * len(text) - sum(len(sentences[i]) for i in must)

    def weight(i: int) -> float:
        words = _content_words(sentences[i])
        overlap = len(words & focus) / (len(words) or 1)
        return overlap + (0.5 if re.search(r"\d", sentences[i]) else 0.0) + 0.01 * (i == 0)

    keep = set(must)
    for i in sorted(set(range(len(sentences))) - must, key=weight, reverse=True):
        if len(sentences[i]) <= budget:
            keep.add(i)
            budget -= len(sentences[i])
    return " ".join(sentences[i] for i in sorted(keep))


def _body_bytes(request: ChatRequest) -> int:
    """Bytes of the messages as they are JSON-encoded in an OpenAI request body."""
    return len(json.dumps([m.to_dict() for m in request.messages]).encode())


def _with_last_user(request: ChatRequest, text: str) -> ChatRequest:
    msgs = list(request.messages)
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].role == "user":
            msgs[i] = msgs[i].with_text(text)
            break
    return request.with_messages(msgs)


class CompressAssist(Strategy):
    mode = "assist"

    def __init__(
        self,
        name: str,
        compressor: ChatModel | None,
        answerer: ChatModel,
        mode: Literal["extract", "llm"] = "extract",
        ratio: float = 0.5,
        min_chars: int = 400,
    ) -> None:
        """Prompts whose last user message is shorter than `min_chars` pass through unchanged."""
        if mode not in ("extract", "llm"):
            raise ConfigError("expected extract or llm", "mode")
        if mode == "llm" and compressor is None:
            raise ConfigError("mode llm needs a compressor model", "compressor")
        if not 0.0 < ratio <= 1.0:
            raise ConfigError("expected a ratio in (0, 1]", "ratio")
        super().__init__(name, distinct([answerer] + ([compressor] if compressor else [])))
        self.compressor = compressor
        self.answerer = answerer
        self.compress_mode = mode
        self.ratio = ratio
        self.min_chars = min_chars

    @property
    def answerers(self) -> Sequence[ChatModel]:
        return (self.answerer,)  # the compressor only rewrites text

    async def _compress(self, request: ChatRequest) -> tuple[ChatRequest, list[ChatResponse], str]:
        original = request.last_user
        if len(original) < self.min_chars:
            return request, [], "skipped"
        if self.compress_mode == "extract":
            short = extractive_compress(original, self.ratio)
            return _with_last_user(request, short), [], "compressed"
        assert self.compressor is not None
        ask = ChatRequest.of(
            original,
            system=COMPRESS_SYSTEM,
            task=request.task,
            max_tokens=max(16, int(len(original) * self.ratio / 3)),
            metadata=request.metadata,
        )
        out = await self.compressor.complete(ask)
        out.trace.role = "compress"
        short = out.text.strip()
        if not short or len(short) >= len(original):
            return request, [out], "not_shorter"
        return _with_last_user(request, short), [out], "compressed"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        self.require(request)
        short, helpers, decision = await self._compress(request)
        out = await self.answerer.complete(short)
        before, after = _body_bytes(request), _body_bytes(short)
        # Tokens saved is an estimate: the answerer's measured input tokens scaled by bytes.
        tokens_saved = round(out.usage.tokens_in * (before - after) / after) if after else 0
        extra: dict[str, object] = {
            "compress_mode": self.compress_mode,
            "chars_before": len(request.last_user),
            "chars_after": len(short.last_user),
            "bytes_before": before,
            "bytes_after": after,
            "bytes_saved": before - after,
            "tokens_saved_est": tokens_saved,
        }
        return self.respond(
            out.text, t0, [*helpers, out], decision=decision, role="compress", extra=extra, base=out
        )


# --- hints / few-shot from a teacher --------------------------------------------------------

HINTS_PROMPT = (
    "A small model will answer many requests like the example below (task type: {task}). "
    "Write 3 to 5 short, general hints that help it answer such requests correctly and in the "
    "right format. Do not answer the example itself.\n\nExample request:\n{example}"
)
FEWSHOT_PROMPT = (
    "Write {n} new example requests of the same kind as the one below (task type: {task}), each "
    "with a correct, short answer in the expected format. Use exactly this layout:\n"
    "Q: <request>\nA: <answer>\n\nExample request:\n{example}"
)
_QA = re.compile(r"^\s*Q:\s*(.+?)\s*\n\s*A:\s*(.+?)\s*(?=\n\s*Q:|\Z)", re.S | re.M)


def parse_fewshot(text: str) -> list[tuple[str, str]]:
    return [(q.strip(), a.strip()) for q, a in _QA.findall(text)]


def apply_guidance(request: ChatRequest, kind: str, guidance: str) -> ChatRequest:
    """Hints become a system note; demonstrations become user/assistant turns before the
    conversation (or a system note when they cannot be parsed)."""
    pairs = parse_fewshot(guidance) if kind == "fewshot" else []
    if not pairs:
        label = "Hints for this kind of request" if kind == "hints" else "Examples"
        return add_system_note(request, f"{label}:\n{guidance.strip()}")
    head = [m for m in request.messages if m.role == "system"][:1]
    rest = list(request.messages[len(head) :])
    shots: list[Message] = []
    for q, a in pairs:
        shots += [Message("user", q), Message("assistant", a)]
    return request.with_messages([*head, *shots, *rest])


class HintAssist(Strategy):
    mode = "assist"

    def __init__(
        self,
        name: str,
        teacher: ChatModel,
        student: ChatModel,
        kind: Literal["hints", "fewshot"] = "hints",
        cache_path: str | Path | None = None,
        n_examples: int = 3,
        teacher_max_tokens: int = 256,
    ) -> None:
        if kind not in ("hints", "fewshot"):
            raise ConfigError("expected hints or fewshot", "kind")
        super().__init__(name, distinct([student, teacher]))
        self.teacher = teacher
        self.student = student
        self.guidance_kind: Literal["hints", "fewshot"] = kind  # `kind`: the ChatModel seam's
        self.n_examples = n_examples
        self.teacher_max_tokens = teacher_max_tokens
        self.cache_path = Path(cache_path) if cache_path else None
        self.cache: dict[str, str] = self._load()
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def answerers(self) -> Sequence[ChatModel]:
        return (self.student,)  # the teacher writes text hints only

    def _load(self) -> dict[str, str]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(str(e), str(self.cache_path), "a JSON object of strings") from e
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise DataError("not a JSON object of strings", str(self.cache_path))
        return data

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(self.cache_path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True))
        os.replace(tmp, self.cache_path)  # atomic: a crash never leaves half a file

    def cache_key(self, request: ChatRequest) -> str:
        return f"{self.guidance_kind}:{request.task or 'default'}"

    async def _guidance(self, request: ChatRequest) -> tuple[str, ChatResponse | None]:
        key = self.cache_key(request)
        if key in self.cache:
            return self.cache[key], None
        async with self._locks.setdefault(key, asyncio.Lock()):  # one teacher call per task
            if key in self.cache:
                return self.cache[key], None
            template = HINTS_PROMPT if self.guidance_kind == "hints" else FEWSHOT_PROMPT
            prompt = template.format(
                task=request.task or "general", example=request.last_user, n=self.n_examples
            )
            ask = ChatRequest.of(
                prompt,
                task=request.task,
                max_tokens=self.teacher_max_tokens,
                metadata=request.metadata,
            )
            out = await self.teacher.complete(ask)
            out.trace.role = "teach"
            self.cache[key] = out.text
            self._save()
            return out.text, out

    async def _prepare(self, request: ChatRequest) -> tuple[ChatRequest, list[ChatResponse]]:
        self.require(request)
        guidance, taught = await self._guidance(request)
        return apply_guidance(request, self.guidance_kind, guidance), [taught] if taught else []

    def _extra(self, request: ChatRequest, helpers: list[ChatResponse]) -> dict[str, object]:
        return {
            "cache": "miss" if helpers else "hit",
            "task": request.task,
            "kind": self.guidance_kind,
        }

    async def complete(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        guided, helpers = await self._prepare(request)
        out = await self.student.complete(guided)
        return self.respond(
            out.text,
            t0,
            [*helpers, out],
            decision="guided",
            role="hint",
            extra=self._extra(request, helpers),
            base=out,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        t0 = time.perf_counter()
        guided, helpers = await self._prepare(request)

        def finish(out: ChatResponse) -> ChatResponse:
            extra = self._extra(request, helpers)
            return self.respond(
                out.text, t0, [*helpers, out], decision="guided", role="hint", extra=extra, base=out
            )

        async for chunk in relay(self.student.stream(guided), t0, finish):
            yield chunk
