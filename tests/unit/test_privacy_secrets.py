"""Secrets and credentials: each type with its span, the decided non-secrets, and the loaders of
the three public secret sets. Every example here is written for the tests (none is copied from
the evaluation sets); the secrets are made up."""

from __future__ import annotations

import base64
import json
from itertools import pairwise
from pathlib import Path

import pytest

from duetto.privacy.evaluate import LabelledText
from duetto.privacy.secrets import (
    SECRET_TYPES,
    TIER,
    detect_secrets_available,
    find_secrets,
    shannon_entropy,
)
from duetto.privacy.secrets_eval import (
    SET_NAMES,
    covered,
    gold_type,
    load_secret_sets,
    score_set,
)
from duetto.scoring.pii import Entity

BOTH = pytest.mark.parametrize("use_ds", [True, False], ids=["detect-secrets", "rules-only"])


def spans(text: str, use_ds: bool = True) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in find_secrets(text, use_detect_secrets=use_ds)]


def values(text: str, use_ds: bool = True) -> list[str]:
    return [t for _, t in spans(text, use_ds)]


def test_types_and_tier() -> None:
    assert TIER == "secret"
    assert {
        "PASSWORD",
        "API_KEY",
        "PRIVATE_KEY",
        "JWT",
        "CONNECTION_STRING",
        "SECRET",
    } == SECRET_TYPES


@BOTH
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("My password is Tr0ub4dor&3 so keep it safe.", "Tr0ub4dor&3"),
        ("the wifi password: Kettle9Blue", "Kettle9Blue"),
        ("db_password = s3cr3t-Value\nport = 5432\n", "s3cr3t-Value"),
        ('  password: "plain words here"\n', "plain words here"),
        ('{"client_secret": "zq8-Lm2", "name": "demo"}', "zq8-Lm2"),
        ("SMTP_PASS=Winter2024!\n", "Winter2024!"),
        ("<password>Kettle9Blue</password>", "Kettle9Blue"),
        ('<add key="Password" value="Fjord#31"/>', "Fjord#31"),
        ("mysql -u admin -pHarbor77 shop", "Harbor77"),
        ("tool sync --password=Lantern88 --verbose", "Lantern88"),
        ("CREATE USER bob IDENTIFIED BY 'Maple-42x';", "Maple-42x"),
        ("the default password is 'glacier' for the guest account", "glacier"),
        ("PIN 4812 for the side door", "4812"),
        ("비밀번호: Haneul2024", "Haneul2024"),
        ("contraseña = Sol-de-Mayo9", "Sol-de-Mayo9"),
    ],
)
def test_passwords_value_span(text: str, value: str, use_ds: bool) -> None:
    found = find_secrets(text, use_detect_secrets=use_ds)
    assert [e.text for e in found] == [value]
    assert found[0].type == "PASSWORD"
    assert text[found[0].start : found[0].end] == value  # the value, not the key name


def test_credential_call_redacts_its_string_arguments() -> None:
    # decided: the user name goes too (an identifier; recall first)
    text = 'cred = new NetworkCredential("svc-backup", "Quartz&Pine5");'
    assert values(text) == ["svc-backup", "Quartz&Pine5"]


def test_cli_user_flag_only_with_a_password() -> None:
    assert values("curl -u alice:Orchid55 https://api.example.org") == ["alice:Orchid55"]
    assert values("mysql -u admin -h db.local shop") == []


@BOTH
@pytest.mark.parametrize(
    "key",
    [
        "ghp_" + "Zx8Qm2Lr7Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2Ue8",
        "AKIA" + "QX7RZ2MB4WN8KT3P",
        "sk-proj-" + "Lq8Zr2Wm5Tx9Kp3Vn7Yb1Hd4Fs6Jc0Ga",
        "xoxb-" + "20415836-73920184-Zq8Rm2Lx7Wt4Yp1Kd9Hs3Nv",
        "glpat-" + "Qm7Zr2Lx8Wt4Yp1Kd9Hs",
        "AIza" + "SyQ7Zr2Lx8Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2U",
    ],
)
def test_provider_keys_in_a_sentence(key: str, use_ds: bool) -> None:
    text = f"Here is the key {key} that stopped working yesterday."
    assert spans(text, use_ds) == [("API_KEY", key)]


