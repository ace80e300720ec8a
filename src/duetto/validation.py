"""Pydantic for every config section: unknown keys are errors, and one `ConfigError` lists every
bad key by its path (`strategies.c1.pass_draf: extra inputs are not permitted`).

Plain data: used by the config, the privacy table and the routing rules alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from duetto.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A config section: a key it does not declare is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def path_of(loc: Sequence[Any], data: Any, missing: bool = False) -> str:
    """`("strategies", "c1", "cascade", "models", 1)` → `strategies.c1.models[1]`.

    Pydantic's location also names the branch of a union (`cascade`, `str`, `list[str]`).
    Walking the input alongside tells them apart: a key is a key of the mapping it is read
    from (or, last in the location, a missing field); anything else is a branch name."""
    out = ""
    cur = data
    for i, part in enumerate(loc):
        if isinstance(part, str):
            is_key = isinstance(cur, dict) and (part in cur or (missing and i == len(loc) - 1))
            if not is_key:
                continue
            out += f".{part}" if out else part
            cur = cur.get(part)
        else:
            out += f"[{part}]"
            ok = isinstance(cur, list | tuple) and isinstance(part, int) and 0 <= part < len(cur)
            cur = cur[part] if ok else (cur.get(part) if isinstance(cur, dict) else None)
    return out


def _message(err: Any) -> tuple[str, str]:
    """(extra path, message) of one pydantic error, in duetto's words."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "kind")).strip("'\"")
        if kind == "union_tag_not_found":
            return key, "field required"
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return key, f"unknown {key} {ctx.get('tag')!r} (expected one of: {expected})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return "", msg[:1].lower() + msg[1:]


def config_error(exc: ValidationError, data: Any, prefix: str = "") -> ConfigError:
    """Every error of `exc` with its full path; `data` is the input that was validated."""
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        extra, msg = _message(err)
        path = path_of(tuple(err["loc"]), data, missing=err["type"] == "missing")
        if extra:
            path = f"{path}.{extra}" if path else extra
        if (path, msg) not in errors:
            errors.append((path, msg))
    out = ConfigError(errors[0][1], errors[0][0], errors)
    return out.under(prefix) if prefix else out


def validate_as(model: type[M], data: Any, prefix: str = "") -> M:
    """`model.model_validate(data)`, with a pydantic error turned into a ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, data, prefix) from exc
