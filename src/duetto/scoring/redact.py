"""Reversible redaction: detected entities become typed, numbered placeholders and come back.

    text, mapping = redact("Mail bob@x.org or bob@x.org", entities)
    # "Mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_1>", {"<EMAIL_ADDRESS_1>": "bob@x.org"}
    restore(answer, mapping)

The same value gets the same placeholder; passing an earlier `mapping` continues its numbering
(one mapping across the messages of a conversation). `StreamRestorer` restores a streamed answer
in which a placeholder may be split across chunks: it holds back only a tail that could still
become a placeholder. `redact_request` redacts a whole conversation (one mapping, plus a system
note about the placeholders). Pure: no I/O, no detector (pass the entities in).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from duetto.messages import ChatRequest, Message, add_system_note
from duetto.scoring.pii import Entity

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
# What comes back: models that write HTML (small coder models do) answer `&lt;PERSON_2&gt;`
# for `<PERSON_2>`; both forms are restored.
ANSWERED = re.compile(r"(?:<|&lt;)([A-Z][A-Z0-9_]*_\d+)(?:>|&gt;)")


def _kind(entity_type: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", entity_type.upper()) or "PII"


def placeholder(entity_type: str, n: int) -> str:
    return f"<{_kind(entity_type)}_{n}>"


def redact(
    text: str, entities: Iterable[Entity], mapping: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """Replace each entity span by its placeholder. Returns the text and the full mapping
    placeholder → original (the given `mapping` extended). Overlapping spans: the earliest
    (then longest) wins."""
    out_map = dict(mapping or {})
    by_value: dict[tuple[str, str], str] = {}  # (value, kind) → placeholder
    counts: dict[str, int] = {}
    for k, v in out_map.items():
        m = PLACEHOLDER.fullmatch(k)
        if m:
            by_value[(v, m.group(1))] = k
            counts[m.group(1)] = max(counts.get(m.group(1), 0), int(m.group(2)))
    parts: list[str] = []
    pos = 0
    for e in sorted(entities, key=lambda e: (e.start, -(e.end - e.start))):
        if e.start < pos or e.end <= e.start:
            continue
        value = text[e.start : e.end]
        kind = _kind(e.type)
        ph = by_value.get((value, kind))
        if ph is None:
            counts[kind] = counts.get(kind, 0) + 1
            ph = placeholder(kind, counts[kind])
            by_value[(value, kind)] = ph
            out_map[ph] = value
        parts.append(text[pos : e.start])
        parts.append(ph)
        pos = e.end
    parts.append(text[pos:])
    return "".join(parts), out_map


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Put the original values back (`<X_1>` or its HTML-escaped `&lt;X_1&gt;`); unknown
    placeholders stay as they are."""
    if not mapping:
        return text
    return ANSWERED.sub(lambda m: mapping.get(f"<{m.group(1)}>", m.group(0)), text)


class StreamRestorer:
    """Restore placeholders in a stream of deltas: `feed(delta)` returns what can be shown now,
    `flush()` what is left at the end."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        # every surface form a placeholder may come back in (see ANSWERED)
        self._forms = [f for p in self.mapping for f in (p, f"&lt;{p[1:-1]}&gt;")]
        self._longest = max((len(f) for f in self._forms), default=0)
        self._buf = ""

    def _could_grow(self, tail: str) -> bool:
        return any(f.startswith(tail) and f != tail for f in self._forms)

    def feed(self, delta: str) -> str:
        self._buf += delta
        if not self.mapping:
            out, self._buf = self._buf, ""
            return out
        # hold back the earliest tail that may still become a placeholder, nothing else
        cut = len(self._buf)
        for i in range(max(0, len(self._buf) - self._longest), len(self._buf)):
            if self._buf[i] in "<&" and self._could_grow(self._buf[i:]):
                cut = i
                break
        ready, self._buf = self._buf[:cut], self._buf[cut:]
        return restore(ready, self.mapping)

    def flush(self) -> str:
        out, self._buf = restore(self._buf, self.mapping), ""
        return out


PLACEHOLDER_NOTE = (
    "Some values were replaced by placeholders such as {example}. "
    "Keep placeholders exactly as written when you need to refer to them."
)


def redact_request(
    request: ChatRequest, entities: Sequence[Iterable[Entity]]
) -> tuple[ChatRequest, dict[str, str]]:
    """Redact every message of `request` with one shared mapping (`entities[i]` are message
    i's, spans relative to its content); when anything was replaced, a system note asks the
    model to keep the placeholders. Returns (request, placeholder → original). The one way a
    request is redacted: `RedactAssist` and the privacy layer's `plan_request` both call it."""
    mapping: dict[str, str] = {}
    messages: list[Message] = []
    for message, found in zip(request.messages, entities, strict=True):
        text, mapping = redact(message.text, found, mapping)
        messages.append(message.with_text(text))
    out = request.with_messages(messages)
    if mapping:
        out = add_system_note(out, PLACEHOLDER_NOTE.format(example=next(iter(mapping))))
    return out, mapping