def _pem(body_lines: int = 4) -> str:
    body = "\n".join(
        base64.b64encode(bytes(range(i * 7, i * 7 + 48))).decode() for i in range(body_lines)
    )
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


@BOTH
def test_private_key_block_whole(use_ds: bool) -> None:
    pem = _pem()
    text = f"Why does ssh reject this key?\n{pem}\nThanks!"
    found = find_secrets(text, use_detect_secrets=use_ds)
    assert [(e.type, e.text) for e in found] == [("PRIVATE_KEY", pem)]


def test_private_key_cut_off_takes_the_base64_lines() -> None:
    pem = _pem().rsplit("\n", 1)[0]  # no END line
    text = f"{pem}\n\nwhat is wrong with it?"
    found = find_secrets(text)
    assert [(e.type, e.text) for e in found] == [("PRIVATE_KEY", pem)]


def _b64url(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@BOTH
def test_jwt(use_ds: bool) -> None:
    jwt = ".".join(
        [
            _b64url({"alg": "HS256", "typ": "JWT"}),
            _b64url({"sub": "4821", "name": "Ada", "iat": 1700000000}),
            "Qm7Zr2Lx8Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2Ue8Rt1Yw",
        ]
    )
    text = f"Decode this for me: {jwt} please"
    assert spans(text, use_ds) == [("JWT", jwt)]


@BOTH
def test_connection_string_credentials(use_ds: bool) -> None:
    text = "DATABASE_URL is postgres://app:p4ss@word@db.internal:5432/app today"
    assert spans(text, use_ds) == [("CONNECTION_STRING", "app:p4ss@word")]
    assert find_secrets("see https://example.com:8080/docs/start") == []


@BOTH
def test_high_entropy_token_alone_and_near_a_key_word(use_ds: bool) -> None:
    assert spans("the value 9fQ2xLr7Wm3KpZ8vT1nB appears in the log", use_ds) == [
        ("SECRET", "9fQ2xLr7Wm3KpZ8vT1nB")
    ]
    # short and low-entropy tokens count only after a key word on the same line
    assert values("session cookie d8e2a91f0c here", use_ds) == ["d8e2a91f0c"]
    assert find_secrets("order reference d8e2a91f0c here", use_detect_secrets=use_ds) == []


@pytest.mark.parametrize(
    "text",
    [
        "Please reset my password, I forgot it.",
        "The key to success is patience.",
        "I need to change my PIN ASAP",
        "Your token is valid until Friday.",
        "password: ********",
        'password = os.environ["DB_PASSWORD"]',
        "password=${DB_PASS}",
        "See /usr/local/lib/python3.11/site-packages/numpy/core for the module.",
        "max_retry_count_2024_v2 = 5",
        "Call +44 20 7946 0958 or mail ada.lovelace1815@example.org",
        "My IBAN is GB33BUKB20201555555555, please pay by Friday.",
        "El paciente de 53 años ingresó el 10/10/2019 en Madrid.",
    ],
)
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert find_secrets(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "return min(ok, key=lambda p: (p.cost_per_1k, -p.quality))",
        "eos_token=model.token_get_text(2),",
        'if key == "budget_usd_per_1k": continue',
        "Download Qwen2.5-Coder-1.5B-Instruct and SmolLM2-135M-Instruct first.",
        "await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)",
    ],
)
def test_code_and_model_names_are_not_secrets(text: str) -> None:
    assert find_secrets(text) == []


def test_auth_header_token() -> None:
    text = "GET /v1/items HTTP/1.1\nAuthorization: Bearer kX9.Qm_2-Lr7\n"
    assert values(text) == ["kX9.Qm_2-Lr7"]


