"""Teachers: gold replay, constrained label decoding, the on-disk label cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from duetto.distill.teachers import (
    GoldTeacher,
    LabelTrie,
    LocalLLMTeacher,
    label_prompt,
    teacher_model_path,
)
from duetto.errors import ModelUnavailable

TOKENS = {"card_arrival": [1, 2], "card_lost": [1, 3], "pin": [4], "pin_reset": [4, 5]}


def logits_preferring(*tokens: int) -> object:
    """A fake model: each step's logits favour the next token of `tokens`."""
    fed: list[int | None] = []

    def next_logits(token: int | None) -> np.ndarray:
        fed.append(token)
        row = np.zeros(10)
        step = len(fed) - 1
        if step < len(tokens):
            row[tokens[step]] = 5.0
        return row

    next_logits.fed = fed  # type: ignore[attr-defined]
    return next_logits


def test_trie_decodes_only_labels_and_stops_when_one_remains() -> None:
    trie = LabelTrie.build(TOKENS)
    f = logits_preferring(1, 3)
    assert trie.decode(f) == "card_lost"
    assert f.fed == [None, 1]  # type: ignore[attr-defined]  # stops once one label is left
    # A token no label continues with cannot be chosen: the best allowed one is.
    assert trie.decode(logits_preferring(9, 9)) in TOKENS
    # A label that is a prefix of another: the shorter one when decoding stops there.
    assert LabelTrie.build({"pin": [4]}).decode(logits_preferring(4)) == "pin"


def test_gold_teacher_is_an_upper_bound() -> None:
    t = GoldTeacher({"q1": "a", "q2": "b"})
    assert t.label(["q2", "q1"]) == ["b", "a"] and t.upper_bound


def test_prompt_lists_every_label_and_out_of_scope() -> None:
    text = label_prompt(["a_b", "c"], "bank queries", "oos")
    assert "- a_b" in text and "- c" in text and "- oos" in text and "bank queries" in text


def test_local_teacher_answers_from_its_cache_without_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUETTO_CACHE", str(tmp_path))
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"not a real model")
    teacher = LocalLLMTeacher(model, ["a", "b"])
    path = teacher.cache_path()
    assert path.parent == tmp_path / "distill"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"text": "q1", "label": "b"}) + "\n{cut line")
    assert teacher.label(["q1", "q1"]) == ["b", "b"]
    assert teacher._state is None  # nothing was loaded
    # Another label list is another cache.
    assert LocalLLMTeacher(model, ["a", "c"]).cache_path() != path


def test_candidates_narrow_the_choice_to_the_nearest_intent_names(tmp_path: Path) -> None:
    from duetto.distill.synthetic import HashedWords

    labels = ["card_arrival", "exchange_rate", "pin_blocked", "top_up_failed"]
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"x")
    narrow = LocalLLMTeacher(
        model, labels, out_of_scope="oos", candidates=2, embedder=HashedWords()
    )
    (short,) = narrow.shortlist(["my pin is blocked"])
    assert len(short) == 3 and short[0] == "pin_blocked" and short[-1] == "oos"
    assert narrow.name.endswith("+top2")
    wide = LocalLLMTeacher(model, labels, out_of_scope="oos")
    assert wide.shortlist(["q"]) == [[*labels, "oos"]]
    # Narrowing changes the answers, so it is another cache.
    assert narrow.cache_path() != wide.cache_path()
    assert LocalLLMTeacher(model, labels, candidates=9).candidates == 0  # k >= labels: all


def test_local_teacher_fails_clearly_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        teacher_model_path(str(tmp_path / "missing.gguf"))
    teacher = LocalLLMTeacher(tmp_path / "missing.gguf", ["a"], use_cache=False)
    with pytest.raises(ModelUnavailable):
        teacher.label(["q"])
