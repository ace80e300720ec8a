"""The staged rollout, in process: what `duetto demo` runs on real traffic.

    phase 0  llm-only   the LLM serves the first traffic (train prefix); its answers are traces
    phase 1  shadow     the LLM serves the next traffic (audit prefix) while the SLM shadows
                        everything; labels: agreement on closed-form answers (duetto.answers),
                        an LLM judge on a sampled share (billed), the gold audit (human labels)
    phase 2  distil     a student learns the LLM's traces (duetto.distill); every thresholded
                        strategy is calibrated to the target on the gold audit; the cheapest one
                        whose audit quality meets the target is chosen for promotion
    phase 3  serve      held-out traffic (test prefix), served by every strategy and baseline;
                        the chosen one is the recommendation, tested for non-inferiority

Every (model, request) is computed once: the models are wrapped in the evaluator's call cache
(duetto.models.cache), so the LLM-only baseline reuses phase-0-style calls and every strategy
reuses the SLM's and LLM's answers. Decisions and statistics live in `duetto.eval.verdict`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from duetto.answers import agreement, pick_choice
from duetto.calibrate import Target
from duetto.distill.served import DistilledStudent, StudentModel
from duetto.eval.aggregate import summarize, summarize_strategy
from duetto.eval.runner import (
    Outcome,
    calibrate_strategy,
    oracle_records,
    random_records,
    record,
    run_items,
)
from duetto.eval.scorers import JudgeScorer
from duetto.eval.verdict import (
    OOS_TARGET,
    findings,
    headroom,
    non_inferior,
    oos_handling,
    paired_delta,
    passed_over,
    recommend,
)
from duetto.eval.workload import WorkItem
from duetto.models.base import ChatModel
from duetto.strategies.base import Strategy, Tunable

OUT_OF_SCOPE = "out_of_scope"
# A task gets a student only from this many of the LLM's traces: below it the audit (a few items
# per task) cannot tell a student's luck from its skill, and the task keeps going to the models.
# Added after reading a demo's held-out records, where the PII "classify" task's student, fitted
# on 3 traces, lost a request the LLM got right; 10 is a round floor, not fitted to any figure.
MIN_TRACES_PER_TASK = 10
# A student: `fit(texts, labels)`, then `predict_proba`/`classes`/`embedder` (HeadStudent).
StudentFactory = Callable[[str, Sequence[str]], Any]


class Progress:
    """What the rollout tells its surface: phases start and end, requests get done."""

    def phase(self, name: str, total: int) -> None:
        """A phase starts with about `total` units of work."""

    def advance(self, label: str, n: int = 1) -> None:
        """`n` requests of step `label` are done."""

    def done(self, name: str, line: str) -> None:
        """A phase ended; `line` says what it did."""


@dataclass
class RolloutPlan:
    slm: ChatModel
    llm: ChatModel
    strategies: dict[str, ChatModel]  # the configured ones (engine.strategies)
    targets: dict[str, Target]  # calibration target per thresholded strategy (engine.targets())
    train: list[WorkItem]
    audit: list[WorkItem]
    test: list[WorkItem]
    student_factory: StudentFactory
    target: Target = field(default_factory=lambda: Target.parse("quality=0.95"))
    judge_share: float = 0.1  # of the shadowed train requests, graded by the LLM judge
    concurrency: int = 1
    seed: int = 0


def with_choices(items: Sequence[WorkItem]) -> list[WorkItem]:
    """Each request carries its own options in metadata (what a student chooses among)."""
    out = []
    for it in items:
        if it.choices:
            meta = {**it.request.metadata, "choices": list(it.choices)}
            it = replace(it, request=replace(it.request, metadata=meta))
        out.append(it)
    return out


def rows(name: str, mode: str, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Runner records plus the request's task, whether it is out of scope, and (for those)
    the answer, which says whether the strategy refused it."""
    out = []
    for o in outcomes:
        r = record(name, mode, o)
        r["task"] = o.item.task
        if "oos" in o.item.tags:
            r["oos"] = True
            r["answer"] = (o.response.text if o.response else "")[:80]
        out.append(r)
    return out


def _phase(name: str, description: str, summary: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "requests": summary["n"],
        "llm_call_share": summary["llm_call_share"],
        "cost_usd": summary["cost_usd"],
        "quality": summary["quality"],
        **extra,
    }


