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

A file written by `stamp` (every writer: `duetto eval`, `duetto fit`, the shipped default) also
says which calibration it is and where it came from, so a served trace can name the calibration
that decided it (`calibration_version`) and a promoted file can be told from the running one:

    "version": {"hash": "3f2a9c01b7de", "created": "2026-12-03T23:10:00Z"},
    "made_by": "duetto fit duetto-gateway.db --strategy cascade-logprob"

`hash` is the SHA-256 (first 12 hex digits) of the content without these two keys; `check_fitted`
refuses a file whose content no longer matches it, a NaN or non-numeric threshold, an unknown
strategy, or a wrong format, so a bad file can never replace a good one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
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
    """The per-strategy entries, after checking the format, that every name exists, that every
    threshold is a number (not NaN) and that a stamped version matches the content."""
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise ConfigError(f"not a duetto fitted-state file (expected format {FORMAT!r})", "format")
    entries = state.get("strategies")
    if not isinstance(entries, dict):
        raise ConfigError("expected a mapping of strategy names", "strategies")
    known = set(names)
    for name, entry in entries.items():
        if name not in known:
            raise ConfigError(
                f"the file calibrates {name!r}, which this config does not define",
                f"strategies.{name}",
            )
        if not isinstance(entry, Mapping):
            raise ConfigError("expected an object", f"strategies.{name}")
        _check_threshold(entry.get("threshold"), f"strategies.{name}.threshold")
    stamped = state.get("version")
    if stamped is not None:
        if not isinstance(stamped, Mapping) or not isinstance(stamped.get("hash"), str):
            raise ConfigError("expected {hash, created}", "version")
        if stamped["hash"] != content_hash(state):
            raise ConfigError(
                f"the content does not match its version {stamped['hash']} (edited or "
                "corrupted: re-stamp it with duetto.fitted.stamp)",
                "version",
            )
    return entries


def _check_threshold(value: Any, path: str) -> None:
    try:
        t = float(value)  # "inf"/"-inf" are valid (JSON has no infinity)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold {value!r} is not a number", path) from None
    if isinstance(value, bool) or math.isnan(t):
        raise ConfigError(f"threshold {value!r} is not a number", path)


def uncalibrated(cfg: Any, state: Mapping[str, Any] | None) -> list[str]:
    """Thresholded strategies of a config (cascade, route) that `state` leaves without a
    threshold: no fixed `threshold`, not adaptive, not in the file. Checked before serving."""
    fitted = set((state or {}).get("strategies") or {})
    return [
        name
        for name, sc in cfg.strategies.items()
        if getattr(sc, "mode", None) in ("cascade", "route")
        and getattr(sc, "threshold", None) is None
        and not getattr(sc, "adaptive", False)
        and name not in fitted
    ]


# --- versions ------------------------------------------------------------------------------

STAMP_KEYS = ("version", "made_by")


def content_hash(state: Mapping[str, Any]) -> str:
    """SHA-256 (12 hex digits) of the calibration's content: everything but its stamp."""
    body = {k: v for k, v in state.items() if k not in STAMP_KEYS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def stamp(state: Mapping[str, Any], made_by: str, created: float | None = None) -> dict[str, Any]:
    """`state` with its version (content hash, creation time in UTC) and the command that made
    it. Deterministic given `created`."""
    when = time.gmtime(time.time() if created is None else created)
    out = {k: v for k, v in state.items() if k not in STAMP_KEYS}
    out["version"] = {
        "hash": content_hash(out),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", when),
    }
    out["made_by"] = made_by
    return out


def version_of(state: Mapping[str, Any] | None) -> str | None:
    """The calibration's version: its stamped hash, else the hash of its content."""
    if state is None:
        return None
    stamped = state.get("version")
    if isinstance(stamped, Mapping) and isinstance(stamped.get("hash"), str):
        return str(stamped["hash"])
    return content_hash(state)


def default_calibration() -> dict[str, Any]:
    """The calibration shipped for the embedded defaults (src/duetto/data/calibration.json,
    made by scripts/make_default_calibration.py)."""
    from importlib.resources import files

    shipped = files("duetto.data").joinpath("calibration.json")
    if not shipped.is_file():
        raise ConfigError(
            "the shipped calibration is missing: python scripts/make_default_calibration.py",
            "calibration",
        )
    return dict(json.loads(shipped.read_text()))


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
