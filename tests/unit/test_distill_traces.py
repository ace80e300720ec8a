"""Traces → student (`duetto.distill.traces`): which model answered in a trace, the JSONL
format, selection, dedupe, the held-out split, and a head student end to end on a JSONL file
of the synthetic task with the hashed-words embedder (no model files)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from duetto.calibrate import Target
from duetto.distill.selection import (
    Item,
    Selection,
    dedupe,
    looks_like_labels,
    read_labels,
    select,
    split_items,
)
from duetto.distill.students import load_student
from duetto.distill.students.fewshot import FewShotStudent
from duetto.distill.students.head import HeadStudent
from duetto.distill.synthetic import HashedWords, synthetic
from duetto.distill.trace_sources import (
    TraceExample,
    answering_path,
    is_store,
    read_jsonl,
    verifier_score,
)
from duetto.distill.traces import Options, distill_from_traces, token_f1
from duetto.errors import DataError, UserError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.scoring.verifiers import LogprobVerifier
from duetto.strategies.cascade import Cascade
from duetto.strategies.route import LengthScorer, Route
from duetto.testing.scripted import ScriptedModel
from duetto.trace import Step

SLM = ModelCard(name="slm")
MID = ModelCard(name="mid", location="remote", trusted=False)
LLM = ModelCard(name="llm", location="remote", trusted=False)


def leaf_names(path: list[Step]) -> str:
    return path[-1].name


# --------------------------------------------------------------------------- traces


async def test_the_answering_model_of_cascade_route_and_fallback_traces() -> None:
    conf = {"easy": 0.9, "mid": 0.2, "hard": 0.2}
    mid_conf = {"mid": 0.8, "hard": 0.1}
    slm = ScriptedModel(SLM, "slm says", logprob=lambda r, _t: math.log(conf[r.last_user]))
    mid = ScriptedModel(MID, "mid says", logprob=lambda r, _t: math.log(mid_conf[r.last_user]))
    # The LLM also verifies nothing here; it answers last, unverified.
    llm = ScriptedModel(LLM, "llm says")
    c = Cascade("c", [slm, mid, llm], LogprobVerifier(), threshold=[0.5, 0.5])
    easy, middle, hard = [await c.complete(ChatRequest.of(q)) for q in ("easy", "mid", "hard")]
    p = answering_path(Step.from_dict(easy.trace.to_dict()))  # through a stored dict
    assert leaf_names(p) == "slm" and p[-1].usage.remote_calls == 0
    assert verifier_score(p) == pytest.approx(0.9)
    p = answering_path(middle.trace)
    assert leaf_names(p) == "mid" and p[-1].usage.remote_calls == 1
    assert verifier_score(p) == pytest.approx(0.8)  # the level that verified the mid answer
    p = answering_path(hard.trace)
    assert leaf_names(p) == "llm" and verifier_score(p) is None  # last level: unverified
    # A route names its choice; the scorer's score is not a verifier score.
    route = Route("r", [slm, llm], LengthScorer(scale_chars=10), threshold=0.5)
    short, long = [await route.complete(ChatRequest.of(q)) for q in ("easy", "x" * 100)]
    assert leaf_names(answering_path(short.trace)) == "slm"
    assert leaf_names(answering_path(long.trace)) == "llm"
    assert verifier_score(answering_path(long.trace)) is None
    # The gateway's fallback node: the failed model first, the fallback's answer second.
    fb = Step(
        "gateway",
        kind="strategy",
        decision="fallback",
        extra={"fallback_to": "llm"},
        children=[Step("slm", decision="failed"), hard.trace.children[-1]],
    )
    assert leaf_names(answering_path(fb)) == "llm"
    # A fusion's judge picks candidate 0; the judge's own call is not the answer.
    fused = Step(
        "f",
        kind="strategy",
        extra={"chosen": 0},
        children=[Step("mid"), Step("llm"), Step("judge-model", role="judge")],
    )
    assert leaf_names(answering_path(fused)) == "mid"
    # No hint: the last child that is not a helper.
    plain = Step("p", kind="strategy", children=[Step("llm"), Step("slm", role="judge")])
    assert leaf_names(answering_path(plain)) == "llm"


# --------------------------------------------------------------------------- JSONL


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_format_aliases_and_errors_name_the_line(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"prompt": "p1", "answer": "a1", "task": "t", "model": "gpt", "score": 0.9},
            {
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "u1"},
                    {"role": "assistant", "content": "x"},
                    {"role": "user", "content": "p2"},
                ],
                "label": "a2",
                "accepted": False,
                "gold": "g2",
            },
            "",
        ],
    )
    a, b = read_jsonl(f)
    assert (a.prompt, a.answer, a.task, a.model, a.score, a.remote) == (
        "p1",
        "a1",
        "t",
        "gpt",
        0.9,
        True,
    )
    assert (b.prompt, b.answer, b.system, b.accepted, b.gold) == ("p2", "a2", "sys", False, "g2")
    for bad, words in [
        ("{not json", "line 1: invalid JSON"),
        ("[1, 2]", "line 1: not a JSON object"),
        (json.dumps({"answer": "x"}), "no prompt"),
        (json.dumps({"prompt": "x"}), "no answer"),
        (json.dumps({"prompt": "x", "answer": "y", "score": "high"}), "`score` must be"),
        (json.dumps({"prompt": "x", "answer": "y", "accepted": "yes"}), "`accepted` must be"),
    ]:
        with pytest.raises(DataError, match=words):
            read_jsonl(write_jsonl(tmp_path / "bad.jsonl", [bad]))
    with pytest.raises(DataError, match="trace file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_store_or_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("CREATE TABLE t (a)").connection.commit()
    assert is_store("sqlite:///x.db") and is_store("postgresql://h/db") and is_store(str(db))
    assert not is_store(str(tmp_path / "a.jsonl")) and is_store(str(tmp_path / "none.db"))
    renamed = tmp_path / "db.bin"
    db.rename(renamed)
    assert is_store(str(renamed))  # sniffed: SQLite header


def test_a_missing_or_foreign_sqlite_file_is_an_error_and_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(DataError, match="trace store not found"):
        distill_from_traces(f"sqlite:///{missing}", Selection("t"), "head", tmp_path / "o")
    assert not missing.exists()
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (a)").connection.commit()
    with pytest.raises(DataError, match="no duetto_traces table"):
        distill_from_traces(str(foreign), Selection("t"), "head", tmp_path / "o")
    with sqlite3.connect(foreign) as conn:  # untouched: still only its own table
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["t"]


# --------------------------------------------------------------------------- selection


def ex(prompt: str, answer: str, **kw: Any) -> TraceExample:
    return TraceExample(prompt=prompt, answer=answer, **{"remote": True, **kw})


def test_selection_counts_every_reason() -> None:
    rows = [
        ex("a", "x", task="t", model="llm"),
        ex("b", "x", task="t", model="llm", accepted=False),
        ex("c", "x", task="other", model="llm"),
        ex("d", "x", task="t", model="slm", remote=False),
        ex("e", "x", task="t", model="llm", score=0.4),
        ex("f", "x", task="t", model="llm", score=0.95),
        ex("mail <EMAIL_ADDRESS_1>", "x", task="t", model="llm", score=0.99),
        ex("g", "  ", task="t", model="llm"),
        ex("h", "x", task=None, model="llm"),  # a JSONL line without a task: any task
    ]
    kept, counts = select(rows, Selection("t"))
    assert [e.prompt for e in kept] == ["a", "e", "f", "h"]
    assert counts == {
        "records": 9,
        "not_accepted": 1,
        "other_task": 1,
        "not_teacher": 1,
        "redacted_dropped": 1,
        "empty_answer": 1,
        "selected": 4,
    }
    kept, counts = select(rows, Selection("t", min_score=0.9, redacted="keep"))
    assert [e.prompt for e in kept] == ["f", "mail <EMAIL_ADDRESS_1>"]
    assert counts["no_score"] == 3 and counts["below_min_score"] == 1
    assert counts["redacted_kept"] == 1
    # A named teacher: the local model's answers count, the remote one's do not.
    kept, _ = select(rows, Selection("*", teacher_models=("slm",)))
    assert [e.prompt for e in kept] == ["d"]
    # Labels: answers matched loosely to the canonical spelling; others left out.
    rows = [ex("1", " Card arrival. "), ex("2", "`card_arrival`"), ex("3", "no idea")]
    kept, counts = select(rows, Selection("*", labels=("card_arrival", "pin_blocked")))
    assert [e.answer for e in kept] == ["card_arrival", "card_arrival"]
    assert counts["not_a_label"] == 1


def test_dedupe_majority_then_latest_and_split_is_disjoint_and_seeded() -> None:
    rows = [
        ex("Hello  there", "a"),
        ex("hello there", "b"),
        ex("HELLO there", "b"),
        ex("x", "a"),
        ex("x", "c"),
        ex("y", "a.", gold="g"),
    ]
    items, stats = dedupe(rows, labels=True)
    assert [(i.prompt, i.answer, i.gold) for i in items] == [
        ("HELLO there", "b", None),
        ("x", "c", None),
        ("y", "a", "g"),
    ]
    assert stats == {"duplicates": 3, "conflicting_prompts": 2, "unique_prompts": 3}
    many = [Item(f"p{i}", "a") for i in range(50)]
    train, calib, test = split_items(many, 0.2, seed=3)
    assert (len(train), len(calib), len(test)) == (40, 5, 5)
    assert len({i.prompt for i in [*train, *calib, *test]}) == 50
    again = split_items(many, 0.2, seed=3)
    assert [i.prompt for i in again[2]] == [i.prompt for i in test]
    assert [i.prompt for i in split_items(many, 0.2, seed=4)[2]] != [i.prompt for i in test]
    with pytest.raises(DataError, match="only 3 distinct prompts"):
        split_items(many[:3], 0.2, seed=0)
    with pytest.raises(UserError, match="holdout"):
        split_items(many, 1.5, seed=0)


def test_small_helpers(tmp_path: Path) -> None:
    assert looks_like_labels(["a", "b", "a"] * 10)
    assert not looks_like_labels([f"a long free answer number {i}" for i in range(60)])
    assert not looks_like_labels(["line one\nline two"])
    assert token_f1("the cat sat", "the cat") == pytest.approx(0.8) and token_f1("", "") == 1.0
    assert read_labels("a, b,a") == ("a", "b") and read_labels(None) is None
    (tmp_path / "l.json").write_text('["x", "y"]')
    (tmp_path / "l.txt").write_text("x\ny\n\n")
    assert read_labels(str(tmp_path / "l.json")) == read_labels(str(tmp_path / "l.txt"))
    with pytest.raises(DataError, match="at least two"):
        read_labels("solo")


# --------------------------------------------------------------------------- end to end


def synthetic_jsonl(path: Path, n: int = 600, noise: int = 0) -> Path:
    """The synthetic intents as an LLM-answer log: gold labels are the teacher's answers
    (an upper bound), plus local answers and another task that selection must leave out."""
    ds = synthetic(n_train=n, n_test=10, seed=11)
    rows: list[dict[str, Any]] = []
    for i, e in enumerate(ds.train):
        rows.append(
            {
                "prompt": e.text,
                "answer": e.label,
                "task": "intent",
                "model": "gold",
                "gold": e.label,
                "id": f"r{i}",
            }
        )
    rows += [
        {
            "prompt": f"local {i}",
            "answer": "pin_blocked",
            "task": "intent",
            "model": "slm",
            "remote": False,
        }
        for i in range(7)
    ]
    rows += [{"prompt": f"chat {i}", "answer": "hi", "task": "chat"} for i in range(5)]
    rows += [
        {"prompt": f"write poem {i}", "answer": f"a poem: {i}", "task": "intent"}
        for i in range(noise)
    ]
    return write_jsonl(path, rows)


def test_head_student_from_a_jsonl_file_end_to_end(tmp_path: Path) -> None:
    src = synthetic_jsonl(tmp_path / "answers.jsonl")
    out = tmp_path / "run"
    opts = Options(embedder="hashed-words", seed=1)
    report = distill_from_traces(str(src), Selection("intent"), "head", out, opts)
    sel = report["selection"]
    assert sel["records"] == 612 and sel["other_task"] == 5 and sel["not_teacher"] == 7
    assert sel["selected"] == 600 and sel["unique_prompts"] + sel["duplicates"] == 600
    assert report["teacher"] == {"rule": "remote", "models": {"gold": 600}}
    assert report["labels"] == sorted(synthetic().labels)
    n = sel["unique_prompts"]
    assert report["split"]["train"] + report["split"]["calib"] + report["split"]["test"] == n
    test = report["test"]
    assert test["student_agreement"] >= 0.8  # the synthetic task is learnable
    assert 0.0 < test["local_share"] <= 1.0
    assert test["quality_vs_gold"] == test["quality"] and test["teacher_vs_gold"] == 1.0
    assert report["calib"]["quality"] >= 0.95 * 1.0 - 1e-9  # the target, met on calib
    assert report["threshold"] is not None and report["mode"] == "labels"
    # The files: the report as returned, and a student that loads and predicts.
    assert json.loads((out / "report.json").read_text()) == report
    student = load_student(out / "student.npz")
    assert isinstance(student, HeadStudent) and isinstance(student.embedder, HashedWords)
    assert student.predict(["card arrive delivery"])[0] == ["card_arrival"]
    # A stricter target answers no more locally.
    strict = distill_from_traces(
        str(src),
        Selection("intent"),
        "head",
        tmp_path / "strict",
        Options(embedder="hashed-words", seed=1, target=Target("quality", 1.0)),
    )
    assert strict["calib"]["local_share"] <= report["calib"]["local_share"]


def test_fewshot_student_and_limit(tmp_path: Path) -> None:
    src = synthetic_jsonl(tmp_path / "answers.jsonl", n=300)
    fs = FewShotStudent(sorted(synthetic().labels), k=5, embedder=HashedWords(), use_model=False)
    report = distill_from_traces(
        str(src), Selection("intent"), "fewshot", tmp_path / "fs", Options(limit=50), student=fs
    )
    assert report["split"]["train"] == 50 and len(fs.bank_texts) == 50
    assert report["test"]["student_agreement"] >= 0.6
    assert isinstance(load_student(tmp_path / "fs" / "student.npz"), FewShotStudent)


def test_clear_errors(tmp_path: Path) -> None:
    src = synthetic_jsonl(tmp_path / "answers.jsonl", n=100)
    out = tmp_path / "o"
    with pytest.raises(UserError, match="unknown student 'tree'"):
        distill_from_traces(str(src), Selection("intent"), "tree", out)
    with pytest.raises(
        DataError,
        match=r"no usable records for task 'nope'.*tasks present: "
        r"intent \(107\), chat \(5\)",
    ):
        distill_from_traces(str(src), Selection("nope"), "head", out)
    with pytest.raises(DataError, match="--min-score keeps only answers a verifier scored"):
        distill_from_traces(str(src), Selection("intent", min_score=0.5), "head", out)
    free = synthetic_jsonl(tmp_path / "free.jsonl", n=10, noise=60)
    with pytest.raises(DataError, match="look like free text"):
        distill_from_traces(
            str(free), Selection("intent"), "head", out, Options(embedder="hashed-words")
        )
    with pytest.raises(UserError, match="unknown embedder"):
        distill_from_traces(str(src), Selection("intent"), "head", out, Options(embedder="x"))
    assert not (out / "report.json").exists()


class StubLora:
    """Stands in for LoraStudent (no torch): records what the command asks of it."""

    last: StubLora | None = None

    def __init__(self, labels: list[str], out_dir: Path, **kw: Any) -> None:
        self.labels, self.out_dir, self.settings = list(labels), Path(out_dir), kw["settings"]
        self.task, self.system, self.gguf_path = kw["task"], "default", Path("base.gguf")
        self.tokenizer = type("Tok", (), {"encode": staticmethod(str.split)})()
        self.fitted: tuple[list[str], list[str]] | None = None
        StubLora.last = self

    def _ensure_loaded(self) -> None:
        pass

    def accuracy(self, texts: list[str], gold: list[str]) -> float:
        return 1.0 if self.fitted else 0.0

    def fit(self, texts: list[str], labels: list[str]) -> dict[str, Any]:
        self.fitted = (list(texts), list(labels))
        return {"steps": 3, "losses": [2.0, 1.0], "train_seconds": 0.1}

    def export(self) -> Path:
        (self.out_dir / "merged").mkdir(parents=True, exist_ok=True)
        return self.out_dir / "merged"


def test_lora_from_traces_picks_labels_or_generation_and_bounds_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duetto.distill.students.lora as lora
    import duetto.distill.traces as traces

    monkeypatch.setattr(lora, "LoraStudent", StubLora)
    # Label answers: the `duetto distill lora` path (constrained decoding over the labels).
    src = synthetic_jsonl(tmp_path / "labels.jsonl", n=400)
    report = distill_from_traces(str(src), Selection("intent"), "lora", tmp_path / "l")
    lo, stub = report["lora"], StubLora.last
    assert stub is not None and stub.fitted is not None
    assert report["mode"] == lo["mode"] == "labels" and stub.labels == sorted(synthetic().labels)
    assert report["split"]["train"] == 200 == len(stub.fitted[0])  # the default --limit
    assert lo["agreement_before"] == 0.0 and lo["agreement_after"] == 1.0
    assert report["student_path"] == str(tmp_path / "l" / "student")
    assert stub.out_dir == tmp_path / "l" / "student" and stub.task == "intent"
    # Free-text answers: greedy generation scored against the teacher before and after.
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief." if i % 4 else "Other"},
                {"role": "user", "content": f"question {i}"},
            ],
            "answer": f"answer number {i} is here",
            "task": "qa",
        }
        for i in range(60)
    ]
    gen = write_jsonl(tmp_path / "gen.jsonl", rows)
    answers = {f"question {i}": f"answer number {i} is here" for i in range(60)}

    def fake_generate(student: StubLora, texts: list[str], max_new: int) -> list[str]:
        return [answers[t] if student.fitted else "no idea" for t in texts]

    monkeypatch.setattr(traces, "generate", fake_generate)
    report = distill_from_traces(
        str(gen), Selection("qa"), "lora", tmp_path / "g", Options(limit=10, eval_limit=5)
    )
    lo, stub = report["lora"], StubLora.last
    assert stub is not None and stub.fitted is not None
    assert report["mode"] == lo["mode"] == "generation" and report["labels"] is None
    assert lo["train_examples"] == 10 and lo["eval_examples"] == 5
    assert lo["before"] == {"exact_match": 0.0, "token_f1": 0.0}
    assert lo["after"] == {"exact_match": 1.0, "token_f1": 1.0}
    assert stub.system == "Be brief." and stub.settings.max_tokens == 256
    assert lo["max_new_tokens"] == 5 + 4  # the longest reference, in tokens, plus 4
