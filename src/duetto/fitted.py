"""What calibration learned, saved to a file and applied again: `duetto eval` → `duetto serve`.

`duetto eval` fits, per tunable strategy (strategies.base.Tunable), a threshold (to the user's
target), a verifier calibrator (isotonic/Platt), a learned scorer (the task prior) and a learned
verifier. Without this file a served strategy would start from scratch: raw confidences,
unfitted priors. The file:

    {"format": "duetto-fitted/1", "target": "quality=0.95", "strategies": {
        NAME: {"threshold": 0.62, "calibrator": {"kind": "isotonic", ...} | null,
               "scorer": {"kind": "task_prior", ...} | null,
               "verifier": {"kind": "learned", ...} | null}}}

`export_fitted(strategies)` formats each strategy's `state()`; `apply_fitted(strategies,
state)` hands each entry to `load_state()` (which restarts an adaptive policy from the saved
threshold). This module only formats and does file I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from duetto.errors import ConfigError
from duetto.strategies.base import Tunable

FORMAT = "duetto-fitted/1"
PARTS = ("calibrator", "scorer", "verifier")  # every entry lists all three (null when absent)


def export_fitted(strategies: Mapping[str, Any], target: str | None = None) -> dict[str, Any]:
    """The fitted part of every tunable strategy that has a threshold."""
    out: dict[str, Any] = {}
    for name, strat in strategies.items():
        if not isinstance(strat, Tunable):
            continue
        state = strat.state()
        if state.get("threshold") is None:
            continue
        entry: dict[str, Any] = {"threshold": _number(float(state["threshold"]))}
        entry.update({part: state.get(part) for part in PARTS})
        out[name] = entry
    return {"format": FORMAT, "target": target, "strategies": out}


def apply_fitted(strategies: Mapping[str, Any], state: Mapping[str, Any]) -> list[str]:
    """Set thresholds, calibrators and scorer states; returns the names applied.

    A name in the file that the config does not define is an error (a stale file would
    otherwise be applied silently to nothing)."""
    entries = check_fitted(state, strategies)
    applied = []
    for name, entry in entries.items():
        strat = strategies[name]
        if not isinstance(strat, Tunable):
            raise ConfigError(f"{name!r} is not a thresholded strategy", f"strategies.{name}")
        try:
            strat.load_state(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad fitted state: {exc}", f"strategies.{name}") from exc
        applied.append(name)
    return applied


def _number(x: float) -> float | str:
    """JSON has no infinity: "inf" (escalate everything) / "-inf" are read back by float()."""
    return x if math.isfinite(x) else str(x)


def check_fitted(state: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The per-strategy entries, after checking the format and that every name exists."""
    if state.get("format") != FORMAT:
        raise ConfigError(f"not a duetto fitted-state file (expected format {FORMAT!r})", "format")
    entries = state.get("strategies")
    if not isinstance(entries, dict):
        raise ConfigError("expected a mapping of strategy names", "strategies")
    known = set(names)
    for name in entries:
        if name not in known:
            raise ConfigError(
                f"the file calibrates {name!r}, which this config does not define",
                f"strategies.{name}",
            )
    return entries


def save_fitted(state: Mapping[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(state, indent=2, allow_nan=False) + "\n")
    return p


def load_fitted(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"fitted-state file not found: {p}", "calibration") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not JSON ({exc})", "calibration") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object", "calibration")
    return data
