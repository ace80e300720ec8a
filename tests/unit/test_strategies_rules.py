"""Rules pin traffic before any learned scorer."""

from __future__ import annotations

import pytest

from duetto.errors import ConfigError
from duetto.messages import ChatRequest
from duetto.strategies.rules import Rule, Rules


def req(text: str, task: str | None = None, key: str | None = None) -> ChatRequest:
    meta = {"api_key": key} if key else {}
    return ChatRequest.of(text, task=task, metadata=meta)


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    rules = Rules(
        [
            Rule({"task": "math"}, "llm"),
            Rule({"max_chars": 20}, "slm"),
            {"when": {"api_key": ["vip", "ops"]}, "target": "llm"},
        ]
    )
    assert rules.match(req("a long math question, certainly", task="math")) == "llm"
    assert rules.match(req("short", task="math")) == "llm"  # order matters
    assert rules.match(req("short")) == "slm"
    assert rules.match(req("a long question about anything at all", key="ops")) == "llm"
    assert rules.match(req("a long question about anything at all", key="other")) is None


def test_all_conditions_of_a_rule_must_hold() -> None:
    rules = Rules([Rule({"task": ["intent", "faq"], "min_chars": 10, "max_chars": 30}, "slm")])
    assert rules.match(req("what is my balance", task="faq")) == "slm"
    assert rules.match(req("hi", task="faq")) is None
    assert rules.match(req("what is my balance" * 3, task="faq")) is None
    assert rules.match(req("what is my balance", task="math")) is None


def test_length_counts_every_turn() -> None:
    r = ChatRequest.from_dicts(
        [
            {"role": "user", "content": "x" * 40},
            {"role": "assistant", "content": "y" * 40},
            {"role": "user", "content": "ok?"},
        ]
    )
    assert Rules([Rule({"min_chars": 60}, "llm")]).match(r) == "llm"


def test_has_pii_uses_the_detector_only_when_needed() -> None:
    calls: list[str] = []

    def detector(text: str) -> list:  # type: ignore[type-arg]
        calls.append(text)
        from duetto.scoring.pii import regex_detect

        return regex_detect(text)

    rules = Rules([Rule({"task": "x"}, "a"), Rule({"has_pii": True}, "slm")], detector=detector)
    assert rules.match(req("write to ann@example.com")) == "slm"
    assert rules.match(req("nothing private here")) is None
    assert len(calls) == 2
    assert rules.match(req("anything", task="x")) == "a"
    assert len(calls) == 2  # the first rule matched: no detection needed
    assert Rules([Rule({"has_pii": False}, "llm")]).match(req("nothing private")) == "llm"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"when": {"colour": "red"}, "target": "a"}, "rules[0].when.colour"),
        ({"when": {"min_chars": -1}, "target": "a"}, "rules[0].when.min_chars"),
        ({"when": {"has_pii": "yes"}, "target": "a"}, "rules[0].when.has_pii"),
        ({"when": {"task": 3}, "target": "a"}, "rules[0].when.task"),
        ({"when": {}}, "rules[0].target"),
    ],
)
def test_bad_rules_name_the_bad_key(spec: dict, path: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as e:
        Rules([spec])
    assert e.value.path == path


def test_check_targets() -> None:
    rules = Rules([Rule({"task": "x"}, "a"), Rule({"task": "y"}, "zz")])
    rules.check_targets(["a", "zz"], "r")
    with pytest.raises(ConfigError) as e:
        rules.check_targets(["a", "b"], "r")
    assert e.value.path == "rules[1].target"
