"""Staged rollout on replayed real traffic (issue 14): shadow → fit and promote → routed → drift.

    flock /tmp/duetto-cpu.lock python benchmarks/staged_rollout.py --json out/rollout.json \
        [--requests-per-phase 40] [--shadow-requests 60] [--data ../shared/datasets]

The real gateway (`create_app` on a loopback socket, duetto.testing.ServerThread) with the
embedded defaults: the SLM in process, the stand-in LLM (Qwen2.5-Coder-0.5B over loopback). The
client sends real queries with gold answers (duetto.eval.traffic: the shipped sample, or drawn
from `--data`): banking77 and clinc150 intents, clinc150's out-of-scope queries included (the
easy majority) and GSM8K (the hard tail); the PII tasks of the demo traffic are left out. Phases:

1. shadow: requests go to the raw LLM; the SLM answers every one in the background
   (`gateway.shadow.llm`), labelled by agreement; then the gold audit (at most 300 of those
   requests, their datasets' answers) goes in with `duetto labels import`;
2. `duetto fit STORE` and promotion with POST /admin/calibration, no restart;
3. promoted: the next traffic (the test pool) goes to `cascade-logprob`, a share of the local
   answers audited by the LLM in the background (`gateway.audit`, the controller on);
4. drift: a mix with more out-of-scope and more math; the live estimate is read after every
   request (`GET /v1/loop`) for `requests_to_recover`.

Per phase: quality against gold (duetto.eval.scorers), the LLM-only quality on the same
requests (the LLM's answer to each request, called once: the served answer when the LLM
served, the audit's answer, else one direct call to the engine's LLM), the paired bootstrap CI
of (duetto − LLM-only) (duetto.stats), the audit estimate (fraction of LLM-only quality, as
the gateway computes it, duetto.loop.audit) beside the gold-measured ratio, out-of-scope
queries escalated or refused, and user p50 latency with the loop on and, on a sample replayed
after a drain with shadow and audit sampling switched off in process, without it. Timings
taken under load are not figures to publish: the JSON carries the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from duetto.eval.scorers import score
from duetto.eval.workload import WorkItem
from duetto.loop.audit import estimate
from duetto.messages import ChatRequest
from duetto.stats import bootstrap

STRATEGY = "cascade-logprob"
SERVED_LLM = "llm"
GOLD_MAX = 300
# the drifted mix by stream: more out-of-scope and more math than the test pool's
DRIFT_MIX = {"oos": 0.3, "math": 0.4, "intent": 0.3}

Cli = Callable[[Sequence[str]], tuple[int, str]]


def stream_of(item: WorkItem) -> str:
    if "oos" in item.tags:
        return "oos"
    return "math" if item.task == "math" else "intent"


def rollout_items(items: Sequence[WorkItem]) -> list[WorkItem]:
    """The intents (out-of-scope included) and GSM8K; the PII tasks are another benchmark's."""
    return [it for it in items if it.task in ("intent", "math")]


def drifted(items: Sequence[WorkItem], n: int, mix: dict[str, float]) -> list[WorkItem]:
    """n items of `items` in the proportions of `mix`, interleaved (every prefix near the mix)."""
    want = {s: round(n * share) for s, share in mix.items()}
    want[max(mix, key=lambda s: mix[s])] += n - sum(want.values())
    by = {s: [it for it in items if stream_of(it) == s] for s in mix}
    picked = {s: by[s][: want[s]] for s in mix}
    keyed = [
        ((2 * k + 1) / (2 * len(rows)), s, it)
        for s, rows in picked.items()
        for k, it in enumerate(rows)
    ]
    return [it for _, _, it in sorted(keyed, key=lambda t: (t[0], t[1]))]


