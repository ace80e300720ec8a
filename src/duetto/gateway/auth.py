"""Who is calling: API keys (stored as SHA-256 only) and per-key rate limits.

`ApiKey` is the one runtime form of a key, from the config (`GatewayKeyConfig`, resolved by
`GatewaySettings.from_config`) to the caller of a request. What a key may spend is in
`duetto.gateway.billing`. Rate limits are a token bucket per key and per replica (requests per
minute).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key (its SHA-256, never its value) and its limits. `name` None is the anonymous caller
    of a gateway without keys (`OPEN`)."""

    name: str | None
    key_hash: str = ""
    budget_usd: float | None = None
    rpm: int | None = None


OPEN = ApiKey(None)


def hash_key(key: str) -> str:
    """SHA-256 of an API key. Keys are random and long, so an unsalted hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


class TokenBucket:
    """`rate_per_min` requests a minute with bursts up to the same number. Pure: pass `now`."""

    def __init__(self, rate_per_min: int, now: float) -> None:
        self.capacity = float(rate_per_min)
        self.per_s = rate_per_min / 60.0
        self.tokens = self.capacity
        self.at = now

    def take(self, now: float) -> float:
        """0.0 when allowed (one token taken), else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_s


class KeyStore(Protocol):
    """Where keys are shared between replicas (`duetto.gateway.billing.Billing`)."""

    async def upsert_key(self, key: ApiKey) -> None: ...

    async def find_key(self, key_hash: str) -> ApiKey | None: ...


class KeyRing:
    """Authenticates bearer keys against the shared key store (cached), and applies rate
    limits."""

    def __init__(
        self, store: KeyStore, keys: Sequence[ApiKey], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.keys = list(keys)
        self.open = not self.keys
        self.clock = clock
        self._by_hash: dict[str, ApiKey] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def start(self) -> None:
        for k in self.keys:
            await self.store.upsert_key(k)
            self._by_hash[k.key_hash] = k

    async def authenticate(self, key: str | None) -> ApiKey | None:
        """The caller, or None for a missing or wrong key. Open mode lets everyone in."""
        if self.open:
            return OPEN
        if not key:
            return None
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        if found is None:
            found = await self.store.find_key(digest)  # a key added by another replica
            if found is None or not hmac.compare_digest(found.key_hash, digest):
                return None
            self._by_hash[digest] = found
        return found

    def rate_limit(self, who: ApiKey) -> float:
        """0.0 when the call may go ahead, else seconds to wait (sent as Retry-After)."""
        if who.name is None or not who.rpm:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(who.name)
        if bucket is None:
            bucket = self._buckets[who.name] = TokenBucket(who.rpm, now)
        return bucket.take(now)
