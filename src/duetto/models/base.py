"""The one seam every model and strategy implements: `ChatModel.complete` (and `stream`).

`LeafModel` is the base of real backends: it times the call and turns raw token and byte
counts into cost, energy and privacy figures from the frozen `ModelCard`, so every backend
accounts the same way. The privacy figure (`Usage.pii_sent`: PII entities in what reached an
untrusted model) is counted by the leaf's `pii_counter`, a plain `text -> count` callable that
whoever builds the leaf injects (the Engine gives every leaf the configured detector's counter);
a leaf without one counts nothing, so this layer depends on no detector.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from duetto.capabilities import card_capabilities, lacking
from duetto.messages import ChatRequest, ChatResponse, Choice, StreamChunk, ToolCall
from duetto.trace import Step
from duetto.usage import Usage

# Default energy figures, always reported as estimates.
# Local: process CPU seconds × watts per busy core. 10 W/core is a mid-range desktop/laptop
# figure (e.g. a 65 W TDP 6-8 core part under load); RAPL replaces it where readable.
DEFAULT_WATTS_PER_CORE = 10.0
# Remote: joules per token. Samsi et al., "From Words to Watts: Benchmarking the Energy Costs of
# Large Language Model Inference" (IEEE HPEC 2023, arXiv:2310.03003) measure about 3-4 J per
# generated token for LLaMA-65B on A100/V100 GPUs; prefill is roughly 10x cheaper per token.
DEFAULT_REMOTE_J_PER_TOKEN_OUT = 3.0
DEFAULT_REMOTE_J_PER_TOKEN_IN = 0.3

# Counts the PII entities in a text: a count (duetto.scoring.pii.count_pii) or counts by risk
# tier (duetto.privacy.leaks.count_by_tier), which the leaf's trace step keeps as `pii_tiers`.
PiiCounter = Callable[[str], int | Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What a model is, what it can do and what it costs: fixed for the life of the model.

    The capabilities (`tools` … `max_output_tokens`) are what routing respects: a request that
    needs one goes only to models whose card has it (duetto.capabilities). A card claims none
    of the features unless told; the config sets them per backend (duetto.engine.make_card)."""

    name: str
    location: Literal["local", "remote"] = "local"
    trusted: bool = True  # inside the trusted zone: PII sent to it is not a leak
    price_in_per_mtok: float = 0.0  # USD per million input tokens
    price_out_per_mtok: float = 0.0
    energy_j_per_token_in: float = DEFAULT_REMOTE_J_PER_TOKEN_IN
    energy_j_per_token_out: float = DEFAULT_REMOTE_J_PER_TOKEN_OUT
    watts_per_core: float = DEFAULT_WATTS_PER_CORE
    context_size: int = 8192  # tokens of prompt + answer the model holds
    label: str = ""  # shown in reports, e.g. "offline stand-in for a remote LLM"
    source: str = ""  # where prices/energy figures come from
    tools: bool = False  # answers with tool calls when given `tools`
    json_schema: bool = False  # honours response_format json_schema / json_object
    vision: bool = False  # reads image (and file) content parts
    audio: bool = False  # reads input_audio content parts
    logprobs: bool = False  # returns token log-probabilities when asked
    max_output_tokens: int | None = None  # None: bounded by the context only

    @property
    def is_remote(self) -> bool:
        return self.location == "remote"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in_per_mtok + tokens_out * self.price_out_per_mtok) / 1e6

    def energy(self, tokens_in: int, tokens_out: int, cpu_seconds: float) -> float:
        if self.is_remote:
            return tokens_in * self.energy_j_per_token_in + tokens_out * self.energy_j_per_token_out
        return cpu_seconds * self.watts_per_core

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class ChatModel(ABC):
    """A model or a strategy: anything that answers a chat request with a traced response."""

    card: ModelCard
    # "model": a leaf or a wrapper around one model; "strategy": a composite (strategies/).
    kind: ClassVar[Literal["model", "strategy"]] = "model"

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def children(self) -> Sequence[ChatModel]:
        """The models this one may call, in order: none for a leaf, `[inner]` for a wrapper,
        the sub-models for a strategy."""
        return ()

    @abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Stream the answer. The default completes first and yields it as one chunk."""
        response = await self.complete(request)
        yield StreamChunk(delta=response.text)
        yield StreamChunk(delta="", response=response)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections, processes or weights."""

    def lacks(self, request: ChatRequest) -> list[str]:
        """What this model lacks to answer `request` (duetto.capabilities.lacking); empty when
        it can. A strategy answers for the candidates it would choose among."""
        return lacking(self.card, request)

    def capabilities(self) -> dict[str, Any]:
        """What this model offers (GET /v1/models): its card's capabilities."""
        return card_capabilities(self.card)

    def complete_sync(self, request: ChatRequest) -> ChatResponse:
        """Thin sync helper for scripts and notebooks without a running loop."""
        return asyncio.run(self.complete(request))


@dataclass(slots=True)
class RawResult:
    """What a backend measured for one call, before accounting."""

    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str = "stop"
    logprobs: list[float] | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    ttft_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    token_logprobs: list[dict[str, Any]] | None = None
    choices: list[Choice] = field(default_factory=list)  # more choices of an n > 1 request
    usage_details: dict[str, int] = field(default_factory=dict)  # Usage field -> tokens