def mix_of(items: Sequence[WorkItem]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for it in items:
        name = "gsm8k" if it.task == "math" else ("clinc150-oos" if "oos" in it.tags else "")
        name = name or ("banking77" if "banking77" in it.tags else "clinc150")
        counts[name] = counts.get(name, 0) + 1
    n = max(len(items), 1)
    return {
        "requests": len(items),
        "by_source": counts,
        "share": {k: round(v / n, 3) for k, v in counts.items()},
    }


def capped(item: WorkItem, cap: int | None) -> ChatRequest:
    """The item's request with max_tokens at most `cap` (a small run's budget), else as is."""
    req = item.request
    if cap is None:
        return req
    return dataclasses.replace(req, max_tokens=min(req.max_tokens or cap, cap))


def body_of(item: WorkItem, model: str, cap: int | None = None) -> dict[str, Any]:
    req = capped(item, cap)
    messages = [{"role": m.role, "content": m.text} for m in req.messages]
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0}
    if req.max_tokens:
        body["max_tokens"] = req.max_tokens
    return body


@dataclass
class Served:
    item: WorkItem
    trace_id: str
    text: str
    answered_by: str
    llm_calls: int
    cost_usd: float
    latency_ms: float
    score: float = math.nan
    llm_text: str | None = None
    llm_score: float = math.nan


