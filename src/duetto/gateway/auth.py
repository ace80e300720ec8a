"""API keys (stored as SHA-256 only), per-key rate limits and per-key USD budgets.

Budgets follow reserve → settle | release: before a call the gateway reserves the request's
worst-case cost (`worst_case_cost`), atomically in the store shared by all replicas; after the
call it settles the actual cost from the trace (streams included), or releases the reservation
when nothing was spent. A request is admitted only if spent + reserved + its worst case fits the
budget, so replicas cannot overspend by more than one request's estimate error.

Rate limits are a token bucket per key and per replica (requests per minute).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from duetto.answers import estimate_tokens
from duetto.messages import ChatRequest
from duetto.models.base import ModelCard

if TYPE_CHECKING:
    from duetto.gateway.settings import ApiKey
    from duetto.store import KeyRecord, TraceStore

TEMPLATE_TOKENS_PER_MESSAGE = 8  # chat-template tokens around each message (upper bound)


def hash_key(key: str) -> str:
    """SHA-256 of an API key. Keys are random and long, so an unsalted hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


def worst_case_cost(cards: Sequence[ModelCard], request: ChatRequest) -> float:
    """An upper bound of a request's cost over the models it may call, in order.

    Input tokens are bounded by one per UTF-8 byte of the conversation plus template tokens; each
    call may also receive every earlier call's output (pipelines), up to `max_tokens` each."""
    prompt = sum(len(m.content.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
    total = 0.0
    fed = 0
    for card in cards:
        total += card.cost(prompt + fed, request.max_tokens)
        fed += request.max_tokens
    return total


def partial_cost(cards: Sequence[ModelCard], request: ChatRequest, streamed_chars: int) -> float:
    """What a call cut short may have cost: the prompt on every priced model, plus what was
    streamed (at least one token per 4 characters) on the most expensive one."""
    prompt = sum(len(m.content.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in request.messages)
    if not cards:
        return 0.0
    out = estimate_tokens(streamed_chars)
    return sum(c.cost(prompt, 0) for c in cards) + max(c.cost(0, out) for c in cards)


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


@dataclass(slots=True)
class Principal:
    """Who is calling: a key's name, or None when the gateway runs without keys."""

    name: str | None
    rpm: int | None = None
    budget_usd: float | None = None


class KeyRing:
    """Authenticates bearer keys against the store (cached), and applies rate limits."""

    def __init__(
        self, store: TraceStore, keys: Sequence[ApiKey], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.keys = list(keys)
        self.open = not self.keys
        self.clock = clock
        self._by_hash: dict[str, Principal] = {}
        self._buckets: dict[str, TokenBucket] = {}

    async def start(self) -> None:
        from duetto.store import KeyRecord

        for k in self.keys:
            await self.store.upsert_key(KeyRecord(k.name, k.key_hash, k.budget_usd, rpm=k.rpm))
            self._by_hash[k.key_hash] = Principal(k.name, k.rpm, k.budget_usd)

    async def authenticate(self, key: str | None) -> Principal | None:
        """The caller, or None for a missing or wrong key. Open mode lets everyone in."""
        if self.open:
            return Principal(None)
        if not key:
            return None
        digest = hash_key(key)
        found = self._by_hash.get(digest)
        if found is None:
            record = await self.store.find_key(digest)  # a key added by another replica
            if record is None or not hmac.compare_digest(record.key_hash, digest):
                return None
            found = Principal(record.name, record.rpm, record.budget_usd)
            self._by_hash[digest] = found
        return found

    def rate_limit(self, who: Principal) -> float:
        """0.0 when the call may go ahead, else seconds to wait (sent as Retry-After)."""
        if who.name is None or not who.rpm:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(who.name)
        if bucket is None:
            bucket = self._buckets[who.name] = TokenBucket(who.rpm, now)
        return bucket.take(now)


class Budgets:
    """reserve / settle / release against the shared store; keys without a budget skip it."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    async def reserve(self, who: Principal, amount: float) -> str | bool | None:
        """A reservation id; None when no reservation is needed; False when over budget."""
        if who.name is None or who.budget_usd is None:
            return None
        rid = uuid.uuid4().hex
        return rid if await self.store.reserve(who.name, rid, amount) else False

    async def settle(self, reservation: str | None, cost_usd: float) -> None:
        if reservation:
            await self.store.settle(reservation, cost_usd)

    async def release(self, reservation: str | None) -> None:
        if reservation:
            await self.store.release(reservation)

    async def state(self, name: str) -> KeyRecord | None:
        return await self.store.key(name)
