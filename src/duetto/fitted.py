"""What calibration learned, saved to a file and applied again: `duetto eval` → `duetto serve`.

`duetto eval` fits, per thresholded strategy, a threshold (to the user's target), a verifier
calibrator (isotonic/Platt), a learned scorer (the task prior) and a learned verifier. Without
this file a served strategy would start from scratch: raw confidences, unfitted priors. The file:

    {"format": "duetto-fitted/1", "target": "quality=0.95", "strategies": {
        NAME: {"threshold": 0.62, "calibrator": {"kind": "isotonic", ...} | null,
               "scorer": {"kind": "task_prior", ...} | null,
               "verifier": {"kind": "learned", ...} | null}}}

`export_fitted(strategies)` reads it off built strategies; `apply_fitted(strategies, state)`
writes it into freshly built ones (an adaptive policy starts from the saved threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from duetto.errors import ConfigError
from duetto.scoring.verifiers import calibrator_from_dict, is_fitted

FORMAT = "duetto-fitted/1"


def _state_of(obj: Any) -> dict[str, Any] | None:
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def export_fitted(strategies: Mapping[str, Any], target: str | None = None) -> dict[str, Any]:
    """The fitted part of every thresholded strategy that has a threshold."""
    out: dict[str, Any] = {}
    for name, strat in strategies.items():
        threshold = getattr(strat, "threshold", None)
        if threshold is None:
            continue
        entry: dict[str, Any] = {"threshold": _number(float(threshold))}
        calibrator = getattr(strat, "calibrator", None)
        entry["calibrator"] = _state_of(calibrator) if is_fitted(calibrator) else None
        scorer = getattr(strat, "scorer", None)
        entry["scorer"] = _state_of(scorer) if hasattr(scorer, "load_dict") else None
        verifier = getattr(strat, "verifier", None)
        entry["verifier"] = _state_of(verifier) if hasattr(verifier, "load_dict") else None
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
        if not hasattr(strat, "threshold"):
            raise ConfigError(f"{name!r} is not a thresholded strategy", f"strategies.{name}")
        try:
            if entry.get("calibrator") is not None:
                strat.calibrator = calibrator_from_dict(entry["calibrator"])
            if entry.get("scorer") is not None:
                strat.scorer.load_dict(entry["scorer"])
            if entry.get("verifier") is not None:
                strat.verifier.load_dict(entry["verifier"])
            strat.threshold = float(entry["threshold"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"bad fitted state: {exc}", f"strategies.{name}") from exc
        policy = getattr(strat, "policy", None)
        if policy is not None and hasattr(policy, "reset"):
            policy.reset(strat.threshold)  # the adaptive part starts where calibration ended
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
