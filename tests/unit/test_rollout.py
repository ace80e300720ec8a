"""The staged rollout of `duetto demo` with scripted models: phases, report.json fields, the
paired non-inferiority test, out-of-scope handling. No model is loaded."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from duetto.distill.served import DistilledStudent, StudentModel
from duetto.distill.students.head import HeadStudent
from duetto.distill.synthetic import HashedWords
from duetto.eval.report import Report, write_report
from duetto.eval.rollout import RolloutPlan, run_rollout
from duetto.eval.verdict import non_inferior, oos_handling, paired_delta, recommend
from duetto.eval.workload import WorkItem
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.testing.scripted import ScriptedModel

INTENTS = ("card_lost", "transfer_fee", "balance", "out_of_scope")
WORDS = {"card_lost": "lost my card", "transfer_fee": "fee for a transfer", "balance": "my balance"}
SYSTEM = "Sort by intent. Reply with one intent name only."


def _items(pool: str, n: int) -> list[WorkItem]:
    """A repeating mix: three intents, an out-of-scope query, a math question, an extraction."""
    out: list[WorkItem] = []
    for i in range(n):
        k = i % 6
        if k < 3:
            label = INTENTS[k]
            text = f"{pool} {i}: I {WORDS[label]} today"
            out.append(_intent(f"{pool}-{i}", text, label))
        elif k == 3:
            out.append(_intent(f"{pool}-{i}", f"{pool} {i}: sing me a song", "out_of_scope"))
        elif k == 4:
            req = ChatRequest.of(f"{pool} {i}: what is {i} + 1?", max_tokens=32, task="math")
            out.append(WorkItem(f"{pool}-{i}", req, str(i + 1), "math", "numeric"))
        else:
            req = ChatRequest.of(
                f"{pool} {i}: name in 'Ann Lee wrote'", max_tokens=8, task="extract"
            )
            out.append(WorkItem(f"{pool}-{i}", req, "Ann Lee", "extract", "exact"))
    return out


def _intent(id_: str, text: str, label: str) -> WorkItem:
    req = ChatRequest.of(text, system=SYSTEM, max_tokens=16, task="intent")
    tags = ("intent", "oos") if label == "out_of_scope" else ("intent",)
    return WorkItem(id_, req, label, "intent", "choice", INTENTS, tags)


def _llm_answer(req: ChatRequest) -> str:
    text = req.last_user
    if req.task == "intent":
        for label, words in WORDS.items():
            if words in text:
                return label
        return "out_of_scope"
    if req.task == "math":
        return "The answer is 0"  # the hard tail: the LLM gets it wrong too
    if req.task == "judge":
        return "Grade: 3"
    return "Ann Lee"


def _slm_answer(req: ChatRequest) -> str:
    if req.task == "intent":
        return "balance"  # right on a third of in-scope intents
    if req.task == "math":
        return "42"
    return "Ann Lee"


def _plan(strategies: dict[str, Any] | None = None) -> RolloutPlan:
    llm_card = ModelCard(
        "llm", location="remote", trusted=False, price_in_per_mtok=1.0, price_out_per_mtok=4.0
    )
    slm = ScriptedModel(ModelCard("slm"), _slm_answer, logprob=-0.7)
    llm = ScriptedModel(llm_card, _llm_answer, logprob=-0.1)
    return RolloutPlan(
        slm=slm,
        llm=llm,
        strategies=strategies or {},
        targets={},
        train=_items("train", 60),
        audit=_items("audit", 36),
        test=_items("test", 36),
        student_factory=lambda task, labels: HeadStudent(
            labels, embedder=HashedWords(), novelty=True, out_of_scope="out_of_scope"
        ),
    )


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    import asyncio

    return asyncio.run(run_rollout(_plan()))


def test_phases_have_the_report_json_fields(report: dict[str, Any]) -> None:
    names = [p["name"] for p in report["phases"]]
    assert names == ["llm-only", "shadow", "distil+calibrate", "serve"]
    for p in report["phases"]:
        assert {"name", "requests", "llm_call_share", "cost_usd", "quality"} <= set(p)
        assert set(p["quality"]) == {"mean", "ci_low", "ci_high"}
    llm_only, shadow = report["phases"][0], report["phases"][1]
    assert llm_only["requests"] == 60 and llm_only["llm_call_share"] == 1.0
    # the judge's calls are billed to the shadow phase
    assert shadow["labels"]["judge"]["n"] == 6 and shadow["labels"]["judge"]["cost_usd"] > 0
    assert shadow["labels"]["agreement"]["n"] > 0
    assert shadow["labels"]["audit"]["n"] == 36


def test_recommendation_is_the_cheap_cascade_and_non_inferior(report: dict[str, Any]) -> None:
    rec = report["recommendation"]
    for key in (
        "name",
        "llm_call_share",
        "cost_fraction_of_llm_only",
        "llm_only_quality",
        "quality_delta_ci",
        "non_inferior",
    ):
        assert key in rec
    # the student answers the intents; math (nobody right) goes to the SLM; extraction stays
    assert rec["name"] in ("cascade-student-route", "route-audit-prior")
    assert rec["llm_call_share"] <= 0.5 and rec["cost_fraction_of_llm_only"] <= 0.6
    lo, hi = rec["quality_delta_ci"]
    assert lo <= rec["quality_delta"] <= hi
    assert rec["non_inferior"] is (lo >= -0.05 * rec["llm_only_quality"])
    assert rec["oos"]["n"] == 6 and rec["oos"]["share"] >= 0.9
    assert "Use " in rec["text"] and "% of LLM-only's cost" in rec["text"]


def test_every_mode_and_baseline_has_a_row(report: dict[str, Any]) -> None:
    modes = {s["mode"] for s in report["strategies"]}
    assert {"distill", "cascade", "route"} <= modes
    assert set(report["baselines"]) == {"slm_only", "llm_only", "best_single", "random", "oracle"}
    assert (
        report["baselines"]["best_single"]["quality"] == report["baselines"]["llm_only"]["quality"]
    )


def test_report_files_render_the_recommendation_in_words(
    report: dict[str, Any], tmp_path: Path
) -> None:
    paths = write_report(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert [p["name"] for p in data["phases"]][-1] == "serve"
    html = paths["html"].read_text()
    assert "Staged rollout" in html and '"mean"' not in html
    rec = data["recommendation"]
    assert f"{rec['llm_call_share'] * 100:.0f}%" in html
    assert Report.from_dict(data).to_dict()["phases"] == data["phases"]


# --- the verdict, alone ----------------------------------------------------------------------


def _recs(qs: list[float], **kw: Any) -> list[dict[str, Any]]:
    return [{"item_id": str(i), "quality": q, **kw} for i, q in enumerate(qs)]


def test_paired_delta_pairs_by_request() -> None:
    a = _recs([1, 1, 0, 1])
    b = list(reversed(_recs([1, 0, 1, 1])))  # order does not matter, ids do
    mean, lo, hi, n = paired_delta(a, b)
    assert n == 4 and mean == pytest.approx(0.0)
    assert lo < 0 < hi
    same = paired_delta(a, a)
    assert same[:3] == (0.0, 0.0, 0.0)


def test_non_inferiority_margin_is_relative_to_llm_only_quality() -> None:
    assert non_inferior(-0.02, 0.6)  # margin 0.03
    assert not non_inferior(-0.04, 0.6)
    assert not non_inferior(math.nan, 0.6)


def test_oos_escalated_or_refused() -> None:
    recs = [
        {"oos": True, "llm_calls": 1, "answer": "weather"},  # escalated
        {"oos": True, "llm_calls": 0, "answer": "out_of_scope"},  # refused locally
        {"oos": True, "llm_calls": 0, "answer": "weather"},  # answered locally: a miss
        {"llm_calls": 0, "answer": "weather"},
    ]
    got = oos_handling(recs)
    assert (got["n"], got["escalated"], got["refused"]) == (3, 1, 1)
    assert got["share"] == pytest.approx(2 / 3) and not got["met"]


def test_recommend_counts_checks() -> None:
    llm = _recs([1.0] * 10, llm_calls=1, cost_usd=1.0)
    mine = _recs([1.0] * 10, llm_calls=0, cost_usd=0.0)
    s_llm = {"quality": {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}, "cost_usd": 10.0}
    s_mine = {
        "quality": {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0},
        "cost_usd": 2.0,
        "llm_call_share": 0.2,
        "mode": "cascade",
    }
    rec = recommend("c", s_mine, mine, s_llm, llm)
    assert rec["cost_fraction_of_llm_only"] == pytest.approx(0.2)
    assert rec["non_inferior"] and all(rec["checks"].values())


async def test_student_model_answers_among_the_options_only() -> None:
    student = HeadStudent(["card_lost", "balance"], embedder=HashedWords())
    student.fit(["i lost my card", "what is my balance"], ["card_lost", "balance"])
    model = StudentModel({"intent": student})
    opts = {"choices": ["card_lost", "transfer_fee"]}
    req = ChatRequest.of("show my balance", task="intent", metadata=opts)
    out = await model.complete(req)
    assert out.text == "card_lost"  # balance is not an option of this request
    assert out.logprobs and 0 < math.exp(out.logprobs[0]) <= 1
    none = await model.complete(ChatRequest.of("2+2?", task="math"))
    assert none.text == "" and math.exp(none.logprobs[0]) < 1e-6  # type: ignore[index]
    llm = ScriptedModel("llm", "4")
    both = DistilledStudent("d", model, llm)
    assert (await both.complete(ChatRequest.of("2+2?", task="math"))).text == "4"
    assert (await both.complete(req)).trace.decision == "local"


def test_agreement_labels_closed_form_answers_only() -> None:
    from duetto.eval.rollout import _agree

    opts = ("card_lost", "balance")
    assert _agree("It is balance.", "balance", opts) == 1.0
    assert _agree("card_lost", "balance", opts) == 0.0
    assert _agree("x", "no option here", opts) is None  # the reference names no option
    assert _agree("so 12 apples", "The answer is 12", ()) == 1.0
    long = "The customer asks to change the name on the account to the one they gave us today."
    assert _agree("a summary", long, ()) is None  # open-ended: the judge's, not agreement's


def test_progress_is_one_line_per_phase_without_a_terminal() -> None:
    import io

    from rich.console import Console

    from duetto.cli.demo import ConsoleProgress

    buf = io.StringIO()
    progress = ConsoleProgress(Console(file=buf, force_terminal=False))
    lines: list[str] = []
    progress._emit = lines.append  # type: ignore[method-assign]
    for name in ("llm-only", "shadow"):
        progress.phase(name, 10)
        progress.advance("x", 10)
        progress.done(name, "did it")
    assert len(lines) == 2 and lines[0].endswith("llm-only: did it (0 s)")
    assert lines[1].startswith("[") and " s] shadow" in lines[1]


async def test_the_embedded_defaults_every_mode_has_a_row() -> None:
    """The demo's real strategy set (duetto/data/defaults.yaml) with scripted models in place
    of SmolLM2 and the stand-in: every mode gets a row, calibration fills every threshold."""
    from importlib.resources import files

    import yaml

    from duetto.config import parse_config
    from duetto.engine import Engine

    data = yaml.safe_load(files("duetto.data").joinpath("defaults.yaml").read_text())
    for name in ("slm", "llm"):
        card = data["models"][name]["card"]
        data["models"][name] = {"backend": "fake", "card": card}
    engine = Engine(parse_config(data), cache=True)
    await engine.start()
    try:
        slm, llm = engine.slm.inner, engine.llm.inner  # type: ignore[attr-defined]
        slm.script, slm.logprob = _slm_answer, -0.7
        llm.script, llm.logprob = _llm_answer, -0.1
        plan = _plan()
        plan.slm, plan.llm = engine.slm, engine.llm
        plan.strategies, plan.targets = engine.strategies, engine.targets()
        report = await run_rollout(plan)
    finally:
        await engine.aclose()
    modes = {s["mode"] for s in report["strategies"]}
    assert modes == {"cascade", "route", "pipeline", "assist", "fuse", "distill"}
    assert set(report["calibration"]) >= {"cascade-logprob", "cascade-learned", "route-task-prior"}
    assert report["errors"] == 0
    assert report["recommendation"]["name"] in {s["name"] for s in report["strategies"]}


def test_student_cascade_never_answers_a_task_it_has_no_student_for(
    report: dict[str, Any],
) -> None:
    math_rows = [
        r for r in report["records"] if r["strategy"] == "cascade-student" and r["task"] == "math"
    ]
    assert math_rows and all(r["llm_calls"] == 1 for r in math_rows)  # pinned to the LLM


def test_student_cascades_get_the_out_of_scope_floor(report: dict[str, Any]) -> None:
    for name in ("cascade-student", "cascade-student-route"):
        cal = report["calibration"][name]
        assert "oos_floor" in cal
        assert cal["threshold"] is None or cal["threshold"] >= cal["oos_floor"]
    for est in report["promotion"]["audit_estimates"].values():
        assert {"n", "share", "met"} <= set(est["oos"])


async def test_a_task_with_too_few_traces_gets_no_student() -> None:
    """Three traces of a closed-form task are not enough to distil it (MIN_TRACES_PER_TASK):
    the intents, with 40 traces, get a student; the rare task keeps going to the models."""
    from duetto.eval.rollout import MIN_TRACES_PER_TASK, Rollout

    kinds = ("phone number", "street address")
    rare = [
        WorkItem(
            f"train-rare-{i}",
            ChatRequest.of(f"Which data is in: call 555 01{i}?", max_tokens=8, task="classify"),
            "phone number",
            "classify",
            "choice",
            kinds,
        )
        for i in range(3)
    ]
    plan = _plan()
    plan.train = [*plan.train, *rare]
    rollout = Rollout(plan)
    traces = await rollout.llm_only()
    student = rollout.distil(traces)
    assert 3 < MIN_TRACES_PER_TASK <= 40
    assert set(student.students) == {"intent"}


def test_findings_say_why_a_cheaper_candidate_was_not_promoted() -> None:
    from duetto.eval.verdict import passed_over

    estimates = {
        "route": {"llm_call_share": 0.8, "quality": {"mean": 0.43}, "non_inferior": True},
        "student": {
            "llm_call_share": 0.43,
            "quality": {"mean": 0.57},
            "quality_delta_ci": [-0.033, 0.3],
            "non_inferior": False,
            "oos": {"n": 2, "share": 1.0, "met": True},
        },
    }
    text = passed_over("route", estimates)
    assert "student (43% LLM calls, quality 0.57" in text and "-0.033 to 0.300" in text
    assert "route (" not in text  # the chosen one, and above the cap anyway
    assert passed_over("student", estimates) == ""
