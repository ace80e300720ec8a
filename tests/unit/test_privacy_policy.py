"""Pure privacy decisions: trusted targets, modes, entity filters and the policy table."""

from __future__ import annotations

import pytest

from duetto.errors import ConfigError
from duetto.models.base import ModelCard
from duetto.privacy.policy import Action, PolicyTable, PrivacyPolicy
from duetto.scoring.pii import Entity

REMOTE = ModelCard("big", location="remote", trusted=False)
LOCAL = ModelCard("small", location="local", trusted=True)
EMAIL = Entity("EMAIL_ADDRESS", 0, 11, "a@b.example", 1.0)
DATE = Entity("DATE_TIME", 12, 16, "1999", 0.6)


@pytest.mark.parametrize(
    ("mode", "action"),
    [("allow", Action.SEND), ("redact", Action.REDACT), ("local_only", Action.LOCAL)],
)
def test_modes_with_pii_and_an_untrusted_target(mode: str, action: Action) -> None:
    decision = PrivacyPolicy(mode).decide([EMAIL], REMOTE)  # type: ignore[arg-type]
    assert decision.action is action
    assert decision.entities == (EMAIL,)
    assert decision.leaks == (1 if mode == "allow" else 0)


@pytest.mark.parametrize("mode", ["allow", "redact", "local_only"])
def test_trusted_target_and_clean_text_go_as_is(mode: str) -> None:
    policy = PrivacyPolicy(mode)  # type: ignore[arg-type]
    assert policy.decide([EMAIL], LOCAL).action is Action.SEND
    assert policy.decide([], REMOTE).action is Action.SEND
    assert policy.decide([], REMOTE).leaks == 0


def test_entity_types_and_min_score_filter_what_counts() -> None:
    policy = PrivacyPolicy("local_only", entity_types=frozenset({"DATE_TIME"}), min_score=0.7)
    assert policy.decide([EMAIL, DATE], REMOTE).action is Action.SEND
    policy = PrivacyPolicy("local_only", entity_types=frozenset({"DATE_TIME"}))
    decision = policy.decide([EMAIL, DATE], REMOTE)
    assert decision.action is Action.LOCAL and decision.entities == (DATE,)


def test_table_most_specific_wins() -> None:
    table = PolicyTable.parse(
        {
            "default": "allow",
            "api_keys": {"k1": "local_only"},
            "routes": {"/support": {"mode": "redact", "entity_types": ["PERSON"]}},
            "strategies": {"cascade": "redact"},
        }
    )
    assert table.for_request().mode == "allow"
    assert table.for_request(strategy="cascade").mode == "redact"
    routed = table.for_request(route="/support", strategy="cascade")
    assert routed.entity_types == frozenset({"PERSON"})
    assert table.for_request(api_key="k1", route="/support").mode == "local_only"
    assert table.for_request(api_key="other").mode == "allow"


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        PolicyTable.parse({"routes": {"r1": "share_everything"}})
    assert e.value.path == "privacy.routes.r1"
    assert "'allow', 'redact' or 'local_only'" in e.value.message
    with pytest.raises(ConfigError) as e:
        PolicyTable.parse({"defaults": "redact", "routes": {"r": {"mode": "allow", "min": 1}}})
    assert e.value.errors == [
        ("privacy.routes.r.min", "extra inputs are not permitted"),
        ("privacy.defaults", "extra inputs are not permitted"),
    ]
    with pytest.raises(ConfigError) as e:
        PrivacyPolicy.parse({"entity_types": ["PERSON"]}, "p")  # the mapping form names its mode
    assert e.value.errors == [("p.mode", "field required")]
    with pytest.raises(ConfigError):
        PrivacyPolicy("nope")  # type: ignore[arg-type]


def test_one_default_policy_everywhere() -> None:
    """`allow` in the library, in a table without a default and in a config without privacy."""
    from duetto.config import parse_config

    assert PrivacyPolicy().mode == "allow"
    assert PolicyTable().default == PrivacyPolicy("allow")
    assert PolicyTable.parse(None).default.mode == "allow"
    assert PolicyTable.parse({"routes": {"r": "redact"}}).default.mode == "allow"
    cfg = parse_config({"models": {"m": {"backend": "fake"}}})
    assert cfg.privacy.table() == PolicyTable()


PASSWORD = Entity("PASSWORD", 20, 28, "hunter22", 0.9)


def test_a_policy_can_act_per_tier() -> None:
    secrets_only = PrivacyPolicy("redact", tiers=frozenset({"secret"}))
    decision = secrets_only.decide([EMAIL, DATE, PASSWORD], REMOTE)
    assert decision.action is Action.REDACT and decision.entities == (PASSWORD,)
    # an e-mail (contact) and a date (quasi) alone do not count for it: sent as is
    assert secrets_only.decide([EMAIL, DATE], REMOTE).action is Action.SEND


def test_tiers_from_config_and_a_bad_tier_named_by_path() -> None:
    policy = PrivacyPolicy.parse({"mode": "redact", "tiers": ["secret", "identifier"]})
    assert policy.tiers == frozenset({"secret", "identifier"})
    with pytest.raises(ConfigError) as err:
        PrivacyPolicy.parse({"mode": "redact", "tiers": ["secrets"]}, "privacy.default")
    assert "privacy.default.tiers" in str(err.value)
