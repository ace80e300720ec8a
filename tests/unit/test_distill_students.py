"""Students on the synthetic task with the hashed-words embedder (no model files needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from duetto.distill.students.fewshot import FewShotStudent, demo_messages, vote_shares
from duetto.distill.students.head import HeadStudent, label_text
from duetto.distill.synthetic import HashedWords, synthetic


def test_head_learns_the_synthetic_intents_and_round_trips(tmp_path: Path) -> None:
    ds = synthetic(n_train=400, n_test=200)
    student = HeadStudent(ds.labels, embedder=HashedWords())
    student.fit([e.text for e in ds.train], [e.label for e in ds.train])
    labels, conf = student.predict([e.text for e in ds.test])
    acc = np.mean([p == e.label for p, e in zip(labels, ds.test, strict=True)])
    assert acc >= 0.85
    assert all(0.0 <= c <= 1.0 for c in conf)
    # Confident answers are more often right than unsure ones.
    right = np.array([p == e.label for p, e in zip(labels, ds.test, strict=True)])
    c = np.array(conf)
    assert right[c >= np.median(c)].mean() >= right[c < np.median(c)].mean()
    student.save(tmp_path / "head.pkl")
    again = HeadStudent.load(tmp_path / "head.pkl")
    assert again.predict([ds.test[0].text])[0] == labels[:1]
    assert label_text("card_arrival") == "card arrival"


def test_head_needs_fit_and_two_labels() -> None:
    with pytest.raises(RuntimeError):
        HeadStudent(embedder=HashedWords()).predict(["x"])
    with pytest.raises(ValueError):
        HeadStudent(embedder=HashedWords()).fit(["a", "b"], ["x", "x"])


def test_fewshot_vote_without_the_slm_and_pickles() -> None:
    ds = synthetic(n_train=300, n_test=100)
    student = FewShotStudent(ds.labels, k=5, embedder=HashedWords(), use_model=False)
    student.fit([e.text for e in ds.train], [e.label for e in ds.train])
    labels, conf = student.predict([e.text for e in ds.test])
    acc = np.mean([p == e.label for p, e in zip(labels, ds.test, strict=True)])
    assert acc >= 0.7 and all(0 < c <= 1.0 for c in conf)
    clone = pickle.loads(pickle.dumps(student))
    assert clone.predict([ds.test[0].text])[0] == labels[:1]


def test_vote_shares_and_prompt() -> None:
    shares = vote_shares(np.array([0.9, 0.6, 0.5]), ["a", "b", "a"])
    assert shares["a"] == pytest.approx(1.4 / 2.0) and sum(shares.values()) == pytest.approx(1.0)
    msgs = demo_messages("q?", [("t1", "a"), ("t2", "b")])
    assert "Label: b" in msgs[0]["content"] and msgs[-1]["content"].startswith("Query: q?")
