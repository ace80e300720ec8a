"""duetto.openai_wire: one wire format for the client, the gateway and the fake server."""

from __future__ import annotations

import json

from duetto.messages import ChatRequest
from duetto.openai_wire import (
    Chunks,
    StreamState,
    completion,
    head_size,
    logprobs_block,
    request_options,
    request_payload,
    usage_block,
)


def test_request_fields_round_trip_through_the_payload() -> None:
    req = ChatRequest.of("hi", system="S", max_tokens=7, temperature=0.2, stop=("x",), seed=3)
    body = request_payload(req, "m", stream=True, logprobs=True, extra={"top_p": 0.5})
    assert list(body) == [
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "stop",
        "seed",
        "logprobs",
        "stream",
        "stream_options",
        "top_p",
    ]
    assert body["stop"] == ["x"] and body["stream_options"] == {"include_usage": True}
    assert request_options(body) == {
        "max_tokens": 7,
        "temperature": 0.2,
        "stop": ("x",),
        "seed": 3,
        "logprobs": True,
    }
    # A server reads OpenAI's newer spelling first, and a single stop string.
    assert request_options({"max_completion_tokens": 5, "max_tokens": 9, "stop": "END"}) == {
        "max_tokens": 5,
        "stop": ("END",),
    }
    plain = request_payload(ChatRequest.of("hi"), "m")
    assert "stop" not in plain and "stream" not in plain and "logprobs" not in plain


def test_chunks_parse_back_into_the_answer() -> None:
    chunks = Chunks("id-1", "m", include_usage=True, created=1)
    lp = logprobs_block(["He", "llo"], [-0.5, -0.25])
    wire = (
        chunks.role()
        + chunks.delta("He", logprobs_block(["He"], [-0.5]))
        + chunks.delta("llo", logprobs_block(["llo"], [-0.25]))
        + chunks.finish("length", usage_block(3, 2), {"duetto": {"x": 1}})
        + Chunks.DONE
    )
    state = StreamState()
    deltas = [state.feed(line) for line in wire.decode().splitlines()]
    assert "".join(deltas) == "Hello" and state.done and state.finish == "length"
    assert state.logprobs == [-0.5, -0.25] and state.usage["total_tokens"] == 5
    events = [json.loads(x[6:]) for x in wire.decode().split("\n\n") if x.startswith("data: {")]
    assert events[-1]["choices"] == [] and events[-1]["duetto"] == {"x": 1}
    assert all(e["usage"] is None for e in events[:-1])  # OpenAI's include_usage layout
    body = completion("id-2", "m", "Hello", "weird", usage_block(3, 2), logprobs=lp, created=1)
    assert body["choices"][0]["finish_reason"] == "stop"  # unknown reasons map to stop
    assert body["choices"][0]["logprobs"]["content"][1]["bytes"] == list(b"llo")


def test_head_size_counts_crlfs() -> None:
    # "GET / HTTP/1.1\r\n" (16) + "a: b\r\n" (6) + "\r\n" (2)
    assert head_size("GET / HTTP/1.1", [(b"a", b"b")]) == 24
