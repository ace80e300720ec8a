"""Assist: redaction with restore (also streamed), prompt compression, teacher hints cached."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from pathlib import Path

import pytest

from duetto.errors import ConfigError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring.pii import Entity, count_pii, regex_detect
from duetto.scoring.redact import StreamRestorer, redact, restore
from duetto.strategies.assist import (
    CompressAssist,
    HintAssist,
    RedactAssist,
    extractive_compress,
    parse_fewshot,
)
from duetto.testing.scripted import ScriptedModel

REMOTE = ModelCard(name="llm", location="remote", trusted=False, price_in_per_mtok=1e6)
SLM = ModelCard(name="slm")

# --- redaction ---------------------------------------------------------------------------------


def test_redact_numbers_by_type_reuses_placeholders_and_restores() -> None:
    text = "Mail ann@x.org or bob@y.org, again ann@x.org, call 555-123-4567."
    ents = regex_detect(text)
    red, mapping = redact(text, ents)
    assert "ann@x.org" not in red and "555-123-4567" not in red
    assert red.count("<EMAIL_ADDRESS_1>") == 2 and "<EMAIL_ADDRESS_2>" in red
    assert "<PHONE_NUMBER_1>" in red and len(mapping) == 3
    assert restore(red, mapping) == text
    # A second message continues the numbering and reuses known values.
    red2, mapping2 = redact(
        "cc carl@z.org and bob@y.org", regex_detect("cc carl@z.org and bob@y.org"), mapping
    )
    assert red2 == "cc <EMAIL_ADDRESS_3> and <EMAIL_ADDRESS_2>" and len(mapping2) == 4
    assert restore("<UNKNOWN_1> stays", mapping2) == "<UNKNOWN_1> stays"


def test_redact_skips_overlaps() -> None:
    text = "id 1234567890"
    ents = [Entity("A", 3, 13, "1234567890"), Entity("B", 5, 8, "345")]
    red, mapping = redact(text, ents)
    assert red == "id <A_1>" and mapping == {"<A_1>": "1234567890"}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_stream_restorer_handles_placeholders_split_across_chunks(size: int) -> None:
    mapping = {"<EMAIL_ADDRESS_1>": "ann@x.org", "<PHONE_NUMBER_12>": "555-123-4567"}
    answer = "Write to <EMAIL_ADDRESS_1> or <PHONE_NUMBER_12>; 3 < 4 and <b> stays <EMAIL"
    sr = StreamRestorer(mapping)
    pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
    shown = "".join(sr.feed(p) for p in pieces) + sr.flush()
    assert shown == restore(answer, mapping)
    assert "ann@x.org" in shown and "555-123-4567" in shown and shown.endswith("<EMAIL")


def test_html_escaped_placeholders_are_restored() -> None:
    """Small models that write HTML answer `&lt;PERSON_2&gt;`: the value still comes back."""
    mapping = {"<PERSON_1>": "Ann Lee", "<PERSON_2>": "Tristan Dennis"}
    answer = "&lt;PERSON_1&gt; asks for &lt;PERSON_2&gt;; &lt;PERSON_9&gt; and a &amp; b stay"
    want = "Ann Lee asks for Tristan Dennis; &lt;PERSON_9&gt; and a &amp; b stay"
    assert restore(answer, mapping) == want
    for size in (1, 2, 3, 5, 8):
        sr = StreamRestorer(mapping)
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        shown = [sr.feed(p) for p in pieces]
        assert "".join(shown) + sr.flush() == want
        assert not any("&lt;PERSON_2" in piece for piece in shown)  # never a half placeholder


def test_stream_restorer_holds_back_only_possible_placeholders() -> None:
    sr = StreamRestorer({"<EMAIL_ADDRESS_1>": "a@b.c"})
    assert sr.feed("x <EM") == "x "
    assert sr.feed("PTY") == "<EMPTY"  # can no longer become a placeholder
    assert sr.feed(" <EMAIL_ADDRESS_1") == " "
    assert sr.feed("> ok") == "a@b.c ok"


async def test_redact_assist_never_sends_pii_and_restores_the_answer() -> None:
    llm = ScriptedModel(REMOTE, lambda req: "I will write to <EMAIL_ADDRESS_1> today.")
    llm.pii_counter = partial(count_pii, detector=regex_detect)
    ra = RedactAssist("ra", llm)
    req = ChatRequest.of("Please email ann@example.com about card 4111 1111 1111 1111.")
    r = await ra.complete(req)
    sent = llm.calls[0]
    assert "ann@example.com" not in sent.text and "4111" not in sent.text
    assert "<EMAIL_ADDRESS_1>" in sent.last_user and "<CREDIT_CARD_1>" in sent.last_user
    assert "placeholders" in sent.messages[0].content
    assert r.text == "I will write to ann@example.com today."
    assert r.usage.pii_sent == 0 and r.trace.decision == "redacted"
    assert r.trace.extra["types"] == {"EMAIL_ADDRESS": 1, "CREDIT_CARD": 1}
    assert "ann@example.com" not in json.dumps(r.trace.to_dict())  # never in the trace
    raw = RedactAssist("ra", llm, restore=False)
    assert (await raw.complete(req)).text == "I will write to <EMAIL_ADDRESS_1> today."
    # The same request sent directly leaks two entities.
    assert (await llm.complete(req)).usage.pii_sent == 2


async def test_redact_assist_streams_restored_text() -> None:
    class Chunky(ScriptedModel):
        async def _stream_raw(self, request):  # type: ignore[no-untyped-def,override]
            raw = await self._call(request)
            for i in range(0, len(raw.text), 4):
                yield raw.text[i : i + 4]
            yield raw

    llm = Chunky(REMOTE, "Reply sent to <EMAIL_ADDRESS_1>.")
    ra = RedactAssist("ra", llm)
    chunks = [c async for c in ra.stream(ChatRequest.of("Answer ann@example.com"))]
    final = chunks[-1].response
    assert final is not None and len(chunks) > 3
    assert "".join(c.delta for c in chunks) == "Reply sent to ann@example.com." == final.text
    assert not any("<EMAIL" in c.delta for c in chunks)


async def test_clean_requests_pass_through_unchanged() -> None:
    llm = ScriptedModel(REMOTE, "fine")
    r = await RedactAssist("ra", llm).complete(ChatRequest.of("no secrets"))
    assert (
        r.trace.decision == "clean"
        and llm.calls[0].messages == ChatRequest.of("no secrets").messages
    )


# --- compression -----------------------------------------------------------------------------

LONG = (
    "I bought a house in 2019 near the river. The garden has roses and a small pond. "
    "My neighbour paints the fence every spring. The loan was 240000 dollars at 3 percent. "
    "We also adopted a cat named Miso last year. The kitchen was renovated twice. "
    "What is the yearly interest on the loan?"
)


def test_extractive_compression_keeps_the_question_and_numbers() -> None:
    short = extractive_compress(LONG, ratio=0.5)
    assert len(short) <= 0.5 * len(LONG) + 1
    assert short.endswith("What is the yearly interest on the loan?")
    assert "240000" in short and "roses" not in short
    assert extractive_compress("One sentence only.", 0.3) == "One sentence only."


async def test_compress_assist_extract_saves_bytes_and_records_them() -> None:
    llm = ScriptedModel(REMOTE, "7200 dollars")
    ca = CompressAssist("ca", None, llm, mode="extract", ratio=0.5, min_chars=100)
    r = await ca.complete(ChatRequest.of(LONG))
    x = r.trace.extra
    assert r.trace.decision == "compressed" and r.text == "7200 dollars"
    assert x["bytes_saved"] > 0 and x["bytes_before"] - x["bytes_after"] == x["bytes_saved"]
    assert x["chars_after"] < x["chars_before"] and x["tokens_saved_est"] > 0
    assert len(llm.calls[0].last_user) == x["chars_after"]
    direct = await llm.complete(ChatRequest.of(LONG))
    assert r.usage.cost_usd < direct.usage.cost_usd  # fewer input tokens were paid for
    tiny = await ca.complete(ChatRequest.of("short"))
    assert tiny.trace.decision == "skipped" and tiny.trace.extra["bytes_saved"] == 0


async def test_compress_assist_llm_mode_uses_the_compressor_and_guards_length() -> None:
    slm = ScriptedModel(SLM, "Loan 240000 at 3%: yearly interest?")
    llm = ScriptedModel(REMOTE, "7200")
    r = await CompressAssist("ca", slm, llm, mode="llm", min_chars=50).complete(
        ChatRequest.of(LONG)
    )
    assert llm.calls[0].last_user == "Loan 240000 at 3%: yearly interest?"
    assert [c.role for c in r.trace.children] == ["compress", None] and r.usage.calls == 2
    verbose = ScriptedModel(SLM, LONG + " and more words")
    r2 = await CompressAssist("ca", verbose, llm, mode="llm", min_chars=50).complete(
        ChatRequest.of(LONG)
    )
    assert r2.trace.decision == "not_shorter" and llm.calls[-1].last_user == LONG
    with pytest.raises(ConfigError):
        CompressAssist("ca", None, llm, mode="llm")


# --- hints -----------------------------------------------------------------------------------


async def test_hints_are_written_once_per_task_and_cached(tmp_path: Path) -> None:
    teacher = ScriptedModel(REMOTE, "- Answer with the intent label only.")
    student = ScriptedModel(SLM, "balance")
    path = tmp_path / "hints.json"
    ha = HintAssist("ha", teacher, student, cache_path=path)
    r1 = await ha.complete(ChatRequest.of("what is my balance", task="banking"))
    r2 = await ha.complete(ChatRequest.of("how much money do I have", task="banking"))
    assert len(teacher.calls) == 1 and "what is my balance" in teacher.calls[0].last_user
    assert r1.trace.extra["cache"] == "miss" and r2.trace.extra["cache"] == "hit"
    assert [c.name for c in r1.trace.children] == ["llm", "slm"] and r1.trace.children[
        0
    ].role == "teach"
    assert [c.name for c in r2.trace.children] == ["slm"] and r2.usage.cost_usd == 0
    assert "intent label only" in student.calls[1].messages[0].content
    # The file cache survives a restart: no teacher call for a known task.
    ha2 = HintAssist("ha", teacher, student, cache_path=path)
    await ha2.complete(ChatRequest.of("balance?", task="banking"))
    assert len(teacher.calls) == 1
    await ha2.complete(ChatRequest.of("2+2", task="math"))
    assert len(teacher.calls) == 2 and set(json.loads(path.read_text())) == {
        "hints:banking",
        "hints:math",
    }


async def test_concurrent_misses_call_the_teacher_once() -> None:
    teacher = ScriptedModel(REMOTE, "hint", latency_s=0.02)
    ha = HintAssist("ha", teacher, ScriptedModel(SLM, "x"))
    rs = await asyncio.gather(*(ha.complete(ChatRequest.of(f"q{i}", task="t")) for i in range(5)))
    assert len(teacher.calls) == 1 and sum(r.trace.extra["cache"] == "miss" for r in rs) == 1


async def test_fewshot_demonstrations_become_turns() -> None:
    teacher = ScriptedModel(REMOTE, "Q: 1+1?\nA: 2\nQ: 2+3?\nA: 5")
    student = ScriptedModel(SLM, "4")
    ha = HintAssist("ha", teacher, student, kind="fewshot")
    await ha.complete(ChatRequest.of("2+2?", system="Digits only.", task="math"))
    sent = student.calls[0].messages
    assert [(m.role, m.content) for m in sent] == [
        ("system", "Digits only."), ("user", "1+1?"), ("assistant", "2"),
        ("user", "2+3?"), ("assistant", "5"), ("user", "2+2?"),
    ]  # fmt: skip
    assert parse_fewshot("no pairs here") == []


async def test_redact_assist_from_config_replaces_only_the_configured_tiers() -> None:
    """`tiers: [secret, identifier, contact]` (the demo's assist-redact-contact): an e-mail and
    a card are replaced, a date (quasi tier) is sent as is."""
    from duetto.build import build_strategy
    from duetto.options import RedactAssistOptions

    def detector(text: str) -> list[Entity]:
        spans = [("ann@example.com", "EMAIL_ADDRESS"), ("4111 1111 1111 1111", "CREDIT_CARD")]
        spans.append(("12 May 2024", "DATE_TIME"))
        return [
            Entity(kind, text.index(value), text.index(value) + len(value), value)
            for value, kind in spans
            if value in text
        ]

    llm = ScriptedModel(REMOTE, lambda req: "ok")
    opts = RedactAssistOptions(
        mode="assist", kind="redact", answerer="llm", tiers=["secret", "identifier", "contact"]
    )
    from duetto.scoring import pii

    before = pii.current_detector()
    pii.set_detector(detector)
    try:
        ra = build_strategy("ra", opts, lambda name, path: llm)
        req = ChatRequest.of("Mail ann@example.com, card 4111 1111 1111 1111, 12 May 2024")
        await ra.complete(req)
    finally:
        pii.set_detector(before)
    sent = llm.calls[0].last_user
    assert "ann@example.com" not in sent and "4111" not in sent
    assert "12 May 2024" in sent
