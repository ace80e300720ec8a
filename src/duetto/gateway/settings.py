"""Runtime settings of the gateway: the config's `gateway:` section, resolved.

`GatewaySettings` is `GatewayConfig` (the same pydantic model, same fields and defaults) plus
what only exists at run time: keys resolved to their SHA-256 (`ApiKey`; the plain key lives in
the environment, never in the config, the store or memory), the privacy table and detector, the
local model for `local_only` requests, and a few operational limits. Build it with
`GatewaySettings.from_config(cfg)`; `create_app(engine)` does, so Python and `duetto serve`
serve the same thing. The defaults `duetto serve` relies on live here:

- the PII detector is `auto` (Presidio when the privacy extra is installed, else regex) unless
  the config names one, as `privacy.detector` documents;
- the embedded defaults (`load_default_config()`, `duetto serve` without CONFIG) fall back to
  their local SLM when the stand-in fails or a strategy needs calibration (the trace says so).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from pydantic import ConfigDict, Field, InstanceOf

from duetto.config import Config, GatewayConfig
from duetto.errors import ConfigError
from duetto.gateway.auth import ApiKey, hash_key
from duetto.privacy.apply import DetectorChoice
from duetto.privacy.policy import PolicyTable, PrivacyPolicy


def _allow_all() -> PolicyTable:
    return PolicyTable(default=PrivacyPolicy("allow"))


class GatewaySettings(GatewayConfig):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # resolved: hashes only; empty: no authentication (local use)
    keys: list[ApiKey] = Field(default_factory=list)  # type: ignore[assignment]
    redact_store: bool = False  # every stored copy; non-`allow` requests are always redacted
    fallback_timeout_s: float = Field(120.0, gt=0)
    privacy: InstanceOf[PolicyTable] = Field(default_factory=_allow_all)
    detector: DetectorChoice | None = None  # installed at start; None: keep the current one
    local_model: str | None = None  # answers `local_only` requests (if trusted), else fallback
    reservation_ttl_s: float = 900.0  # a reservation older than this was left by a crash
    default_max_tokens: int = 512
    store_prefix: str = "duetto_"
    max_sessions: int = 10_000
    leak_rescan_queue: int = Field(64, ge=1)  # full: a sampled re-scan is dropped (and counted)
    admin_keys: list[str] = Field(default_factory=list)  # names of the keys with `admin: true`
    calibration_poll_s: float = Field(5.0, ge=0)  # replicas check for a promoted calibration
    # True: a request's record is committed before the client gets the end of its answer (a
    # kill -9 never loses an answered request). False: answer first, store right after (the
    # commit leaves the latency path; a crash in between loses those records)
    store_before_answer: bool = True

    @classmethod
    def from_config(cls, cfg: Config, *, db: str | None = None) -> GatewaySettings:
        gw = cfg.gateway
        privacy = cfg.privacy.table()
        try:
            local: str | None = cfg.slm_name()
        except ConfigError:  # no local model: the fallback answers local_only requests, if trusted
            local = None
        resolved: dict[str, Any] = {
            "db": db or gw.db,
            "keys": _resolve_keys(gw),
            "fallback": gw.fallback or (local if is_embedded_defaults(cfg) else None),
            "fallback_timeout_s": gw.request_timeout_s,
            "redact_store": (
                gw.redact_store if gw.redact_store is not None else privacy.default.mode != "allow"
            ),
            "privacy": privacy,
            "detector": cfg.privacy.detector or "auto",
            "local_model": local,
            "admin_keys": [k.name for k in gw.keys if k.admin],
        }
        return cls(**{**{name: value for name, value in gw}, **resolved})


def _resolve_keys(gw: GatewayConfig) -> list[ApiKey]:
    keys: list[ApiKey] = []
    for i, k in enumerate(gw.keys):
        if k.key_sha256:
            digest = k.key_sha256
        else:
            value = os.environ.get(k.key_env or "")
            if not value:
                raise ConfigError(
                    f"environment variable {k.key_env} is not set", f"gateway.keys[{i}].key_env"
                )
            digest = hash_key(value)
        keys.append(ApiKey(k.name, digest, k.budget_usd, k.rpm))
    return keys


def is_embedded_defaults(cfg: Config) -> bool:
    return cfg.model_dump() == _embedded_defaults()


@cache
def _embedded_defaults() -> dict[str, Any]:
    from duetto.config import load_default_config

    return load_default_config().model_dump()
