from pathlib import Path

import pytest

from duetto.config import all_errors, build_order, load_default_config, parse_config
from duetto.errors import ConfigError

BASE = {
    "models": {
        "slm": {"backend": "fake"},
        "llm": {"backend": "fake", "card": {"location": "remote"}},
    },
}


def cfg(strategies, **top):
    return {**BASE, "strategies": strategies, **top}


def test_defaults_load_and_name_models() -> None:
    c = load_default_config()
    assert c.slm_name() == "slm" and c.llm_name() == "llm"
    assert {s.mode for s in c.strategies.values()} >= {
        "pipeline",
        "route",
        "cascade",
        "assist",
        "fuse",
    }


def test_unknown_model_names_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(cfg({"c": {"mode": "cascade", "models": ["slm", "gpt"], "threshold": 0.5}}))
    assert e.value.path == "strategies.c.models[1]"


def test_cycle_rejected() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        parse_config(
            cfg(
                {
                    "a": {"mode": "fuse", "models": ["slm", "b"]},
                    "b": {"mode": "fuse", "models": ["llm", "a"]},
                }
            )
        )


def test_missing_threshold_and_target() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(cfg({"c": {"mode": "cascade", "models": ["slm", "llm"]}}))
    assert e.value.path == "strategies.c.threshold"
    parse_config(cfg({"c": {"mode": "cascade", "models": ["slm", "llm"]}}, target="llm_share=0.3"))


def test_bad_field_path_and_order() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"models": {"slm": {"backend": "nope"}}})
    assert e.value.path == "models.slm.backend"
    c = parse_config(
        cfg(
            {
                "outer": {"mode": "fuse", "models": ["inner", "llm"]},
                "inner": {"mode": "cascade", "models": ["slm", "llm"], "threshold": 0.5},
            }
        )
    )
    assert build_order(c) == ["inner", "outer"]


def test_validate_lists_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "models:\n  slm: {backend: fake}\nstrategies:\n  c: {mode: cascade, models: [slm, x]}\n"
    )
    errs = all_errors(p)
    assert errs and "strategies.c.models[1]" in errs[0]


def test_reference_config_is_valid() -> None:
    ref = Path(__file__).resolve().parents[2] / "examples" / "duetto.yaml"
    assert all_errors(ref) == []


def test_config_error_under_keeps_the_bare_message() -> None:
    e = ConfigError("expected at least 1", "samples").under("strategies.f")
    assert (e.path, e.message) == ("strategies.f.samples", "expected at least 1")
    assert str(e) == "strategies.f.samples: expected at least 1"
    assert ConfigError("bad", "[0].when").under("rules").path == "rules[0].when"
    assert ConfigError("bad").under("target").path == "target"
    both = ConfigError("a", "x", [("x", "a"), ("y", "b")]).under("top")
    assert both.errors == [("top.x", "a"), ("top.y", "b")]
    assert str(both) == "top.x: a\ntop.y: b"