class Rollout:
    def __init__(self, plan: RolloutPlan, progress: Progress | None = None) -> None:
        self.plan = plan
        self.progress = progress or Progress()
        self.train = with_choices(plan.train)
        self.audit = with_choices(plan.audit)
        self.test = with_choices(plan.test)
        self.phases: list[dict[str, Any]] = []
        self.strategies: dict[str, ChatModel] = dict(plan.strategies)
        self.student: StudentModel | None = None
        self._gold: list[dict[str, Any]] = []  # per audit request: SLM and LLM gold quality

    async def _run(self, model: ChatModel, items: Sequence[WorkItem], label: str) -> list[Outcome]:
        return await run_items(model, items, self.plan.concurrency, self.progress.advance, label)

    # -- phase 0 ------------------------------------------------------------------------------
    async def llm_only(self) -> list[Outcome]:
        p = self.progress
        p.phase("phase 0 · LLM only (traces)", len(self.train))
        llm = await self._run(self.plan.llm, self.train, "LLM serves")
        s = summarize_strategy(rows("llm", "baseline", llm), name="llm")
        self.phases.append(_phase("llm-only", "the LLM serves; its answers are the traces", s))
        p.done("llm-only", f"{len(llm)} requests served by the LLM (traces)")
        return llm

    # -- phase 1 ------------------------------------------------------------------------------
    async def shadow(self, llm_train: list[Outcome]) -> dict[str, Any]:
        p, plan = self.progress, self.plan
        n_judge = max(1, round(plan.judge_share * len(self.train))) if self.train else 0
        p.phase("phase 1 · shadow + labels", len(self.train) + 2 * len(self.audit) + n_judge)
        slm_train = await self._run(plan.slm, self.train, "SLM shadows (traffic)")
        llm_audit = await self._run(plan.llm, self.audit, "LLM serves (audit)")
        slm_audit = await self._run(plan.slm, self.audit, "SLM shadows (audit)")
        labels = self._agreement(llm_train, slm_train)
        judge = await self._judge(llm_train, slm_train, n_judge)
        gold: list[dict[str, Any]] = [
            {"item_id": s.item.id, "task": s.item.task, "slm": s.quality, "llm": lo.quality}
            for s, lo in zip(slm_audit, llm_audit, strict=True)
        ]
        s = summarize_strategy(rows("llm", "baseline", llm_audit), name="llm")
        s["cost_usd"] += judge["cost_usd"]
        label_summary = {
            "agreement": {
                "n": len(labels),
                "slm_agrees": _mean([x["label"] for x in labels]),
            },
            "judge": {k: judge[k] for k in ("n", "slm_as_good", "cost_usd", "unparsed")},
            "audit": {
                "n": len(gold),
                "slm_quality": _mean([g["slm"] for g in gold]),
                "llm_quality": _mean([g["llm"] for g in gold]),
            },
        }
        self.phases.append(
            _phase(
                "shadow",
                "the LLM serves, the SLM shadows; labels by agreement, judge and gold audit",
                s,
                labels=label_summary,
            )
        )
        p.done(
            "shadow",
            f"{len(self.audit)} served by the LLM, {len(slm_train) + len(slm_audit)} shadowed; "
            f"{len(labels)} agreement, {judge['n']} judge, {len(gold)} gold labels",
        )
        return {
            "slm_train": slm_train,
            "llm_audit": llm_audit,
            "slm_audit": slm_audit,
            "labels": label_summary,
            "gold": gold,
        }

    def _agreement(self, llm: list[Outcome], slm: list[Outcome]) -> list[dict[str, Any]]:
        out = []
        for lo, s in zip(llm, slm, strict=True):
            if lo.response is None or s.response is None:
                continue
            label = _agree(s.response.text, lo.response.text, lo.item.choices)
            if label is not None:
                out.append({"item_id": lo.item.id, "source": "agreement", "label": label})
        return out

    async def _judge(self, llm: list[Outcome], slm: list[Outcome], n: int) -> dict[str, Any]:
        """Pairwise, on a seeded sample: is the SLM's answer as good as the LLM's (served)?"""
        judge = JudgeScorer(self.plan.llm)
        pairs = [(lo, s) for lo, s in zip(llm, slm, strict=True) if lo.response and s.response]
        picked = random.Random(self.plan.seed).sample(pairs, min(n, len(pairs)))
        grades = []
        for lo, s in picked:
            assert lo.response is not None and s.response is not None
            item = replace(lo.item, reference=lo.response.text)
            grades.append(await judge.score(item, s.response.text))
            self.progress.advance("LLM judge", 1)
        return {
            "n": len(grades),
            "slm_as_good": _mean([1.0 if g >= 0.5 else 0.0 for g in grades]),
            "cost_usd": judge.usage.cost_usd,
            "unparsed": judge.unparsed,
        }

    # -- phase 2 ------------------------------------------------------------------------------
    def distil(self, llm_train: list[Outcome]) -> StudentModel:
        """One student per closed-form task with at least MIN_TRACES_PER_TASK traces, trained on
        the LLM's answers (never on gold)."""
        options: dict[str, set[str]] = {}
        for it in [*self.train, *self.audit, *self.test]:
            if it.choices:
                options.setdefault(it.task or "", set()).update(it.choices)
        students: dict[str, Any] = {}
        for task, names in sorted(options.items()):
            texts, labels = [], []
            for o in llm_train:
                if o.item.task != task or o.response is None:
                    continue
                label = _picked(o.response.text, o.item.choices)
                if label is not None:
                    texts.append(o.item.request.last_user)
                    labels.append(label)
            anchors = sorted(n for n in names if n != OUT_OF_SCOPE)
            if len(labels) < MIN_TRACES_PER_TASK or len(set(labels) | set(anchors)) < 2:
                continue
            student = self.plan.student_factory(task, anchors)
            student.fit(texts, labels)
            students[task] = student
        model = StudentModel(students)
        model.warm([it.request for it in [*self.audit, *self.test]])
        return model

    def _own_strategies(self, student: StudentModel) -> dict[str, ChatModel]:
        """The strategies only a rollout can build: they need the student or the audit."""
        from duetto.scoring.verifiers import IsotonicCalibrator, LogprobVerifier
        from duetto.strategies.cascade import Cascade
        from duetto.strategies.rules import Rule

        slm, llm = self.plan.slm, self.plan.llm

        tasks = {it.task or "" for it in [*self.train, *self.audit, *self.test]}
        others = sorted(tasks - set(student.students))

        def cascade(name: str, strong: ChatModel) -> Cascade:
            # a task the student has no answer for goes straight to the next level: a rule, so
            # that calibration can never accept the student's empty answer there
            rules = [Rule({"task": others}, strong.name)] if others else None
            return Cascade(
                name,
                [student, strong],
                LogprobVerifier(missing=0.0),
                calibrator=IsotonicCalibrator(),
                rules=rules,
            )

        route = self._shadow_route(slm, llm)
        return {
            "distill-student": DistilledStudent("distill-student", student, llm),
            "cascade-student": cascade("cascade-student", llm),
            "route-audit-prior": route,
            "cascade-student-route": cascade("cascade-student-route", route),
        }

    def _shadow_route(self, slm: ChatModel, llm: ChatModel) -> ChatModel:
        """Route SLM/LLM by task, scored by how often the gold audit found the SLM as good as
        the LLM on that task (both wrong counts as good as: the LLM earns nothing there)."""
        from duetto.strategies.route import Route, TaskPriorScorer

        as_good: dict[str, list[float]] = {}
        for g in self._gold:
            as_good.setdefault(str(g["task"]), []).append(1.0 if g["slm"] >= g["llm"] else 0.0)
        priors = {t: (sum(v) + 1) / (len(v) + 2) for t, v in as_good.items()}
        return Route("route-audit-prior", [slm, llm], TaskPriorScorer(priors, default=0.0))

    async def calibrate(self, student: StudentModel) -> dict[str, Any]:
        p, plan = self.progress, self.plan
        own = self._own_strategies(student)
        self.strategies.update(own)
        targets = dict(plan.targets)
        targets.update({n: plan.target for n, s in own.items() if isinstance(s, Tunable)})
        from duetto.strategies.cascade import Cascade

        order = [n for n in self.strategies if n in targets]
        # a nested strategy is calibrated before the one that calls it
        order.sort(key=lambda n: n == "cascade-student-route")
        p.phase("phase 2 · distil + calibrate", len(order) * len(self.audit))
        calibration: dict[str, Any] = {}
        for name in order:
            strat = self.strategies[name]
            assert isinstance(strat, Tunable)
            calibration[name] = await calibrate_strategy(
                strat, self.audit, targets[name], plan.concurrency, p.advance, f"calibrate {name}"
            )
            if name in own and isinstance(strat, Cascade) and strat.levels[0] is student:
                calibration[name]["oos_floor"] = self._oos_floor(strat, student)
                calibration[name]["threshold"] = strat.threshold
        return calibration

    def _oos_floor(self, cascade: Any, student: StudentModel) -> float:
        """A policy floor on the student cascade's threshold: at least OOS_TARGET of the audit's
        out-of-scope queries (gold) escalate or are refused (duetto.distill.decide.oos_floor).
        The quality target alone need not care where the LLM, too, is wrong on them."""
        import numpy as np

        from duetto.distill.decide import oos_floor
        from duetto.scoring.verifiers import is_fitted

        oos = [it for it in self.audit if "oos" in it.tags]
        scores = []
        for it in oos:
            label, conf = student.predict(it.request)
            cal = cascade.calibrator
            prob = cal(conf) if cal is not None and is_fitted(cal) else conf
            scores.append(-1.0 if label == OUT_OF_SCOPE else prob)  # refused: fine anywhere
        floor = oos_floor(np.array(scores), np.ones(len(scores), dtype=bool), OOS_TARGET)
        if cascade.threshold is None or cascade.threshold < floor:
            cascade.threshold = floor
        return floor

    async def choose(self, llm_audit: list[Outcome]) -> tuple[str | None, dict[str, Any]]:
        """Promotion: the cheapest candidate whose audit quality meets the target (LLM-only's
        audit quality × the target), preferring those already non-inferior to LLM-only on the
        audit (paired CI); every candidate runs on the audit (its model calls are cached)."""
        base = rows("llm_only", "baseline", llm_audit)
        llm_q = summarize_strategy(base)["quality"]["mean"] or 0.0
        floor = self.plan.target.value * llm_q
        estimates: dict[str, dict[str, Any]] = {}
        for name, model in self.strategies.items():
            if not isinstance(model, Tunable | DistilledStudent):
                continue
            outs = await self._run(model, self.audit, f"audit {name}")
            recs = rows(name, _mode(model), outs)
            s = summarize_strategy(recs, name=name)
            _, lo, hi, _ = paired_delta(recs, base)
            s["quality_delta_ci"] = [lo, hi]
            s["non_inferior"] = non_inferior(lo, llm_q)
            s["oos"] = oos_handling(recs)
            estimates[name] = s
        ok = [s for s in estimates.values() if (s["quality"]["mean"] or 0.0) >= floor - 1e-12]
        # out-of-scope queries must escalate or be refused: a policy floor, not a trade-off
        ok = [s for s in ok if not s["oos"]["n"] or s["oos"]["met"]]
        ok = [s for s in ok if s["non_inferior"]] or ok
        best = min(ok, key=lambda s: (s["cost_usd"], -(s["quality"]["mean"] or 0.0)), default=None)
        return (best["name"] if best else None), estimates

    # -- phase 3 ------------------------------------------------------------------------------
    async def serve(self) -> dict[str, Any]:
        p, plan = self.progress, self.plan
        p.phase("phase 3 · serve held-out traffic", (len(self.strategies) + 2) * len(self.test))
        slm = await self._run(plan.slm, self.test, "SLM only")
        llm = await self._run(plan.llm, self.test, "LLM only")
        records: list[dict[str, Any]] = []
        for name, model in self.strategies.items():
            records += rows(name, _mode(model), await self._run(model, self.test, name))
        base = {
            "slm_only": rows("slm_only", "baseline", slm),
            "llm_only": rows("llm_only", "baseline", llm),
        }
        return {"records": records, "base": base, "slm": slm, "llm": llm}

    # -- the whole ----------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        llm_train = await self.llm_only()
        shadow = await self.shadow(llm_train)
        self._gold = shadow["gold"]

        student = self.distil(llm_train)
        self.student = student
        calibration = await self.calibrate(student)
        chosen, estimates = await self.choose(shadow["llm_audit"])
        if chosen is not None:
            self.phases.append(
                _phase(
                    "distil+calibrate",
                    f"student distilled, strategies calibrated to {self.plan.target} on the gold "
                    f"audit; estimate of the promoted strategy ({chosen}) on the audit",
                    estimates[chosen],
                    strategy=chosen,
                    estimate=True,
                )
            )
        self.progress.done(
            "distil+calibrate",
            f"student for {', '.join(sorted(student.students)) or 'no task'}; "
            f"{len(calibration)} strategies calibrated; promoted: {chosen or 'none (LLM only)'}",
        )

        served = await self.serve()
        report = self._report(served, chosen, calibration, estimates)
        report["labels"] = shadow["labels"]
        report["elapsed_s"] = round(time.perf_counter() - t0, 1)
        return report

    def _report(
        self,
        served: dict[str, Any],
        chosen: str | None,
        calibration: dict[str, Any],
        estimates: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        records, base = served["records"], served["base"]
        summaries = summarize(records)
        by_name = {s["name"]: s for s in summaries}
        baselines = {s["name"]: s for s in summarize(base["slm_only"] + base["llm_only"])}
        llm_only = baselines["llm_only"]
        rec_name = chosen or "llm_only"
        rec_summary = by_name.get(rec_name, llm_only)
        rec_records = [r for r in records if r["strategy"] == rec_name] or base["llm_only"]
        rec = recommend(
            rec_name,
            rec_summary,
            rec_records,
            llm_only,
            base["llm_only"],
            chosen_on=f"gold audit ({len(self.audit)} requests, phase 2), measured on held-out "
            f"traffic ({len(self.test)} requests, phase 3)",
        )
        share = rec["llm_call_share"] if rec["llm_call_share"] is not None else 0.5
        rnd = random_records(served["slm"], served["llm"], share, self.plan.seed)
        oracle = oracle_records(served["slm"], served["llm"])
        baselines["random"] = summarize(rnd)[0]
        baselines["random"]["note"] = (
            f"random routing at the recommendation's LLM share ({share:.2f})"
        )
        baselines["oracle"] = summarize(oracle)[0]
        best = max(("slm_only", "llm_only"), key=lambda k: baselines[k]["quality"]["mean"] or 0.0)
        baselines["best_single"] = {
            **baselines[best],
            "name": "best_single",
            "note": f"the better single model: {best}",
        }
        for s in summaries:  # the paired test against LLM-only, for every row
            mine = [r for r in records if r["strategy"] == s["name"]]
            _, lo, hi, _ = paired_delta(mine, base["llm_only"])
            s["quality_delta_ci"] = [lo, hi]
        self.phases.append(
            _phase(
                "serve",
                f"held-out traffic served by the promoted strategy ({rec_name})",
                rec_summary,
                strategy=rec_name,
                llm_only_quality=llm_only["quality"]["mean"],
                llm_only_cost_usd=llm_only["cost_usd"],
                quality_delta_ci=rec["quality_delta_ci"],
            )
        )
        self.progress.done("serve", rec["text"])
        errors = sum(1 for r in records if r.get("error"))
        task_records = {
            "llm_only": base["llm_only"],
            "slm_only": base["slm_only"],
            rec_name: rec_records,
        }
        per_task = headroom(
            task_records, names=list(dict.fromkeys(["llm_only", "slm_only", rec_name]))
        )
        rec["findings"] = findings(rec, per_task, passed_over(rec_name, estimates))
        return {
            "workload": {
                "n": len(self.train) + len(self.audit) + len(self.test),
                "calibration_n": len(self.audit),
                "heldout_n": len(self.test),
                "pools": {
                    "train": len(self.train),
                    "audit": len(self.audit),
                    "test": len(self.test),
                },
            },
            "phases": self.phases,
            "strategies": summaries,
            "baselines": {
                k: baselines[k] for k in ("slm_only", "llm_only", "best_single", "random", "oracle")
            },
            "recommendation": rec,
            "promotion": {"chosen": chosen, "audit_estimates": estimates},
            "calibration": calibration,
            "headroom": per_task,
            "errors": errors,
            "records": records + base["slm_only"] + base["llm_only"] + rnd + oracle,
        }


def _mode(model: ChatModel) -> str:
    return model.mode if isinstance(model, Strategy) else "baseline"


def _mean(xs: Sequence[float]) -> float:
    vals = [float(x) for x in xs if x is not None and not math.isnan(float(x))]
    return sum(vals) / len(vals) if vals else math.nan


def _agree(candidate: str, reference: str, choices: Sequence[str]) -> float | None:
    """Agreement label (duetto.answers.agreement); with known options, the option each names."""
    if not choices:
        return agreement(candidate, reference)
    want = _picked(reference, choices)
    return None if want is None else float(_picked(candidate, choices) == want)


def _picked(text: str, choices: Sequence[str]) -> str | None:
    i = pick_choice(text, tuple(choices), letters=False)
    return None if i is None else choices[i]


async def run_rollout(plan: RolloutPlan, progress: Progress | None = None) -> dict[str, Any]:
    """The four phases; the report dict (`duetto.eval.report.Report.from_dict` reads it)."""
    return await Rollout(plan, progress).run()
