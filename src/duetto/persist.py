"""One way to keep fitted state on disk: a JSON header and numpy arrays in one `.npz` (no pickle,
so loading a file never runs code).

    path = save_state("router.npz", {"kind": "knn", "params": {...}}, {"bank": array})
    header, arrays = load_state(path, expected="a router .npz written by Router.save")

Objects with fitted state split it into JSON-able `params` and named arrays (routers:
`_params`/`_arrays`; distill students: `state()` / `from_state(params, arrays)`). The header
gets `"format": FORMAT_VERSION`. Arrays are stored under `a_<name>`, the header under
`__header__`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from duetto.errors import DataError

FORMAT_VERSION = 1


def save_state(
    path: str | Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> Path:
    """Write `header` (JSON) and `arrays` to `path` (".npz" added when missing)."""
    out = Path(path)
    if out.suffix != ".npz":
        out = out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    head = {"format": FORMAT_VERSION, **header}
    named = {f"a_{k}": np.asarray(v) for k, v in arrays.items()}
    np.savez(out, __header__=np.array(json.dumps(head)), **named)  # type: ignore[arg-type]
    return out


def load_state(path: str | Path, expected: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a file written by `save_state`; DataError naming `expected` else."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p), expected=expected)
    try:
        with np.load(p, allow_pickle=False) as z:
            header = json.loads(str(z["__header__"]))
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"unreadable file ({e})", file=str(p), expected=expected) from e
    if not isinstance(header, dict):
        raise DataError("no JSON header", file=str(p), expected=expected)
    return header, arrays
