"""Each collaboration mode once with the real embedded SLM (SmolLM2-135M through llama.cpp).

No large model is reachable here: the "remote" side is a scripted model with a remote, priced
card, so the accounting of what crossed is checked against real local generations.
Run with: flock /tmp/duetto-cpu.lock .venv/bin/pytest -m local_model tests/integration
"""

from __future__ import annotations

import math

import pytest

from duetto.answers import extract_choice
from duetto.messages import ChatRequest
from duetto.models.base import ChatModel, ModelCard
from duetto.scoring.verifiers import LogprobVerifier, SelfVerifier
from duetto.strategies import (
    Cascade,
    CompressAssist,
    Fuse,
    HintAssist,
    LengthScorer,
    Pipeline,
    RedactAssist,
    Route,
    Stage,
)
from duetto.testing.scripted import ScriptedModel

pytestmark = pytest.mark.local_model

REMOTE = ModelCard(
    name="remote-llm",
    location="remote",
    trusted=False,
    price_in_per_mtok=2.5,
    price_out_per_mtok=10,
)


def ask(prompt: str, **kw: object) -> ChatRequest:
    return ChatRequest.of(prompt, max_tokens=kw.pop("max_tokens", 12), **kw)  # type: ignore[arg-type]


async def test_pipeline_slm_extracts_then_remote_answers(smollm2: ChatModel) -> None:
    llm = ScriptedModel(REMOTE, "Paris")
    p = Pipeline(
        "p",
        [
            Stage(smollm2, "extractor", "Name the country the user asks about."),
            Stage(llm, "answerer"),
        ],
    )
    r = await p.complete(ask("What is the capital of France?"))
    notes = llm.calls[0].messages[0].content
    assert notes.startswith("Notes from extractor:") and len(notes) > len("Notes from extractor:\n")
    assert r.text == "Paris" and r.usage.calls == 2 and r.usage.remote_calls == 1
    assert r.trace.children[0].children[0].name == "smollm2-135m"
    assert r.trace.children[0].usage.energy_j == 0  # the stage node's own usage: none
    assert r.trace.children[0].total().energy_j > 0  # the SLM call: measured CPU energy


async def test_route_keeps_short_requests_local(smollm2: ChatModel) -> None:
    llm = ScriptedModel(REMOTE, "long answer")
    route = Route("r", [smollm2, llm], LengthScorer(scale_chars=200), threshold=0.5)
    short = await route.complete(ask("Say hello."))
    assert short.trace.decision == "cheap" and short.usage.remote_calls == 0 and short.text
    long = await route.complete(ask("Explain, in detail, " + "why the sky is blue; " * 20))
    assert long.trace.decision == "strong" and long.usage.cost_usd > 0
    chunks = [c async for c in route.stream(ask("Say hi."))]
    assert chunks[-1].response is not None
    assert "".join(c.delta for c in chunks) == chunks[-1].response.text


async def test_cascade_scores_real_logprobs_and_self_verification(smollm2: ChatModel) -> None:
    llm = ScriptedModel(REMOTE, "4")
    req = ask("What is 2 + 2? Reply with a number.", max_tokens=6)
    low = await Cascade("c", [smollm2, llm], LogprobVerifier(), threshold=0.0).complete(req)
    p = low.trace.score
    assert p is not None and 0.0 < p <= 1.0 and low.trace.decision == "accepted"
    assert low.usage.remote_calls == 0
    high = await Cascade(
        "c", [smollm2, llm], LogprobVerifier(), threshold=1.01, pass_draft=True
    ).complete(req)
    assert high.trace.decision == "escalated" and high.text == "4" and high.usage.remote_calls == 1
    assert "drafted" in llm.calls[0].messages[0].content
    sv = Cascade("c", [smollm2, llm], SelfVerifier(smollm2, max_tokens=2), threshold=0.5)
    r = await sv.complete(req)
    # temperature 0: SmolLM2 says yes with p ~0.74 to its own "2 + 2 = " (llama.cpp 0.3.36)
    assert r.trace.score == pytest.approx(0.74, abs=0.05)
    assert r.trace.decision == "accepted" and r.usage.calls == 2 and r.usage.remote_calls == 0
    assert [s.name for s in r.trace.children[0].children] == ["smollm2-135m", "smollm2-135m"]


async def test_assist_modes(smollm2: ChatModel) -> None:
    # SLM → LLM: redaction before the untrusted model, and LLM-mode compression by the SLM.
    llm = ScriptedModel(REMOTE, lambda req: "Noted: <EMAIL_ADDRESS_1>")
    red = await RedactAssist("ra", llm).complete(ask("My e-mail is ann@example.com, note it."))
    assert red.usage.pii_sent == 0 and red.text == "Noted: ann@example.com"
    text = "I have a question about my order. " * 6 + "When will order 5521 arrive?"
    answerer = ScriptedModel(REMOTE, "tomorrow")
    comp = CompressAssist("ca", smollm2, answerer, mode="llm", min_chars=100)
    r = await comp.complete(ask(text, max_tokens=40))
    # temperature 0: SmolLM2 rewrites the 232-character request into a shorter one about the
    # order, and that rewrite is exactly what reached the remote answerer.
    sent = answerer.calls[0].last_user
    assert r.trace.decision == "compressed" and r.trace.children[0].role == "compress"
    assert r.trace.extra["chars_before"] == len(text) == 232
    assert r.trace.extra["chars_after"] == len(sent) < 200 and "order" in sent
    assert r.trace.extra["bytes_saved"] > 0 and r.text == "tomorrow"
    # LLM → SLM: hints written once, used by the real SLM.
    teacher = ScriptedModel(REMOTE, "Reply with one word.")
    ha = HintAssist("ha", teacher, smollm2)
    a = await ha.complete(ask("What colour is grass?", task="colour"))
    b = await ha.complete(ask("What colour is the sky?", task="colour"))
    assert a.trace.extra["cache"] == "miss" and b.trace.extra["cache"] == "hit"
    assert len(teacher.calls) == 1 and b.usage.remote_calls == 0 and b.text


async def test_fuse_votes_over_real_samples(smollm2: ChatModel) -> None:
    f = Fuse("f", [smollm2], samples=3, normalise=extract_choice)
    req = ask("Which is a fruit? A) apple B) stone C) car. Answer with the letter.", max_tokens=4)
    r = await f.complete(req)
    assert r.usage.calls == 3 and len(r.trace.children) == 3
    assert r.trace.decision in ("voted", "no_vote")
    assert r.score is None or 0.0 <= r.score <= 1.0
    assert all(math.isfinite(c.total().latency_ms) for c in r.trace.children)
    # temperature 0 for every sample: three equal answers, all choosing A (apple).
    greedy = await Fuse(
        "f0", [smollm2], samples=3, normalise=extract_choice, temperature=0.0
    ).complete(req)
    assert greedy.trace.decision == "voted" and greedy.score == 1.0
    assert extract_choice(greedy.text) == "A"
