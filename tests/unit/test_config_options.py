"""Typed strategy options: every misspelt key and unknown kind is an error naming its path, at
load, without building a model; `duetto validate` lists them all."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from duetto.config import all_errors, parse_config
from duetto.engine import Engine
from duetto.errors import ConfigError
from duetto.messages import ChatRequest

ROOT = Path(__file__).resolve().parents[2]
MODELS = {
    "slm": {"backend": "fake", "card": {"name": "small-card", "location": "local"}},
    "llm": {"backend": "fake", "card": {"location": "remote", "trusted": False}},
}


def load(strategies: dict[str, Any], **top: Any) -> Any:
    return parse_config({"models": MODELS, "strategies": strategies, **top})


def errors_of(strategies: dict[str, Any], **top: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        load(strategies, **top)
    return e.value.errors


CASCADE = {"mode": "cascade", "models": ["slm", "llm"], "threshold": 0.5}
ROUTE = {"mode": "route", "models": ["slm", "llm"], "threshold": 0.5}
PIPE = {"mode": "pipeline", "stages": [{"model": "llm"}, {"model": "slm"}]}
FUSE = {"mode": "fuse", "models": ["slm", "llm"]}
REDACT = {"mode": "assist", "kind": "redact", "answerer": "llm"}
COMPRESS = {"mode": "assist", "kind": "compress", "answerer": "llm"}
HINTS = {"mode": "assist", "kind": "hints", "teacher": "llm", "student": "slm"}
FALLBACK = {"mode": "fallback", "primary": "llm", "backup": "slm"}


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**CASCADE, "pass_draf": True}, "strategies.s.pass_draf"),
        ({**ROUTE, "threshhold": 0.6}, "strategies.s.threshhold"),
        ({**PIPE, "stage": []}, "strategies.s.stage"),
        (
            {"mode": "pipeline", "stages": [{"model": "llm", "pass": "draft"}]},
            "strategies.s.stages[0].pass",
        ),
        ({**FUSE, "normalize": "number"}, "strategies.s.normalize"),
        ({**REDACT, "answer": "llm"}, "strategies.s.answer"),
        ({**COMPRESS, "compresor": "slm"}, "strategies.s.compresor"),
        ({**HINTS, "techer": "llm"}, "strategies.s.techer"),
        ({**FALLBACK, "timeout": 3}, "strategies.s.timeout"),
        (
            {**CASCADE, "verifier": {"kind": "judge", "model": "llm", "modle": "x"}},
            "strategies.s.verifier.modle",
        ),
        ({**CASCADE, "verifier": {"mising": 0.1}}, "strategies.s.verifier.mising"),
        ({**ROUTE, "scorer": {"kind": "length", "scale": 3}}, "strategies.s.scorer.scale"),
        (
            {**ROUTE, "rules": [{"when": {"taks": "math"}, "target": "llm"}]},
            "strategies.s.rules[0].when.taks",
        ),
        ({**ROUTE, "rules": [{"wen": {}, "target": "llm"}]}, "strategies.s.rules[0].wen"),
        ({**FUSE, "threshold": 0.5}, "strategies.s.threshold"),  # fuse has no threshold
    ],
)
def test_a_misspelt_key_is_an_error_naming_its_path(spec: dict[str, Any], path: str) -> None:
    assert errors_of({"s": spec}) == [(path, "extra inputs are not permitted")]


def test_a_misspelt_key_in_the_privacy_table() -> None:
    privacy = {"routes": {"slm": {"mode": "redact", "entity_type": ["PERSON"]}}}
    assert errors_of({}, privacy=privacy) == [
        ("privacy.routes.slm.entity_type", "extra inputs are not permitted")
    ]
    assert errors_of({}, privacy={"defualt": "redact"}) == [
        ("privacy.defualt", "extra inputs are not permitted")
    ]


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({**CASCADE, "verifier": {"kind": "oracle"}}, "strategies.s.verifier.kind", "'oracle'"),
        ({**ROUTE, "scorer": {"kind": "bert"}}, "strategies.s.scorer.kind", "'bert'"),
        ({"mode": "assist", "kind": "summarise"}, "strategies.s.kind", "redact, compress, hints"),
        (
            {"mode": "magic"},
            "strategies.s.mode",
            "cascade, route, pipeline, fuse, assist, fallback",
        ),
        ({"models": ["slm"]}, "strategies.s.mode", "field required"),
        ({**CASCADE, "calibrator": "sigmoid"}, "strategies.s.calibrator", "'isotonic', 'platt'"),
        ({**FUSE, "normalise": "lower"}, "strategies.s.normalise", "'text', 'number' or 'choice'"),
        ({**CASCADE, "models": ["slm"]}, "strategies.s.models", "at least 2 items"),
        (
            {**ROUTE, "rules": [{"when": {"has_pii": "yes"}, "target": "llm"}]},
            "strategies.s.rules[0].when.has_pii",
            "boolean",
        ),
    ],
)
def test_an_unknown_kind_or_bad_value_fails_at_load(
    spec: dict[str, Any], path: str, words: str
) -> None:
    [(where, message)] = errors_of({"s": spec})
    assert where == path and words in message


def test_names_are_checked_through_typed_options() -> None:
    judge = {**CASCADE, "verifier": {"kind": "judge", "model": "gpt"}}
    bad = {
        "c": judge,
        "f": {**FUSE, "method": "aggregate", "aggregator": "nobody"},
        "fb": {**FALLBACK, "backup": "backup"},
        "r": {**ROUTE, "rules": [{"when": {"task": "math"}, "target": "gpt"}]},
    }
    paths = [p for p, _ in errors_of(bad)]
    assert paths == [
        "strategies.c.verifier.model",
        "strategies.f.aggregator",
        "strategies.fb.backup",
        "strategies.r.rules[0].target",
    ]
    together = {
        "j": {**FUSE, "method": "judge"},
        "one": {**FUSE, "models": ["slm"]},
        "z": {**COMPRESS, "method": "llm"},
    }
    assert errors_of(together) == [
        ("strategies.j.judge", "method judge needs a judge model"),
        ("strategies.one.samples", "a fusion needs at least two candidates (models × samples)"),
        ("strategies.z.compressor", "method llm needs a compressor model"),
    ]
    cycle = {"a": {**FALLBACK, "primary": "b"}, "b": {**FALLBACK, "primary": "a"}}
    [(path, message)] = errors_of(cycle)
    assert path == "strategies.a" and message == "cycle between strategies: a -> b -> a"


def test_every_error_is_listed_at_once(tmp_path: Path) -> None:
    bad = {
        "models": MODELS,
        "strategies": {
            "c1": {**CASCADE, "pass_draf": True, "verifier": {"kind": "oracle"}},
            "p": {"mode": "pipeline", "stages": [{"model": "slm", "rol": "x"}]},
        },
        "privacy": {"routes": {"slm": "share_all"}},
    }
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    assert sorted(all_errors(p)) == [
        "privacy.routes.slm: input should be 'allow', 'redact' or 'local_only'",
        "strategies.c1.pass_draf: extra inputs are not permitted",
        "strategies.c1.verifier.kind: unknown kind 'oracle' "
        "(expected one of: logprob, self, judge, learned)",
        "strategies.p.stages[0].rol: extra inputs are not permitted",
    ]


BAD_YAML = """\
models:
  slm: {backend: local, path: smollm2}
  llm: {backend: standin, card: {location: remote}}
