from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from duetto.answers import choice_index
from duetto.errors import DataError
from duetto.eval.scorers import score, uses_letters
from duetto.eval.workload import WorkItem, demo_workload, load_workload, split
from duetto.scoring.pii import regex_detect


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_prompt_system_and_fields(tmp_path: Path) -> None:
    f = write_jsonl(
        tmp_path / "w.jsonl",
        [
            {
                "id": "q1",
                "prompt": "2+2?",
                "system": "Number only.",
                "reference": "4",
                "scorer": "numeric",
                "task": "math",
                "tags": ["hard"],
                "max_tokens": 12,
            },
            {"prompt": "Pick", "reference": "B", "scorer": "choice", "choices": ["x", "y"]},
        ],
    )
    a, b = load_workload(f)
    assert a.id == "q1" and a.task == "math" and a.tags == ("hard",)
    assert [m.role for m in a.request.messages] == ["system", "user"]
    assert a.request.max_tokens == 12 and a.request.task == "math"
    assert b.id == "w-2"  # default id: file stem and line
    assert b.choices == ("x", "y") and b.scorer == "choice"
    assert b.request.max_tokens == 256


def test_jsonl_messages_and_default_scorer(tmp_path: Path) -> None:
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "capital of France?"},
    ]
    f = write_jsonl(
        tmp_path / "w.jsonl",
        [
            {"messages": msgs, "system": "Be brief.", "reference": "Paris"},
            {"messages": msgs},
        ],
    )
    a, b = load_workload(f)
    assert a.request.messages[0].role == "system" and len(a.request.messages) == 4
    assert a.request.last_user == "capital of France?"
    assert a.scorer == "exact" and b.scorer == "none" and b.reference is None


def test_csv_workload(tmp_path: Path) -> None:
    f = tmp_path / "w.csv"
    f.write_text(
        "id,prompt,reference,scorer,choices,tags,task\n"
        'c1,"Which, one?",B,choice,red|green|blue,easy|pii,colour\n'
        'c2,Say hi,hi,contains,,"[""easy""]",\n',
        encoding="utf-8",
    )
    a, b = load_workload(f)
    assert a.request.last_user == "Which, one?"
    assert a.choices == ("red", "green", "blue") and a.tags == ("easy", "pii")
    assert b.tags == ("easy",) and b.choices == () and b.task is None


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"prompt": "a", "reference": "x"}, "not an object"], "line 2"),
        ([{"reference": "x"}], "neither 'prompt' nor 'messages'"),
        ([{"prompt": "a", "reference": "x", "scorer": "fuzzy"}], "scorer 'fuzzy'"),
        ([{"prompt": "a", "scorer": "numeric"}], "needs a 'reference'"),
        (
            [{"prompt": "a", "reference": "D", "scorer": "choice", "choices": ["x", "y"]}],
            "neither a choice nor a choice label",
        ),
        ([{"prompt": "a", "reference": "x", "max_tokens": "many"}], "max_tokens"),
        ([{"prompt": "a", "reference": "x", "colour": "red"}], "unknown field"),
        ([{"id": "same", "prompt": "a"}, {"id": "same", "prompt": "b"}], "duplicate id"),
        ([{"messages": [{"role": "robot", "content": "x"}]}], "role"),
    ],
)
def test_bad_rows_name_file_line_and_format(
    tmp_path: Path, rows: list[object], needle: str
) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_workload(f)
    msg = str(info.value)
    assert "bad.jsonl" in msg and "line " in msg and "expected" in msg
    assert needle in msg


def test_invalid_json_line_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "w.jsonl"
    f.write_text('{"prompt": "ok"}\n\n{"prompt": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3: not valid JSON"):
        load_workload(f)
    with pytest.raises(DataError, match="not found"):
        load_workload(tmp_path / "missing.jsonl")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(DataError, match="extension"):
        load_workload(tmp_path / "w.txt")


def _items(tasks: list[str | None]) -> list[WorkItem]:
    from duetto.messages import ChatRequest

    return [WorkItem(f"i{k}", ChatRequest.of(f"q{k}"), "r", t) for k, t in enumerate(tasks)]


def test_split_is_stratified_deterministic_and_disjoint() -> None:
    items = _items(["a"] * 10 + ["b"] * 6 + [None] * 4)
    calib, held = split(items, frac=0.5, seed=3)
    assert {i.id for i in calib} | {i.id for i in held} == {i.id for i in items}
    assert not {i.id for i in calib} & {i.id for i in held}
    assert Counter(i.task for i in calib) == Counter({"a": 5, "b": 3, None: 2})
    assert [i.id for i in calib] == [i.id for i in split(items, 0.5, seed=3)[0]]
    assert [i.id for i in calib] != [i.id for i in split(items, 0.5, seed=4)[0]]
    # input order is kept inside each part
    order = [i.id for i in items]
    assert [i.id for i in held] == sorted((i.id for i in held), key=order.index)
    c2, _ = split(items, frac=0.25)
    assert Counter(i.task for i in c2)["a"] == 3  # round(2.5) half-up
    with pytest.raises(ValueError):
        split(items, frac=1.5)


# --- the built-in demo workload -----------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> list[WorkItem]:
    return demo_workload()


def test_demo_size_mix_and_fields(demo: list[WorkItem]) -> None:
    assert len(demo) >= 160
    assert len({i.id for i in demo}) == len(demo)
    easy = sum("easy" in i.tags for i in demo)
    hard = sum("hard" in i.tags for i in demo)
    assert easy + hard == len(demo)
    assert 0.5 <= easy / len(demo) <= 0.6
    assert 20 <= sum("pii" in i.tags for i in demo) <= 30
    for item in demo:
        assert item.task and item.reference and item.scorer in {"choice", "numeric", "contains"}
        assert len(item.request.last_user) <= 400
        assert item.request.messages[0].role == "system"
    tasks = Counter(i.task for i in demo)
    assert {"intent", "sentiment", "extraction", "facts", "math", "reasoning"} <= set(tasks)


def test_demo_pii_tags_match_the_detector(demo: list[WorkItem]) -> None:
    # Tagged items carry entities the dependency-free rules find; the others carry none (the
    # rules: Presidio+NER also flags dates, places and first names in the logic items).
    for item in demo:
        assert (len(regex_detect(item.request.text)) > 0) == ("pii" in item.tags), item.id


def test_demo_references_score_and_distractors_do_not(demo: list[WorkItem]) -> None:
    for item in demo:
        if item.scorer == "choice":
            k = choice_index(item.reference or "", item.choices)
            assert k is not None
            assert score(item, item.choices[k]) == 1.0, item.id
            wrong = [c for j, c in enumerate(item.choices) if j != k]
            assert all(score(item, w) == 0.0 for w in wrong), item.id
            if uses_letters(item):
                assert score(item, f"{chr(65 + k)}) {item.choices[k]}") == 1.0
                assert score(item, f"{chr(65 + (k + 1) % len(item.choices))}") == 0.0
        elif item.scorer == "numeric":
            assert score(item, f"Working...\nAnswer: {item.reference}") == 1.0, item.id
            assert score(item, "Answer: 123456") == 0.0
        else:
            first = (item.reference or "").split("|")[0]
            assert score(item, f"It is {first}.") == 1.0, item.id
            assert score(item, "I don't know") == 0.0


def test_demo_choice_letters_are_balanced(demo: list[WorkItem]) -> None:
    letters = Counter(i.reference for i in demo if i.task in ("facts", "reasoning"))
    # No single letter wins most of the time: always answering "A" must not pass.
    assert max(letters.values()) / sum(letters.values()) < 0.4
