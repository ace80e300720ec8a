"""The local model's check of a json_schema answer and its one retry (generation scripted)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from duetto.errors import ModelError
from duetto.messages import ChatRequest
from duetto.models import local
from duetto.models.base import RawResult

pytest.importorskip("jsonschema")

SCHEMA = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "notes": {"type": "string"},
    },
    "required": ["rating"],
}


def _request(temperature: float = 0.0, seed: int | None = 7, **kw: Any) -> ChatRequest:
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}
    return ChatRequest.of(
        "Rate it.",
        response_format=fmt,
        temperature=temperature,
        seed=seed,
        max_tokens=64,
        **kw,
    )


@dataclass
class Script:
    """Stands in for `_run`: answers in turn, and keeps every request it was given."""

    answers: list[tuple[str, str]]  # (text, finish_reason)
    seen: list[ChatRequest] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)

    def __call__(self, engine: Any, request: ChatRequest, emit: Any, cancel: Any, t0: float):
        self.seen.append(request)
        text, finish = self.answers[len(self.seen) - 1]
        if emit is not None:
            emit(text)
        tokens = 64 if finish == "length" else 6
        return RawResult(text, 5, tokens, finish_reason=finish, ttft_ms=1.0)


def _answer(monkeypatch: pytest.MonkeyPatch, script: Script, request: ChatRequest) -> RawResult:
    monkeypatch.setattr(local, "_run", script)
    return local._answer(None, request, script.emitted.append, threading.Event(), 0.0)  # type: ignore[arg-type]


def test_a_valid_answer_is_kept_and_sent_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([('{"rating": 4}', "stop")])
    raw = _answer(monkeypatch, script, _request())
    assert raw.text == '{"rating": 4}' and len(script.seen) == 1
    assert script.emitted == ['{"rating": 4}']  # one delta, after the check
    assert raw.ttft_ms is None  # the stream's reader got its first token at the end
    assert "schema_retries" not in raw.extra


def test_a_greedy_failure_is_retried_sampled_with_another_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script([('{"rating": 0}', "stop"), ('{"rating": 2}', "stop")])
    raw = _answer(monkeypatch, script, _request(temperature=0.0, seed=7))
    assert raw.text == '{"rating": 2}' and raw.extra["schema_retries"] == 1
    retry = script.seen[1]
    assert retry.temperature == local._RETRY_TEMPERATURE and retry.seed == 8
    assert retry.response_format == script.seen[0].response_format
    assert script.emitted == ['{"rating": 2}']  # the invalid first answer was never sent


def test_a_sampled_failure_is_retried_greedily(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([('{"rating": 9}', "stop"), ('{"rating": 5}', "stop")])
    raw = _answer(monkeypatch, script, _request(temperature=0.8))
    assert raw.text == '{"rating": 5}' and script.seen[1].temperature == 0.0


def test_two_invalid_answers_are_an_error_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([('{"rating": 0}', "stop"), ('{"rating": 6}', "stop")])
    with pytest.raises(ModelError, match=r"rating: 6 is greater than the maximum of 5"):
        _answer(monkeypatch, script, _request())
    assert script.emitted == []


def test_a_cut_answer_is_retried_with_bounded_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([('{"rating": 3, "notes": "la la la', "length"), ('{"rating": 3}', "stop")])
    raw = _answer(monkeypatch, script, _request())
    assert raw.text == '{"rating": 3}'
    first, retry = (r.response_format["json_schema"]["schema"] for r in script.seen)
    assert "maxLength" not in first["properties"]["notes"]
    assert retry["properties"]["notes"]["maxLength"] == 16  # max(16, 64 tokens // 4)


def test_cut_twice_is_returned_as_openai_does(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([('{"rating": 3, "no', "length"), ('{"rating": 3, "notes": "x', "length")])
    raw = _answer(monkeypatch, script, _request())
    assert raw.finish_reason == "length" and raw.text == '{"rating": 3, "notes": "x'


def test_plain_text_and_json_object_are_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script([("not json", "stop")])
    raw = _answer(monkeypatch, script, ChatRequest.of("Hi.", max_tokens=8))
    assert raw.text == "not json" and script.emitted == ["not json"] and raw.ttft_ms == 1.0
    script = Script([('{"a": 1}', "stop")])
    _answer(monkeypatch, script, ChatRequest.of("Hi.", response_format={"type": "json_object"}))
    assert len(script.seen) == 1


def test_every_choice_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [('{"rating": 1}', "stop"), ('{"rating": 0}', "stop"), ('{"rating": 3}', "stop")]
    script = Script(answers)
    raw = _answer(monkeypatch, script, _request(temperature=0.9, n=2))
    assert [raw.text, raw.choices[0].text] == ['{"rating": 1}', '{"rating": 3}']