def test_decided_uuid_and_hash_contexts() -> None:
    # named as an id, commit or checksum: not a secret
    assert find_secrets("request id 3f2b8c1e-9a4d-4e7b-b2c1-7d9e0f1a2b3c failed") == []
    assert find_secrets("Fixed in commit 4f9c2e1b7a3d5f6e8c0b9a1d2e3f4a5b6c7d8e9f.") == []
    assert find_secrets("sha256 checksum: " + "ab12" * 16) == []
    # unnamed or named as a key: redacted (recall first; API keys are often UUIDs or hex)
    uuid = "3f2b8c1e-9a4d-4e7b-b2c1-7d9e0f1a2b3c"
    assert values(f"use {uuid} to log in") == [uuid]
    assert values(f"api_key = {uuid}") == [uuid]
    assert values("commit abc but the token is 4f9c2e1b7a3d5f6e8c0b9a1d") == [
        "4f9c2e1b7a3d5f6e8c0b9a1d"
    ]


def test_spans_are_sorted_and_disjoint() -> None:
    text = "pwd=Harbor77 and token ghp_Zx8Qm2Lr7Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2Ue8 end"
    found = find_secrets(text)
    assert [e.text for e in found] == ["Harbor77", "ghp_Zx8Qm2Lr7Wt4Yp1Kd9Hs3Nv6Bf0Jc5Ga2Ue8"]
    assert all(a.end <= b.start for a, b in pairwise(found))
    assert all(e.type in SECRET_TYPES and 0 < e.score <= 1 for e in found)
    assert find_secrets("") == []


def test_detect_secrets_is_optional() -> None:
    # with or without the library the key-word and shape rules give the same spans here
    text = "export SLACK_TOKEN=xoxb-20415836-73920184-Zq8Rm2Lx7Wt4Yp1Kd9Hs3Nv"
    assert find_secrets(text, use_detect_secrets=False) == find_secrets(text)
    assert isinstance(detect_secrets_available(), bool)


def test_entropy() -> None:
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


# --- the evaluation ----------------------------------------------------------------------------


def test_gold_type_from_rule_names() -> None:
    assert gold_type("PEM Private Key") == "PRIVATE_KEY"
    assert gold_type("JSON Web Token") == "JWT"
    assert gold_type("URL Credentials") == "CONNECTION_STRING"
    assert gold_type("CMD Password") == "PASSWORD"
    assert gold_type("Slack Token") == "API_KEY"


def test_score_set_counts_any_type_covered_and_negatives() -> None:
    text = "pwd=Harbor77 and nothing else"
    gold = Entity("PASSWORD", 4, 12, "Harbor77")
    wide = Entity("API_KEY", 0, 8, "pwd=Harb")  # overlaps but leaves "or77"
    assert covered(gold, [wide]) is False
    assert covered(gold, [wide, Entity("SECRET", 8, 12, "or77")]) is True
    samples = [
        LabelledText(text, (gold,)),
        LabelledText("no secret in here at all", ()),
        LabelledText("a stray api_key = Lantern88 in a negative", ()),
    ]
    r = score_set(samples, find_secrets)
    assert (r["gold"], r["any_type_recall"], r["covered_recall"]) == (1, 1.0, 1.0)
    assert (r["negative_texts"], r["detections_on_negatives"], r["negative_texts_flagged"]) == (
        2,
        1,
        1,
    )


@pytest.mark.shared_data
def test_load_secret_sets_reads_each_set(shared_datasets: Path) -> None:
    if not (shared_datasets / "pii_eval" / "CredSweeper").is_dir():
        pytest.skip(f"pii_eval secret sets not found under {shared_datasets}")
    notes: dict[str, dict[str, int]] = {}
    sets = load_secret_sets(shared_datasets, notes)
    assert set(sets) == set(SET_NAMES)
    counts = {name: (len(s), sum(len(x.spans) for x in s)) for name, s in sets.items()}
    assert counts == {
        "credsweeper": (183, 814),
        "noseyparker": (380, 383),
        "kingfisher": (1357, 1361),
        "noseyparker_negatives": (143, 0),
        "kingfisher_negatives": (22, 0),
    }
    assert notes["credsweeper"]["binary_files_skipped"] == 46
    for samples in sets.values():
        for s in samples:
            assert all(s.text[g.start : g.end] == g.text for g in s.spans)
