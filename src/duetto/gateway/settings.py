"""Runtime settings of the gateway, resolved from the config's `gateway:` and `privacy:` sections.

Keys are resolved here (from their environment variable or given hash) and only their SHA-256
is kept: the plain key lives in the environment, never in the config, the store or memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from duetto.config import Config
from duetto.errors import ConfigError
from duetto.gateway.auth import hash_key
from duetto.privacy.apply import DetectorChoice
from duetto.privacy.policy import PolicyTable, PrivacyPolicy


def _allow_all() -> PolicyTable:
    return PolicyTable(default=PrivacyPolicy("allow"))


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    key_hash: str
    budget_usd: float | None = None
    rpm: int | None = None


@dataclass(slots=True)
class GatewaySettings:
    db: str | None = None  # SQLAlchemy URL or a file path; None: SQLite duetto-gateway.db
    keys: list[ApiKey] = field(default_factory=list)  # empty: no authentication (local use)
    fallback: str | None = None
    request_timeout_s: float = 120.0  # the whole primary attempt, retries included
    fallback_timeout_s: float = 120.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    affinity: bool = False
    redact_store: bool = False  # every stored copy; non-`allow` requests are always redacted
    privacy: PolicyTable = field(default_factory=_allow_all)
    detector: DetectorChoice | None = None  # installed at start; None: keep the current one
    local_model: str | None = None  # answers `local_only` requests (if trusted), else fallback
    reservation_ttl_s: float = 900.0  # a reservation older than this was left by a crash
    default_max_tokens: int = 512
    store_prefix: str = "duetto_"
    max_sessions: int = 10_000

    @classmethod
    def from_config(cls, cfg: Config, *, db: str | None = None) -> GatewaySettings:
        gw = cfg.gateway
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
        privacy = cfg.privacy.table()
        redact = gw.redact_store if gw.redact_store is not None else privacy.default.mode != "allow"
        try:
            local: str | None = cfg.slm_name()
        except ConfigError:  # no local model: the fallback answers local_only requests, if trusted
            local = None
        return cls(
            db=db or gw.db,
            keys=keys,
            fallback=gw.fallback,
            request_timeout_s=gw.request_timeout_s,
            fallback_timeout_s=gw.request_timeout_s,
            breaker_failures=gw.breaker_failures,
            breaker_reset_s=gw.breaker_reset_s,
            affinity=gw.affinity,
            redact_store=redact,
            privacy=privacy,
            detector=cfg.privacy.detector,
            local_model=local,
        )