@dataclass
class Phase:
    name: str
    served: list[Served] = field(default_factory=list)
    loop_before: dict[str, Any] = field(default_factory=dict)
    loop_after: dict[str, Any] = field(default_factory=dict)
    estimates: list[dict[str, Any]] = field(default_factory=list)  # drift: after each request
    without_loop_ms: list[float] = field(default_factory=list)
    with_loop_sample_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def subprocess_cli(argv: Sequence[str]) -> tuple[int, str]:
    """`duetto …` as a separate process (the store is a SQLite file both open)."""
    proc = subprocess.run(
        [sys.executable, "-m", "duetto.cli.main", *argv],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


class Rollout:
    """The phases against one running gateway (`app` served by `server`, a ServerThread)."""

    def __init__(
        self,
        app: Any,
        server: Any,
        db: str,
        workdir: Path,
        *,
        cli: Cli = subprocess_cli,
        config: Path | None = None,
        log: Callable[[str], None] = print,
        max_tokens: int | None = None,
    ) -> None:
        self.app = app
        self.server = server
        self.db = db
        self.workdir = workdir
        self.cli = cli
        self.config = config
        self.log = log
        self.max_tokens = max_tokens
        self.client = httpx.Client(base_url=server.url, timeout=600.0)
        self.llm_cache: dict[str, str] = {}  # item id → the LLM's answer (called once)
        self.fit: dict[str, Any] = {}

    def close(self) -> None:
        self.client.close()

    # ---- plumbing --------------------------------------------------------------------------

    def _on_server(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.server.loop).result()

    def drain(self) -> None:
        self._on_server(self.app.state.loop.drain())

    def loop_state(self) -> dict[str, Any]:
        r = self.client.get("/v1/loop")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data.get("loop", data)

    def refresh(self) -> None:
        self._on_server(self.app.state.loop.refresh())

    def set_loop(self, on: bool, saved: dict[str, Any]) -> None:
        """Shadow and audit sampling off (saving the settings) or back on, in process."""
        loop = self.app.state.loop
        if not on:
            saved["shadow"], saved["audit"] = loop.shadow_cfg, loop.audit_cfg
            loop.shadow_cfg = {}
            if loop.audit_cfg is not None:
                loop.audit_cfg = loop.audit_cfg.model_copy(update={"share": 0.0})
        else:
            loop.shadow_cfg, loop.audit_cfg = saved["shadow"], saved["audit"]

    def ask(self, item: WorkItem, model: str) -> Served:
        t0 = time.perf_counter()
        r = self.client.post("/v1/chat/completions", json=body_of(item, model, self.max_tokens))
        ms = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"{item.id}: {r.status_code} {r.text[:300]}")
        data = r.json()
        extra = data.get("duetto", {})
        text = data["choices"][0]["message"].get("content") or ""
        s = Served(
            item,
            extra.get("trace_id") or r.headers["x-duetto-trace-id"],
            text,
            extra.get("answered_by", ""),
            int(extra.get("llm_calls") or 0),
            float(extra.get("cost_usd") or 0.0),
            ms,
        )
        s.score = score(item, text)
        return s

    def trace(self, trace_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/traces/{trace_id}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def llm_only(self, s: Served, llm_name: str) -> None:
        """The LLM's answer to the same request: cached, else the served answer when the LLM
        answered it, else the audit's answer, else one direct call to the engine's LLM."""
        text = self.llm_cache.get(s.item.id)
        if text is None and s.llm_calls > 0 and s.answered_by == llm_name:
            text = s.text
        if text is None:
            loop = self.trace(s.trace_id).get("loop") or {}
            for sh in loop.get("shadows", []):
                if sh["kind"] == "audit" and sh.get("text") is not None:
                    text = sh["text"]
        if text is None:
            engine = self.app.state.gateway.engine
            text = self._on_server(engine.llm.complete(capped(s.item, self.max_tokens))).text
        self.llm_cache[s.item.id] = text
        s.llm_text = text
        s.llm_score = score(s.item, text)

    def serve(
        self, phase: Phase, items: Sequence[WorkItem], model: str, track: bool = False
    ) -> None:
        phase.loop_before = self.loop_state()
        for i, item in enumerate(items):
            phase.served.append(self.ask(item, model))
            if track:  # the live estimate as a user of /v1/loop sees it after each request
                self.refresh()
                q = (self.loop_state()["strategies"].get(model) or {}).get("quality") or {}
                phase.estimates.append(
                    {
                        "request": i + 1,
                        **q,
                        "threshold": (
                            self.loop_state()["strategies"].get(model, {}).get("threshold")
                        ),
                    }
                )
            if (i + 1) % 10 == 0:
                self.log(f"  {phase.name}: {i + 1}/{len(items)}")
        self.drain()
        self.refresh()
        phase.loop_after = self.loop_state()

    def without_loop(self, phase: Phase, model: str, sample: int) -> None:
        """The first `sample` requests of the phase again, shadow and audit sampling off."""
        self.drain()
        saved: dict[str, Any] = {}
        self.set_loop(False, saved)
        try:
            for s in phase.served[:sample]:
                phase.without_loop_ms.append(self.ask(s.item, model).latency_ms)
                phase.with_loop_sample_ms.append(s.latency_ms)
        finally:
            self.set_loop(True, saved)

    # ---- the phases ------------------------------------------------------------------------

    def shadow(self, items: Sequence[WorkItem]) -> Phase:
        phase = Phase("shadow")
        self.serve(phase, items, SERVED_LLM)
        llm = self.app.state.gateway.engine.llm.name
        for s in phase.served:  # the LLM served: its answers are the LLM-only answers
            if s.llm_calls > 0 and s.answered_by == llm:  # not the fallback's
                self.llm_cache[s.item.id] = s.text
        gold = self.workdir / "gold.jsonl"
        with gold.open("w") as f:
            for s in phase.served[:GOLD_MAX]:
                f.write(json.dumps({"trace_id": s.trace_id, "answer": s.item.reference}) + "\n")
        rc, out = self.cli(["labels", "import", self.db, str(gold)])
        phase.notes.append(f"duetto labels import: exit {rc}: {out.strip()[-300:]}")
        self.log(phase.notes[-1])
        return phase

    def fit_and_promote(self) -> dict[str, Any]:
        out = self.workdir / "fit"
        argv = ["fit", self.db, "--out", str(out)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        rc, text = self.cli(argv)
        self.log(f"duetto fit: exit {rc}\n{text.strip()[-800:]}")
        fit: dict[str, Any] = {
            "command": "duetto " + " ".join(argv),
            "exit": rc,
            "output": text.strip()[-1500:],
        }
        path = out / "calibration.json"
        if not path.is_file():
            fit["promoted"] = False
            self.fit = fit
            return fit
        calibration = json.loads(path.read_text())
        report = out / "report.json"
        if report.is_file():
            rep = json.loads(report.read_text())
            fit["report"] = {k: rep.get(k) for k in ("notes",)}
        r = self.client.post("/admin/calibration", json={"calibration": calibration})
        fit["promoted"] = r.status_code == 200
        fit["promote_status"] = r.status_code
        fit["version"] = calibration.get("version", {}).get("hash")
        fit["threshold"] = calibration.get("strategies", {}).get(STRATEGY, {}).get("threshold")
        if rc == 2:
            fit["note"] = (
                "duetto fit said the held-out evidence does not support the target "
                "(exit 2): promoted anyway so the later phases run; an operator would "
                "wait for more data"
            )
        self.fit = fit
        return fit


# ---- figures ---------------------------------------------------------------------------------


def _ci(x: np.ndarray, seed: int = 0) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "ci_low": None, "ci_high": None}
    lo, hi = bootstrap(lambda idx: float(x[idx].mean()), x.size, n_boot=2000, seed=seed)
    return {"mean": float(x.mean()), "ci_low": float(lo), "ci_high": float(hi)}


def _p50(xs: Sequence[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _delta(after: dict[str, Any], before: dict[str, Any], model: str, key: str) -> float:
    a = (after.get("strategies", {}).get(model) or {}).get(key) or 0.0
    b = (before.get("strategies", {}).get(model) or {}).get(key) or 0.0
    return float(a) - float(b)


def audit_scores(rollout: Rollout, phase: Phase) -> list[float]:
    """One score per audited request of the phase (its agreement label, else its judge's)."""
    out = []
    for s in phase.served:
        labels = (rollout.trace(s.trace_id).get("loop") or {}).get("labels", [])
        audits = [lb for lb in labels if lb["kind"] == "audit"]
        chosen = [lb["score"] for lb in audits if lb["source"] == "agreement"] or [
            lb["score"] for lb in audits if lb["source"] == "judge"
        ]
        if chosen:
            out.append(sum(chosen) / len(chosen))
    return out


def by_stream(rollout: Rollout, phase: Phase) -> dict[str, Any]:
    """Per stream (intent, oos, math): requests, local share, duetto and LLM-only quality and,
    in the shadow phase, the quality of the SLM's background answers (the headroom)."""
    out: dict[str, Any] = {}
    for name in ("intent", "oos", "math"):
        rows = [s for s in phase.served if stream_of(s.item) == name]
        if not rows:
            continue
        entry: dict[str, Any] = {
            "requests": len(rows),
            "local_share": sum(s.llm_calls == 0 for s in rows) / len(rows),
            "quality": float(np.mean([s.score for s in rows])),
            "llm_only_quality": float(np.mean([s.llm_score for s in rows])),
        }
        if phase.name == "shadow":
            slm = []
            for s in rows:
                shadows = (rollout.trace(s.trace_id).get("loop") or {}).get("shadows", [])
                texts = [sh["text"] for sh in shadows if sh["kind"] == "shadow" and sh["text"]]
                if texts:
                    slm.append(score(s.item, texts[0]))
            entry["slm_shadow_quality"] = float(np.mean(slm)) if slm else None
            entry["slm_shadow_answers"] = len(slm)
        out[name] = entry
    return out


def summarise(rollout: Rollout, phase: Phase, model: str, target: float) -> dict[str, Any]:
    served = phase.served
    q = np.array([s.score for s in served], dtype=np.float64)
    ql = np.array([s.llm_score for s in served], dtype=np.float64)
    d = q - ql
    lo, hi = bootstrap(lambda idx: float(d[idx].mean()), d.size, n_boot=2000, seed=1)
    local = [s.llm_calls == 0 for s in served]
    oos = [s for s in served if stream_of(s.item) == "oos"]
    esc = [s for s in oos if s.llm_calls > 0]
    refused = [s for s in oos if s.llm_calls == 0 and s.score == 1.0]  # said out_of_scope
    llm_only_quality = float(ql.mean()) if ql.size else None
    quality = _ci(q)
    scores = audit_scores(rollout, phase) if phase.name != "shadow" else []
    est = estimate(scores, sum(local) / max(len(local), 1), target)
    gold_ratio = (quality["mean"] / llm_only_quality) if llm_only_quality else None
    live = (phase.loop_after.get("strategies", {}).get(model) or {}).get("quality")
    out: dict[str, Any] = {
        "name": phase.name,
        "model": model,
        "requests": len(served),
        "mix": mix_of([s.item for s in served]),
        "llm_call_share": 1.0 - sum(local) / max(len(local), 1),
        "cost_usd": float(sum(s.cost_usd for s in served)),
        "llm_only_cost_usd": _delta(
            phase.loop_after, phase.loop_before, model, "llm_only_cost_usd"
        ),
        "loop_cost_usd": float(phase.loop_after.get("loop_cost_usd", 0.0))
        - float(phase.loop_before.get("loop_cost_usd", 0.0)),
        "quality": quality,
        "llm_only_quality": llm_only_quality,
        "quality_delta_ci": [float(lo), float(hi)],
        "non_inferiority_floor": -0.05 * llm_only_quality if llm_only_quality else None,
        "audit_estimate": (
            {
                "mean": _num(est.mean),
                "ci_low": _num(est.ci_low),
                "ci_high": _num(est.ci_high),
                "audits": est.n,
                "audit_mean": _num(est.audit_mean),
                "target": target,
            }
            if phase.name != "shadow"
            else None
        ),
        "audit_estimate_live": live,
        "gold_quality_ratio": gold_ratio,
        "oos_requests": len(oos),
        "oos_escalated": (len(esc) + len(refused)) / len(oos) if oos else None,
        "oos_detail": {
            "escalated": len(esc),
            "refused_locally": len(refused),
            "answered_locally_otherwise": len(oos) - len(esc) - len(refused),
        },
        "user_latency_p50_ms": _p50([s.latency_ms for s in served]),
        "user_latency_p50_ms_without_loop": _p50(phase.without_loop_ms),
        "latency_sample": {
            "requests": len(phase.without_loop_ms),
            "p50_ms_with_loop_same_sample": _p50(phase.with_loop_sample_ms),
        },
        "by_stream": by_stream(rollout, phase),
        "notes": phase.notes,
    }
    if phase.name == "drift":
        out["requests_to_recover"] = requests_to_recover(phase.estimates, target)
        out["estimates"] = phase.estimates
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def requests_to_recover(estimates: Sequence[dict[str, Any]], target: float) -> int | None:
    """Requests of the drift phase until the live estimate is back at or above the target after
    it last fell below: 0 when it never fell below, None when it is still below at the end."""
    below = [i for i, e in enumerate(estimates) if e.get("mean") is not None and e["mean"] < target]
    if not below:
        return 0
    last = below[-1]
    return None if last == len(estimates) - 1 else int(estimates[last + 1]["request"])


def checks(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    p3, p4 = phases.get("promoted", {}), phases.get("drift", {})

    def audit_ok(p: dict[str, Any]) -> bool | None:
        a, g = p.get("audit_estimate") or {}, p.get("gold_quality_ratio")
        return None if a.get("mean") is None or g is None else abs(a["mean"] - g) <= 0.05

    def latency_ok(p: dict[str, Any]) -> bool | None:
        w = p.get("latency_sample", {}).get("p50_ms_with_loop_same_sample")
        wo = p.get("user_latency_p50_ms_without_loop")
        return None if not w or not wo else w <= 1.05 * wo

    floor = p3.get("non_inferiority_floor")
    return {
        "phase3_llm_share_le_50pct": p3.get("llm_call_share", 1.0) <= 0.5,
        "phase3_non_inferior": (None if floor is None else p3["quality_delta_ci"][0] >= floor),
        "phase3_oos_escalated_ge_90pct": (
            None if p3.get("oos_escalated") is None else p3["oos_escalated"] >= 0.9
        ),
        "audit_within_0.05_phase3": audit_ok(p3),
        "audit_within_0.05_phase4": audit_ok(p4),
        "drift_recovered_within_500": (
            None
            if not p4
            else p4.get("requests_to_recover") is not None and p4["requests_to_recover"] <= 500
        ),
        "latency_overhead_le_5pct": {n: latency_ok(p) for n, p in phases.items()},
    }


def table(result: dict[str, Any]) -> str:
    cols = (
        "phase",
        "n",
        "LLM%",
        "quality [95% CI]",
        "LLM-only",
        "delta CI",
        "audit est",
        "gold ratio",
        "OOS esc",
        "p50 ms",
        "no-loop",
    )
    rows = [cols]
    for p in result["phases"]:
        q, d = p["quality"], p["quality_delta_ci"]
        rows.append(
            (
                p["name"],
                str(p["requests"]),
                f"{100 * p['llm_call_share']:.0f}",
                f"{_f(q['mean'])} [{_f(q['ci_low'])}, {_f(q['ci_high'])}]",
                _f(p["llm_only_quality"]),
                f"[{d[0]:+.3f}, {d[1]:+.3f}]",
                _f((p.get("audit_estimate") or {}).get("mean")),
                _f(p["gold_quality_ratio"]),
                _f(p["oos_escalated"], 2),
                _f(p["user_latency_p50_ms"], 0),
                _f(p["user_latency_p50_ms_without_loop"], 0),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# ---- the whole run ---------------------------------------------------------------------------


def run(
    app: Any,
    server: Any,
    db: str,
    workdir: Path,
    shadow_items: Sequence[WorkItem],
    promoted_items: Sequence[WorkItem],
    drift_items: Sequence[WorkItem],
    *,
    latency_sample: int,
    target: float,
    cli: Cli = subprocess_cli,
    config: Path | None = None,
    log: Callable[[str], None] = print,
    max_tokens: int | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The four phases against a running gateway; the JSON of the benchmark, also handed to
    `checkpoint` after each phase (a run cut short keeps the phases it finished)."""
    ro = Rollout(app, server, db, workdir, cli=cli, config=config, log=log, max_tokens=max_tokens)
    llm_name = app.state.gateway.engine.llm.name
    t0 = time.time()
    result: dict[str, Any] = {
        "mix": {
            "shadow": mix_of(shadow_items),
            "promoted": mix_of(promoted_items),
            "drift": mix_of(drift_items),
            "note": "intents (banking77, clinc150 with its out-of-scope queries) as the easy "
            "majority, GSM8K as the hard tail; drift: "
            + ", ".join(f"{k} {v:.0%}" for k, v in DRIFT_MIX.items()),
        },
        "phases": [],
        "fit": None,
        "gold_audit_items": min(len(shadow_items), GOLD_MAX),
    }

    def done(phase: Phase, model: str) -> None:
        for s in phase.served:  # LLM-only answers, between phases (no user request waits)
            ro.llm_only(s, llm_name)
        result["phases"].append(summarise(ro, phase, model, target))
        final = ro.loop_state()
        result["loop_final"] = {
            k: final.get(k) for k in ("queues", "sampled", "labels", "judge_calls", "loop_cost_usd")
        }
        result["seconds"] = round(time.time() - t0, 1)
        result["checks"] = checks({p["name"]: p for p in result["phases"]})
        if checkpoint is not None:
            checkpoint(result)

    try:
        log(f"phase 1 shadow: {len(shadow_items)} requests to {SERVED_LLM}")
        p1 = ro.shadow(shadow_items)
        ro.without_loop(p1, SERVED_LLM, latency_sample)
        done(p1, SERVED_LLM)
        log("phase 2: duetto fit + promote")
        result["fit"] = ro.fit_and_promote()
        log(f"phase 3 promoted: {len(promoted_items)} requests to {STRATEGY}")
        p3 = Phase("promoted")
        ro.serve(p3, promoted_items, STRATEGY)
        ro.without_loop(p3, STRATEGY, latency_sample)
        done(p3, STRATEGY)
        log(f"phase 4 drift: {len(drift_items)} requests to {STRATEGY}")
        p4 = Phase("drift")
        ro.serve(p4, drift_items, STRATEGY, track=True)
        ro.without_loop(p4, STRATEGY, latency_sample)
        done(p4, STRATEGY)
    finally:
        ro.close()
    return result


def settings_for(
    cfg: Any, db: str, audit_share: float, min_labels: int, judge: str | None = None
) -> Any:
    from duetto.config import AuditConfig, ShadowConfig
    from duetto.gateway import GatewaySettings

    base = GatewaySettings.from_config(cfg, db=db)
    return base.model_copy(
        update={
            "shadow": {
                SERVED_LLM: ShadowConfig(candidate="slm", share=1.0, judge_share=0.0, queue=1024)
            },
            "audit": AuditConfig(
                judge=judge,
                share=audit_share,
                judge_share=0.0,
                queue=1024,
                window=500,
                min_labels=min_labels,
                refresh_s=1.0,
            ),
            "calibration_poll_s": 0.0,
        }
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--requests-per-phase", type=int, default=40)
    ap.add_argument(
        "--shadow-requests",
        type=int,
        default=None,
        help="phase 1 size (default: max(N, 60); duetto fit needs 40 labelled rows)",
    )
    ap.add_argument("--data", default=None, help="draw from the full datasets (../shared/datasets)")
    ap.add_argument("--audit-share", type=float, default=1.0)
    ap.add_argument("--min-labels", type=int, default=10, help="controller: audits per move")
    ap.add_argument("--latency-sample", type=int, default=10)
    ap.add_argument(
        "--max-tokens", type=int, default=None, help="cap every request's max_tokens (time)"
    )
    ap.add_argument(
        "--judge",
        default=None,
        help="judge of pairs agreement cannot label (default: the LLM; `slm`: local, cheap)",
    )
    a = ap.parse_args()
    # a kill ends the run through the context managers, so the stand-in server stops with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from duetto.config import load_default_config
    from duetto.engine import Engine
    from duetto.eval.traffic import load_traffic
    from duetto.gateway import create_app
    from duetto.testing.server_thread import ServerThread

    n = a.requests_per_phase
    n_shadow = a.shadow_requests or max(n, 60)
    data = Path(a.data) if a.data else None
    sizes = (
        None
        if data is None
        else {"train": max(480, 2 * n_shadow), "audit": 150, "test": max(360, 12 * n)}
    )
    train = rollout_items(load_traffic("train", data, sizes=sizes))
    test = rollout_items(load_traffic("test", data, sizes=sizes))
    shadow_items, promoted_items = train[:n_shadow], test[:n]
    drift_items = drifted(test[n:], n, DRIFT_MIX)
    cfg = load_default_config()
    target = 0.95
    load0 = os.getloadavg()
    config = {
        "command": "python benchmarks/staged_rollout.py " + " ".join(sys.argv[1:]),
        "traffic": "shipped sample (duetto/data/traffic)" if data is None else f"drawn from {data}",
        "shadow": "gateway.shadow.llm: candidate slm, share 1.0, judge_share 0 (agreement only)",
        "max_tokens_cap": a.max_tokens,
        "judge": a.judge or "the LLM (only pairs agreement cannot label: judge_share 0)",
        "audit": f"gateway.audit: share {a.audit_share}, judge_share 0, min_labels "
        f"{a.min_labels}, step 0.05, target {target} (quality=0.95 of the defaults)",
        "latency_sample": f"first {a.latency_sample} requests of each phase replayed with "
        "shadow/audit sampling off (after a drain)",
        "loadavg_before": load0,
    }
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(result: dict[str, Any]) -> None:
        result["config"] = {**config, "loadavg_after": os.getloadavg()}
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(table(result), flush=True)

    with tempfile.TemporaryDirectory(prefix="rollout-") as tmp:
        db = str(Path(tmp) / "gateway.db")
        app = create_app(Engine(cfg), settings_for(cfg, db, a.audit_share, a.min_labels, a.judge))
        with ServerThread(app, start_timeout_s=600) as server:
            result = run(
                app,
                server,
                db,
                Path(tmp),
                shadow_items,
                promoted_items,
                drift_items,
                latency_sample=a.latency_sample,
                target=target,
                max_tokens=a.max_tokens,
                checkpoint=write,
            )
    print(json.dumps(result["checks"], indent=2))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
