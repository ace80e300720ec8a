"""The learned verifier: combined signals beat token confidence alone; its fit is carried over."""

import numpy as np
import pytest

from duetto.calibrate import Target
from duetto.eval.runner import EvalPlan, evaluate
from duetto.eval.workload import WorkItem
from duetto.fitted import apply_fitted, export_fitted
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import ModelCard
from duetto.scoring.logistic import fit_logistic
from duetto.scoring.verifier_learned import LearnedVerifier
from duetto.scoring.verifiers import LogprobVerifier
from duetto.strategies import Cascade
from duetto.testing.scripted import ScriptedModel
from duetto.trace import Step
from duetto.usage import Usage


def auroc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_logistic_fit_recovers_a_separating_direction() -> None:
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=400)
    y = (x1 + 0.3 * rng.normal(size=400) > 0).astype(float)
    w, b = fit_logistic(np.column_stack([x1, rng.normal(size=400)]), y, l2=1.0)
    assert w[0] > 3 * abs(w[1])  # the informative feature dominates the noise feature
    assert abs(b) < 0.5  # the classes are balanced around x1 = 0


def workload(n: int = 120) -> list[tuple[ChatRequest, ChatResponse, bool]]:
    """The SLM is confident everywhere, right on intents and wrong on math: the task type, not
    the token confidence, tells right from wrong."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        task = "math" if i % 2 else "intent"
        conf = float(rng.uniform(-0.6, -0.05))
        resp = ChatResponse("x", "slm", Usage(), Step("slm"), logprobs=[conf, conf])
        rows.append((ChatRequest.of(f"q{i}", task=task), resp, task == "intent"))
    return rows


async def test_fitted_verifier_separates_what_confidence_cannot() -> None:
    rows = workload()
    train, test = rows[:60], rows[60:]
    learned = LearnedVerifier().fit(*map(list, zip(*train, strict=True)))
    labels = [ok for *_, ok in test]
    plain = [(await LogprobVerifier().score(q, a)).score for q, a, _ in test]
    fitted = [(await learned.score(q, a)).score for q, a, _ in test]
    assert auroc(fitted, labels) > 0.95
    assert auroc(plain, labels) < 0.8  # confidence is noise here


async def test_unfitted_scores_like_token_confidence_and_state_round_trips() -> None:
    q, a, _ = workload(2)[0]
    bare = LearnedVerifier()
    assert (await bare.score(q, a)).score == pytest.approx(
        (await LogprobVerifier().score(q, a)).score
    )
    learned = LearnedVerifier().fit(*map(list, zip(*workload(), strict=True)))
    copy = LearnedVerifier()
    copy.load_state(learned.state())
    assert (await copy.score(q, a)).score == (await learned.score(q, a)).score
    bad = learned.state() | {"tasks": ["only-one-task", "x", "y"]}
    with pytest.raises(ValueError, match="do not match"):
        LearnedVerifier().load_state(bad)


async def test_eval_fits_the_verifier_on_the_calibration_split_and_exports_it() -> None:
    def slm_answer(req: ChatRequest) -> str:
        return "right" if req.task == "intent" else "wrong"

    items = [
        WorkItem(
            id=f"q{i}",
            request=ChatRequest.of(f"q{i}", task=t),
            reference="right",
            task=t,
            scorer="exact",
        )
        for i, t in enumerate(["intent", "math"] * 30)
    ]
    slm = ScriptedModel("slm", slm_answer, logprob=-0.1)  # equally confident everywhere
    llm = ScriptedModel(ModelCard("llm", "remote", False, price_in_per_mtok=1.0), "right")
    casc = Cascade("casc", [slm, llm], LearnedVerifier())
    plan = EvalPlan(
        slm=slm, llm=llm, strategies={"casc": casc}, targets={"casc": Target("quality", 0.95)}
    )
    report = await evaluate(plan, items)
    (summary,) = report["strategies"]
    assert summary["quality"]["mean"] == 1.0
    assert 0.3 < summary["llm_call_share"] < 0.7  # escalates the math half only
    state = export_fitted({"casc": casc})
    fresh = Cascade("casc", [slm, llm], LearnedVerifier())
    apply_fitted({"casc": fresh}, state)
    out = await fresh.complete(ChatRequest.of("q1", task="math"))
    assert out.trace.decision == "escalated"
