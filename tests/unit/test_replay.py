from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from duetto.errors import DataError, UserError
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.replay import ReplayModel

CARD = ModelCard(
    "gpt4-replay", location="remote", trusted=False, price_in_per_mtok=10.0, price_out_per_mtok=30.0
)


async def test_lookup_by_prompt_key_and_item_id() -> None:
    keyed = ChatRequest.of("what is 2+2?", max_tokens=16)
    model = ReplayModel(
        CARD,
        {
            "capital of France?": {"response": "Paris", "score": 1.0},
            keyed.key(): "4",
            "item-7": {"response": "seven", "score": 0.0},
        },
    )
    assert (await model.complete(ChatRequest.of("capital of France?"))).text == "Paris"
    assert (await model.complete(keyed)).text == "4"
    by_id = ChatRequest.of("a prompt nobody recorded", metadata={"item_id": "item-7"})
    assert (await model.complete(by_id)).text == "seven"
    assert model.hits == 3


async def test_item_id_wins_over_prompt() -> None:
    model = ReplayModel(CARD, {"q": "by prompt", "id1": "by id"})
    request = ChatRequest.of("q", metadata={"item_id": "id1"})
    assert (await model.complete(request)).text == "by id"


async def test_missing_entry_is_a_user_error_naming_the_prompt() -> None:
    model = ReplayModel(CARD, {"known": "x"})
    with pytest.raises(UserError, match="how tall is Everest"):
        await model.complete(ChatRequest.of("how tall is Everest?"))
    with pytest.raises(UserError, match="'id-9'"):
        await model.complete(ChatRequest.of("other", metadata={"item_id": "id-9"}))


async def test_recorded_score_tokens_and_cost() -> None:
    model = ReplayModel(
        CARD,
        {
            "a": {"response": "yes", "score": 0.75, "tokens_in": 120, "tokens_out": 30},
            "b": {"response": "no", "score": None, "cost": 0.5},
        },
    )
    a = await model.complete(ChatRequest.of("a"))
    assert a.trace.extra["recorded_score"] == 0.75
    assert a.score is None  # ground truth must not reach strategies as a confidence
    assert (a.usage.tokens_in, a.usage.tokens_out) == (120, 30)
    assert a.usage.cost_usd == pytest.approx(CARD.cost(120, 30))
    assert a.usage.remote_calls == 1 and a.usage.bytes_sent == 0
    b = await model.complete(ChatRequest.of("b"))
    assert b.trace.extra["recorded_score"] is None
    assert b.usage.cost_usd == 0.5 and b.trace.usage.cost_usd == 0.5
    assert b.trace.total().cost_usd == 0.5


async def test_stream_replays_the_same_text() -> None:
    model = ReplayModel("r", {"q": "recorded answer"})
    chunks = [c async for c in model.stream(ChatRequest.of("q"))]
    final = chunks[-1].response
    assert final is not None and final.text == "recorded answer"
    assert "".join(c.delta for c in chunks) == "recorded answer"


async def test_from_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    rows = [
        {"item_id": "g1", "prompt": "1+1?", "response": "2", "score": 1.0, "tokens_out": 1},
        {"prompt": "2+3?", "response": "6", "score": 0.0},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    model = ReplayModel.from_jsonl(CARD, path)
    assert len(model) == 3  # g1 is reachable by id and by prompt
    r = await model.complete(ChatRequest.of("whatever", metadata={"item_id": "g1"}))
    assert r.text == "2" and r.usage.tokens_out == 1 and r.trace.extra["recorded_score"] == 1.0
    r = await model.complete(ChatRequest.of("2+3?"))
    assert r.text == "6" and r.trace.extra["recorded_score"] == 0.0


def test_from_jsonl_custom_fields(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text(json.dumps({"question": "q1", "answer": "a1", "correct": 1}) + "\n")
    model = ReplayModel.from_jsonl(
        "r", path, prompt_field="question", response_field="answer", score_field="correct"
    )
    assert model.lookup(ChatRequest.of("q1")) == {"response": "a1", "score": 1}


def test_bad_jsonl_is_a_data_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2"):
        ReplayModel.from_jsonl("r", path)
    path.write_text('{"response": "no key"}\n')
    with pytest.raises(DataError, match="row 1"):
        ReplayModel.from_jsonl("r", path)
    with pytest.raises(DataError, match="not found"):
        ReplayModel.from_jsonl("r", tmp_path / "absent.jsonl")


@pytest.mark.shared_data
async def test_replays_real_gpt4_answers_on_gsm8k(shared_datasets: Path) -> None:
    path = shared_datasets / "routellm_evals" / "gsm8k" / "gsm8k_responses.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gpt4 = "gpt-4-1106-preview"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [row for _, row in zip(range(50), csv.DictReader(fh), strict=False)]
    model = ReplayModel.from_rows(
        CARD,
        (
            {
                "prompt": r["prompt"],
                "response": r[f"{gpt4}_response"],
                "score": float(r[gpt4] == "True"),
            }
            for r in rows
        ),
    )
    scores = []
    for row in rows:
        response = await model.complete(ChatRequest.of(row["prompt"]))
        assert response.text == row[f"{gpt4}_response"]
        scores.append(response.trace.extra["recorded_score"])
    assert set(scores) <= {0.0, 1.0}
    assert sum(scores) == sum(r[gpt4] == "True" for r in rows)