target: quality=0.9
privacy: {default: redact, routes: {slm: {mode: redact, entity_type: [PERSON]}}}
strategies:
  c1: {mode: cascade, models: [slm, llm], pass_draf: true, verifier: {kind: oracle}}
  r1: {mode: route, models: [slm, llm], threshhold: 0.6}
  p1: {mode: pipeline, stages: [{model: slm, rol: x}]}
  f1: {mode: fuse, models: [slm, llm], normalize: number}
  a1: {mode: assist, kind: redact, answerer: llm, answer: llm}
  fb: {mode: fallback, primary: llm, backup: slm, timeout: 3}
  rr: {mode: route, models: [slm, llm], threshold: 0.5, rules: [{when: {taks: x}, target: llm}]}
"""
BAD_KEYS = [
    "strategies.c1.pass_draf",
    "strategies.c1.verifier.kind",
    "strategies.r1.threshhold",
    "strategies.p1.stages[0].rol",
    "strategies.f1.normalize",
    "strategies.a1.answer",
    "strategies.fb.timeout",
    "strategies.rr.rules[0].when.taks",
    "privacy.routes.slm.entity_type",
]

# `duetto validate` through the real CLI entry point, then what it imported.
PROBE = """
import json, sys
from duetto.cli.main import app
try:
    app(["validate", sys.argv[1]])
except SystemExit as exc:
    code = exc.code
