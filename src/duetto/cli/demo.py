"""`duetto demo`: the staged rollout (duetto.eval.rollout) on the shipped traffic sample, with
progress bars on a terminal and one line per phase otherwise, then the report.

How many requests each phase takes is a time budget: the whole demo must finish in ten minutes
on a 2-core machine, where one LLM answer to a GSM8K question takes ~10 s. Every prefix of a
pool keeps the traffic mix (duetto.eval.traffic), so a smaller demo is the same traffic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from duetto.cli._errors import fail
from duetto.cli._report import finish_report
from duetto.eval.rollout import Progress

# Requests per phase: train (phase 0 traces), audit (phase 1 gold), test (phase 3 held out).
# Measured under load (load average ~4): --limit 12 took 537 s, of which phase 3 375 s (the
# assist-hints' summed latency was 278 s, mostly the LLM writing five 256-token hints); the
# lead re-times on a quiet machine.
DEMO_SIZES = {"train": 48, "audit": 30, "test": 30}
# The LLM's task hints (assist-hints, once per task type) are capped too: 256 tokens each took
# most of phase 3 on a short run.
HINT_MAX_TOKENS = 96
# Answer length caps per task, for time: GSM8K is the hard tail nobody gets right here (the
# 0.5B stand-in: 0/10 within 200 tokens, 1/6 within 400, ~22 s each), and its long answers
# would take most of the ten minutes. The shipped rows cap it at 200.
TASK_MAX_TOKENS = {"math": 128}


def capped(items: list[Any]) -> list[Any]:
    """Each request's max_tokens cut to its task's cap (TASK_MAX_TOKENS)."""
    from dataclasses import replace

    out = []
    for it in items:
        cap = TASK_MAX_TOKENS.get(it.task or "")
        if cap is not None and it.request.max_tokens > cap:
            it = replace(it, request=replace(it.request, max_tokens=cap))
        out.append(it)
    return out


class ConsoleProgress(Progress):
    """Rich progress bars on a terminal; one line per phase with elapsed time otherwise."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.tty = bool(console.is_terminal)
        self.t0 = time.perf_counter()
        self.t_phase = self.t0
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}
        self.name = ""

    def phase(self, name: str, total: int) -> None:
        self.name = name  # a phase's time runs from the previous phase's end
        if not self.tty:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._close_bar()
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.tasks = {"": self.bar.add_task(name, total=total or None)}

    def advance(self, label: str, n: int = 1) -> None:
        if self.bar is None:
            return
        self.bar.advance(self.tasks[""], n)
        self.bar.update(self.tasks[""], description=f"{self.name} · {label}")

    def done(self, name: str, line: str) -> None:
        self._close_bar()
        now = time.perf_counter()
        text = f"[{now - self.t0:5.0f} s] {name}: {line} ({now - self.t_phase:.0f} s)"
        self.t_phase = now
        self._emit(text)

    def _emit(self, text: str) -> None:
        if self.tty:
            self.console.print(text, highlight=False, markup=False)
        else:  # a log: one plain line per phase, flushed at once
            print(text, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _student_factory(task: str, labels: Any) -> Any:
    from duetto.distill.students.head import HeadStudent

    # Out-of-scope intents look like none of the known ones: the novelty factor says so.
    return HeadStudent(labels, novelty=(task == "intent"), out_of_scope="out_of_scope")


def run_demo(
    out: Path,
    data: Path | None,
    limit: int | None,
    llm_url: str | None,
    llm_model: str | None,
    llm_key_env: str | None,
    target: str,
) -> None:
    from rich.console import Console

    from duetto.calibrate import Target
    from duetto.config import load_default_config
    from duetto.engine import Engine
    from duetto.errors import UserError
    from duetto.eval.rollout import RolloutPlan, run_rollout
    from duetto.eval.traffic import load_traffic
    from duetto.privacy.apply import use_detector

    console = Console()
    started = time.perf_counter()
    sizes = {k: min(v, limit) if limit else v for k, v in DEMO_SIZES.items()}
    try:
        tgt = Target.parse(target)
        pools = {p: capped(load_traffic(p, data, limit=n)) for p, n in sizes.items()}
        cfg = load_default_config()
        if llm_url:
            cfg = cfg.with_llm_endpoint(llm_url, llm_model or "default", llm_key_env)
    except UserError as exc:
        fail(exc)
        return
    progress = ConsoleProgress(console)
    source = str(data) if data else "duetto/data/traffic (shipped sample)"
    intro = (
        f"duetto demo: staged rollout on real traffic from {source}: "
        f"{sizes['train']} + {sizes['audit']} + {sizes['test']} requests "
        "(60% intents incl. out-of-scope, 20% GSM8K, 20% PII tasks)"
    )
    print(intro, flush=True) if not progress.tty else console.print(intro, highlight=False)

    async def go() -> tuple[dict[str, Any], Engine, str]:
        progress.phase("starting models", 0)
        # redaction and the privacy column use the configured detector, as `duetto serve` does
        detector = await asyncio.to_thread(use_detector, cfg.privacy.detector or "auto")
        engine = Engine(cfg, cache=True)
        await engine.start()
        progress.done(
            "start", f"SLM in process, LLM stand-in over loopback HTTP, PII detector {detector}"
        )
        from duetto.strategies.assist import HintAssist

        for strat in engine.strategies.values():
            if isinstance(strat, HintAssist):
                strat.teacher_max_tokens = min(strat.teacher_max_tokens, HINT_MAX_TOKENS)
        try:
            plan = RolloutPlan(
                slm=engine.slm,
                llm=engine.llm,
                strategies=engine.strategies,
                targets=engine.targets(),
                train=pools["train"],
                audit=pools["audit"],
                test=pools["test"],
                student_factory=_student_factory,
                target=tgt,
            )
            return await run_rollout(plan, progress), engine, detector
        finally:
            await engine.aclose()

    try:
        report, engine, detector = asyncio.run(go())
    except UserError as exc:
        fail(exc)
        return
    caps = ", ".join(f"{t} {n}" for t, n in TASK_MAX_TOKENS.items())
    cap_note = (
        f"answers capped at max_tokens ({caps}; the LLM's task hints {HINT_MAX_TOKENS}) so that "
        "the demo runs in ten minutes"
    )
    finish_report(
        report,
        engine,
        out=out,
        target=target,
        title="duetto demo: staged rollout on real traffic",
        workload=source,
        started=started,
        console=console,
        detector=detector,
        notes=[cap_note],
    )