_rapl_readable = True  # False after the first failed read: never tried again (a syscall each)


def _rapl_energy_uj() -> int | None:
    global _rapl_readable
    if not _rapl_readable:
        return None
    try:
        with open("/sys/class/powercap/intel-rapl:0/energy_uj") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        _rapl_readable = False
        return None


class LeafModel(ChatModel):
    """Base for real backends: implement `_call` (and optionally `_stream_raw`).

    `pii_counter` counts the PII in a request sent to an untrusted card (`Usage.pii_sent`);
    None: not counted (0). The Engine sets it on every leaf it builds; set it yourself
    (`model.pii_counter = partial(count_pii, detector=regex_detect)`, duetto.scoring.pii) on a
    leaf built by hand."""

    pii_counter: PiiCounter | None = None

    def __init__(self, card: ModelCard, *, pii_counter: PiiCounter | None = None) -> None:
        self.card = card
        self.pii_counter = pii_counter

    @abstractmethod
    async def _call(self, request: ChatRequest) -> RawResult: ...

    async def _stream_raw(
        self, request: ChatRequest
    ) -> AsyncIterator[str | StreamChunk | RawResult]:
        """Yield text deltas (or StreamChunks: tool-call pieces, logprobs), then one RawResult.
        Default: no streaming, one delta."""
        raw = await self._call(request)
        yield raw.text
        yield raw

    async def complete(self, request: ChatRequest) -> ChatResponse:
        meter = _Meter(not self.card.is_remote)
        raw = await self._call(request)
        return self._account(request, raw, meter)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        meter = _Meter(not self.card.is_remote)
        first: float | None = None
        async for item in self._stream_raw(request):
            if isinstance(item, RawResult):
                if item.ttft_ms is None and first is not None:
                    item.ttft_ms = first
                yield StreamChunk(delta="", response=self._account(request, item, meter))
                return
            if first is None and item:
                first = (time.perf_counter() - meter.t0) * 1000
            # a backend yields a StreamChunk when a piece carries more than text
            yield item if isinstance(item, StreamChunk) else StreamChunk(delta=item)

    def _pii_sent(self, request: ChatRequest) -> tuple[int, Mapping[str, int] | None]:
        """(entities sent, by tier if the counter tells them)."""
        if self.card.trusted or self.pii_counter is None:
            return 0, None
        counted = self.pii_counter(request.text)
        if isinstance(counted, int):
            return counted, None
        return sum(counted.values()), counted

    def _account(self, request: ChatRequest, raw: RawResult, meter: _Meter) -> ChatResponse:
        latency_ms, cpu_s, rapl_j = meter.stop()
        card = self.card
        energy = card.energy(raw.tokens_in, raw.tokens_out, cpu_s)
        pii_sent, pii_tiers = self._pii_sent(request)
        extra = {**raw.extra, "pii_tiers": dict(pii_tiers)} if pii_tiers else raw.extra
        if not card.is_remote and rapl_j is not None and rapl_j > 0:
            energy = rapl_j
        usage = Usage(
            tokens_in=raw.tokens_in,
            tokens_out=raw.tokens_out,
            bytes_sent=raw.bytes_sent if card.is_remote else 0,
            bytes_received=raw.bytes_received if card.is_remote else 0,
            latency_ms=latency_ms,
            ttft_ms=raw.ttft_ms if raw.ttft_ms is not None else latency_ms,
            cost_usd=card.cost(raw.tokens_in, raw.tokens_out),
            energy_j=energy,
            pii_sent=pii_sent,
            calls=1,
            remote_calls=1 if card.is_remote else 0,
        )
        for name, tokens in raw.usage_details.items():
            if hasattr(usage, name) and isinstance(tokens, int):
                setattr(usage, name, tokens)
        if raw.tool_calls:  # traces record tool calls: the names (arguments are answer content)
            extra = {**extra, "tool_calls": [c.name for c in raw.tool_calls]}
        step = Step(name=card.name, kind="model", usage=usage, latency_ms=latency_ms, extra=extra)
        return ChatResponse(
            text=raw.text,
            model=card.name,
            usage=usage,
            trace=step,
            finish_reason=raw.finish_reason,
            logprobs=raw.logprobs,
            tool_calls=raw.tool_calls,
            token_logprobs=raw.token_logprobs,
            extra_choices=list(raw.choices),
        )


class _Meter:
    """Wall time, process CPU time and (where readable) RAPL energy of one call."""

    def __init__(self, local: bool = True) -> None:
        # A remote call's energy comes from its tokens: no CPU clock nor RAPL read (syscalls,
        # costly in a sandbox, on every gateway request).
        self.local = local
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time() if local else 0.0
        self.rapl0 = _rapl_energy_uj() if local else None

    def stop(self) -> tuple[float, float, float | None]:
        latency_ms = (time.perf_counter() - self.t0) * 1000
        if not self.local:
            return latency_ms, 0.0, None
        cpu_s = time.process_time() - self.cpu0
        rapl1 = _rapl_energy_uj()
        rapl_j = (
            (rapl1 - self.rapl0) / 1e6 if (rapl1 is not None and self.rapl0 is not None) else None
        )
        return latency_ms, cpu_s, rapl_j