heavy = ["llama_cpp", "torch", "fastapi", "presidio_analyzer", "matplotlib", "sklearn"]
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_duetto_validate_names_every_bad_key_and_starts_no_model(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD_YAML)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = subprocess.run(
        [sys.executable, "-m", "duetto.cli.main", "validate", str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert cli.returncode == 1
    lines = cli.stderr.strip().splitlines()
    assert sorted(line.removeprefix("error: ").split(": ")[0] for line in lines) == sorted(BAD_KEYS)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 2.0  # CPU seconds, not wall time: the check must not depend on machine load
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(p)], capture_output=True, text=True, timeout=60
    )
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result == {"code": 1, "loaded": []}


@pytest.mark.parametrize("path", ["examples/duetto.yaml", "src/duetto/data/defaults.yaml"])
def test_shipped_configs_validate(path: str) -> None:
    assert all_errors(ROOT / path) == []


# --- the mapping from options to strategies ------------------------------------------------------


async def test_options_map_to_constructors() -> None:
    from duetto.answers import number_key
    from duetto.scoring.verifiers import PlattCalibrator
    from duetto.strategies.route import FittedTaskPrior, LengthScorer

    cfg = load(
        {
            "c": {**CASCADE, "calibrator": "platt", "pass_draft": True},
            "learned": {**CASCADE, "verifier": {"kind": "learned", "l2": 2.0}},
            "r": {**ROUTE, "scorer": {"kind": "length", "scale_chars": 50}, "lam": 0.25},
            "tp": {**ROUTE, "scorer": {}},
            "p": {
                **PIPE,
                "stages": [{"model": "llm", "pass_as": "draft"}, {"model": "slm", "role": "fmt"}],
            },
            "f": {**FUSE, "normalise": "number", "samples": 2},
            "z": {**COMPRESS, "method": "llm", "compressor": "slm"},
            "h": {**HINTS, "kind": "fewshot"},
        }
    )
    async with Engine(cfg) as engine:
        s: Any = engine.strategies
        assert isinstance(s["c"].calibrator, PlattCalibrator) and s["c"].pass_draft is True
        assert s["learned"].calibrator is None and s["learned"].verifier.l2 == 2.0
        assert isinstance(s["r"].scorer, LengthScorer) and s["r"].scorer.scale == 50
        assert s["r"].lam == 0.25 and isinstance(s["tp"].scorer, FittedTaskPrior)
        assert [(st.role, st.pass_as) for st in s["p"].stages] == [
            ("stage0", "draft"),
            ("fmt", "context"),
        ]
        assert s["f"].normalise is number_key and s["f"].samples == 2
        assert s["z"].compress_mode == "llm" and s["z"].compressor.name == "small-card"
        assert s["h"].guidance_kind == "fewshot"


async def test_fuse_normalise_changes_the_vote() -> None:
    three = {
        "a": {"backend": "fake", "script": "4"},
        "b": {"backend": "fake", "script": "x = 3"},
        "c": {"backend": "fake", "script": "3.0"},
    }
    for normalise, answer in (("text", "4"), ("number", "x = 3")):
        fuse = {"mode": "fuse", "models": ["a", "b", "c"], "normalise": normalise}
        cfg = parse_config({"models": three, "strategies": {"f": fuse}})
        async with Engine(cfg) as engine:
            out = await engine.get("f").complete(ChatRequest.of("what is 1 + 2?"))
        assert out.text == answer


async def test_rule_targets_are_config_names() -> None:
    """`target: slm` pins the model named slm in the config, whatever its card is called."""
    rules = [{"when": {"has_pii": True}, "target": "slm"}]
    cfg = load({"c": {**CASCADE, "rules": rules}, "r": {**ROUTE, "rules": rules}})
    async with Engine(cfg) as engine:
        for name in ("c", "r"):
            out = await engine.get(name).complete(ChatRequest.of("mail ann@example.com"))
            assert out.trace.decision == "rule"
            assert out.trace.extra["rule_target"] == "small-card"


async def test_fallback_mode_maps_to_the_fallback_strategy() -> None:
    fallback = pytest.importorskip("duetto.strategies.fallback")  # lands with branch i-seam
    spec = {**FALLBACK, "timeout_s": 2.5, "continue_streams": False}
    async with Engine(load({"fb": spec})) as engine:
        fb: Any = engine.get("fb")
        assert isinstance(fb, fallback.Fallback)
        assert (fb.primary.name, fb.backup.name) == ("llm", "small-card")
        assert fb.timeout_s == 2.5 and fb.continue_streams is False
