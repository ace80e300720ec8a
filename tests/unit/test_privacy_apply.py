"""Carrying out a privacy decision on a request (duetto.privacy.apply), the `privacy:` config
forms and the gateway settings built from them."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from duetto.config import parse_config
from duetto.errors import ConfigError
from duetto.gateway.settings import GatewaySettings
from duetto.messages import ChatRequest, Message
from duetto.models.base import ModelCard
from duetto.privacy.apply import PrivacyPlan, detect_messages, plan_request, use_detector
from duetto.privacy.policy import Action, PrivacyPolicy
from duetto.privacy.rules import rules_detect
from duetto.scoring import pii
from duetto.scoring.pii import regex_detect

REMOTE = ModelCard("llm-card", location="remote", trusted=False)
LOCAL = ModelCard("slm-card")
EMAIL, SSN, PHONE = "ana.lopez@example.org", "123-45-6789", "+1 415 555 0100"


def conversation() -> ChatRequest:
    return ChatRequest(
        messages=(
            Message("system", "You help the support team."),
            Message("user", f"I am {EMAIL}, my SSN is {SSN}."),
            Message("assistant", "Thanks, noted."),
            Message("user", f"Call me at {PHONE} or write to {EMAIL}."),
        )
    )


def plan(
    policy: str | dict[str, Any], target: ModelCard = REMOTE, request: ChatRequest | None = None
) -> PrivacyPlan:
    req = request or conversation()
    return plan_request(
        req, PrivacyPolicy.parse(policy), target, detect_messages(req, regex_detect)
    )


def test_redact_hides_every_value_and_restores_them() -> None:
    p = plan("redact")
    assert p.action is Action.REDACT and not p.local
    sent = json.dumps([m.to_dict() for m in p.request.messages])
    for value in (EMAIL, SSN, PHONE):
        assert value not in sent
    # one mapping for the whole conversation: the same value keeps its placeholder
    assert sent.count("<EMAIL_ADDRESS_1>") >= 2 and "<EMAIL_ADDRESS_2>" not in sent
    assert set(p.mapping.values()) == {EMAIL, SSN, PHONE}
    # the note asking the model to keep placeholders goes into the existing system message
    system = p.request.messages[0]
    assert system.role == "system" and system.content.startswith("You help the support team.")
    assert "placeholders" in system.content
    assert len(p.request.messages) == len(conversation().messages)
    answer = "Dear <EMAIL_ADDRESS_1>, we will call <PHONE_NUMBER_1>. <UNKNOWN_9> stays."
    assert p.restore(answer) == f"Dear {EMAIL}, we will call {PHONE}. <UNKNOWN_9> stays."
    assert p.decision.leaks == 0


def test_streamed_placeholder_split_across_deltas_is_restored() -> None:
    p = plan("redact")
    restorer = p.restorer()
    shown = [restorer.feed(d) for d in ("Mail <EMAIL_", "ADDRE", "SS_1> and <US", "_SSN_1>!")]
    shown.append(restorer.flush())
    assert "".join(shown) == f"Mail {EMAIL} and {SSN}!"
    assert not any("<EMAIL" in s for s in shown)


def test_summary_counts_types_never_values() -> None:
    summary = plan("redact").summary()
    assert summary["action"] == "redact" and summary["policy"] == "redact"
    assert summary["entities"] == {"EMAIL_ADDRESS": 2, "US_SSN": 1, "PHONE_NUMBER": 1}
    assert summary["placeholders"] == 3 and summary["leaks"] == 0
    text = json.dumps(summary)
    assert all(v not in text for v in (EMAIL, SSN, PHONE))


def test_local_only_keeps_the_request_unchanged_for_the_local_model() -> None:
    p = plan("local_only")
    assert p.local and p.action is Action.LOCAL
    assert p.request == conversation() and not p.mapping
    assert p.summary()["leaks"] == 0


def test_a_trusted_target_or_a_clean_request_is_sent_as_is() -> None:
    trusted = plan("local_only", target=LOCAL)
    assert trusted.action is Action.SEND and trusted.request == conversation()
    clean = ChatRequest.of("What is the capital of France?", system="Be brief.")
    p = plan("redact", request=clean)
    assert p.action is Action.SEND and p.request == clean and not p.mapping


def test_allow_sends_and_counts_the_leaks() -> None:
    p = plan("allow")
    assert p.action is Action.SEND and p.request == conversation()
    assert p.decision.leaks == 4


def test_entity_types_limit_what_is_redacted() -> None:
    p = plan({"mode": "redact", "entity_types": ["US_SSN"]})
    sent = json.dumps([m.to_dict() for m in p.request.messages])
    assert SSN not in sent and EMAIL in sent and PHONE in sent
    assert list(p.mapping) == ["<US_SSN_1>"]


def test_use_detector_installs_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii, "_detector", pii._detector)  # restored after the test
    assert use_detector("regex") == "regex" and pii._detector is rules_detect

    import duetto.privacy.presidio as presidio

    def missing(*_: Any) -> None:
        raise ConfigError("the Presidio detector needs the `privacy` extra")

    monkeypatch.setattr(presidio, "install", missing)
    pii.set_detector(lambda text: [])
    assert use_detector("auto") == "regex" and pii._detector is rules_detect
    with pytest.raises(ConfigError, match=r"privacy\.detector"):
        use_detector("presidio")


MODELS = {
    "slm": {"backend": "fake"},
    "llm": {"backend": "fake", "card": {"location": "remote", "trusted": False}},
}


def test_privacy_config_old_and_table_forms() -> None:
    old = parse_config({"models": MODELS, "privacy": {"policy": "redact"}})
    assert old.privacy.table().default.mode == "redact"
    assert parse_config({"models": MODELS}).privacy.table().default.mode == "allow"
    cfg = parse_config(
        {
            "models": MODELS,
            "strategies": {"r": {"mode": "route", "models": ["slm", "llm"], "threshold": 0.5}},
            "gateway": {"keys": [{"name": "hospital", "key_sha256": "0" * 64}]},
            "privacy": {
                "default": {"mode": "redact", "min_score": 0.5},
                "api_keys": {"hospital": "local_only"},
                "routes": {"llm": "allow"},
                "strategies": {"r": {"mode": "redact", "entity_types": ["US_SSN"]}},
                "detector": "regex",
            },
        }
    )
    table = cfg.privacy.table()
    assert table.for_request(api_key="hospital", route="llm").mode == "local_only"
    assert table.for_request(api_key="other", route="llm").mode == "allow"
    assert table.for_request(route="r", strategy="r").entity_types == frozenset({"US_SSN"})
    assert table.for_request(route="slm").min_score == 0.5
    settings = GatewaySettings.from_config(cfg)
    assert settings.privacy == table and settings.detector == "regex"
    assert settings.local_model == "slm" and settings.redact_store  # default is not allow


@pytest.mark.parametrize(
    ("privacy", "where"),
    [
        ({"policy": "redact", "default": "allow"}, "privacy"),
        ({"default": "forget"}, "privacy.default"),
        ({"routes": {"nope": "allow"}}, "privacy.routes.nope"),
        ({"strategies": {"llm": "allow"}}, "privacy.strategies.llm"),  # a model, not a strategy
        ({"api_keys": {"ghost": "local_only"}}, "privacy.api_keys.ghost"),
        ({"api_keys": {}, "detector": "spacy"}, "privacy.detector"),
    ],
)
def test_privacy_config_errors_name_the_key(privacy: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"models": MODELS, "privacy": privacy})
    assert str(err.value).startswith(where)


def test_placeholders_are_not_counted_as_leaks() -> None:
    # an NER model may tag the word inside a placeholder; the privacy axis must not count it
    def tags_placeholder_words(text: str) -> list[pii.Entity]:
        found = regex_detect(text)
        at = text.find("STREET_ADDRESS_1")
        if at >= 0:
            found.append(pii.Entity("LOCATION", at, at + 16, "STREET_ADDRESS_1"))
        return found

    count = partial(pii.count_pii, detector=tags_placeholder_words)
    assert count("I live at <STREET_ADDRESS_1>, mail <EMAIL_ADDRESS_1>.") == 0
    assert count(f"I live at STREET_ADDRESS_1, mail {EMAIL}.") == 2


def test_a_count_never_depends_on_the_installed_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    # count_pii counts with the detector it is given, whatever an earlier caller installed
    monkeypatch.setattr(pii, "_detector", lambda text: [])
    assert pii.detect(f"mail {EMAIL}") == []
    assert pii.count_pii(f"mail {EMAIL}", regex_detect) == 1
    assert pii.count_pii("", regex_detect) == 0
