"""Students on the synthetic task with the hashed-words embedder (no model files needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from duetto.distill.students import load_student, save_student
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
    path = student.save(tmp_path / "head")
    assert path.name == "head.npz"
    again = HeadStudent.load(path)
    assert isinstance(again.embedder, HashedWords)
    assert again.predict([e.text for e in ds.test]) == (labels, conf)  # the same fit, reloaded
    assert label_text("card_arrival") == "card arrival"


def test_head_novelty_lowers_confidence_on_queries_unlike_its_examples() -> None:
    ds = synthetic(n_train=400, n_test=300, oos=True)
    # Teach it without the off-topic examples: the softmax alone is still sure of some of them.
    train = [e for e in ds.train if e.label != "oos"]
    plain = HeadStudent(ds.labels, embedder=HashedWords())
    aware = HeadStudent(ds.labels, embedder=HashedWords(), novelty=True, out_of_scope="oos")
    for student in (plain, aware):
        student.fit([e.text for e in train], [e.label for e in train])
    texts = [e.text for e in ds.test]
    off = np.array([e.label == "oos" for e in ds.test])
    labels_p, conf_p = plain.predict(texts)
    labels_a, conf_a = aware.predict(texts)
    assert labels_p == labels_a  # the same answers, only the confidence changes
    assert all(a <= p + 1e-9 for a, p in zip(conf_a, conf_p, strict=True))

    def gap(conf: list[float]) -> float:  # in-scope minus off-topic mean confidence
        c = np.array(conf)
        return float(c[~off].mean() - c[off].mean())

    assert gap(conf_a) > gap(conf_p)
    # Traces labelled out-of-scope are not "known" examples.
    aware.fit([e.text for e in ds.train], [e.label for e in ds.train])
    assert aware.known is not None and len(aware.known) == len(train) + len(ds.labels)


def test_head_verifier_drops_traces_whose_label_is_far_from_the_query() -> None:
    ds = synthetic(n_train=400, n_test=200)
    texts = [e.text for e in ds.train]
    # A noisy teacher: every fourth trace gets the alphabetically next intent.
    noisy = [
        ds.labels[(ds.labels.index(e.label) + 1) % 4] if i % 4 == 0 else e.label
        for i, e in enumerate(ds.train)
    ]
    checked = HeadStudent(ds.labels, embedder=HashedWords(), verify_k=2)
    checked.fit(texts, noisy)
    assert checked.kept is not None and 0 < checked.dropped == (~checked.kept).sum()
    right = np.array([n == e.label for n, e in zip(noisy, ds.train, strict=True)])
    # The verifier keeps a cleaner set than the teacher gave.
    assert right[checked.kept].mean() > right.mean()
    assert HeadStudent(ds.labels, embedder=HashedWords()).dropped == 0


def test_head_needs_fit_and_two_labels() -> None:
    with pytest.raises(RuntimeError):
        HeadStudent(embedder=HashedWords()).predict(["x"])
    with pytest.raises(ValueError):
        HeadStudent(embedder=HashedWords()).fit(["a", "b"], ["x", "x"])


def test_fewshot_vote_without_the_slm_pickles_and_saves(tmp_path: Path) -> None:
    ds = synthetic(n_train=300, n_test=100)
    student = FewShotStudent(ds.labels, k=5, embedder=HashedWords(), use_model=False)
    student.fit([e.text for e in ds.train], [e.label for e in ds.train])
    labels, conf = student.predict([e.text for e in ds.test])
    acc = np.mean([p == e.label for p, e in zip(labels, ds.test, strict=True)])
    assert acc >= 0.7 and all(0 < c <= 1.0 for c in conf)
    clone = pickle.loads(pickle.dumps(student))  # how it ships to a Ray worker
    assert clone.predict([ds.test[0].text])[0] == labels[:1]
    again = load_student(save_student(student, tmp_path / "fs"))  # how it is kept on disk
    assert isinstance(again, FewShotStudent) and again.bank_labels == student.bank_labels
    assert again.predict([e.text for e in ds.test]) == (labels, conf)


def test_vote_shares_and_prompt() -> None:
    shares = vote_shares(np.array([0.9, 0.6, 0.5]), ["a", "b", "a"])
    assert shares["a"] == pytest.approx(1.4 / 2.0) and sum(shares.values()) == pytest.approx(1.0)
    msgs = demo_messages("q?", [("t1", "a"), ("t2", "b")])
    assert "Label: b" in msgs[0]["content"] and msgs[-1]["content"].startswith("Query: q?")
