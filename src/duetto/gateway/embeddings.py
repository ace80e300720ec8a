"""POST /v1/embeddings: OpenAI's embeddings endpoint, served by the local MiniLM (private, free).

    request    {"model", "input": str | [str, ...], "encoding_format": "float" | "base64",
                "dimensions"?, "user"?}; token-id arrays are refused (400: they are tiktoken
                ids, which MiniLM's tokenizer does not share), as are empty inputs, more than
                2048 inputs, an input longer than the model's 256 tokens (never truncated
                silently: chunk it) and `dimensions` other than 384
    response   {"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
                "model", "usage": {"prompt_tokens", "total_tokens"}}; base64 is the float32
                little-endian bytes, as OpenAI sends them (the `openai` client asks for it)
    model      `all-MiniLM-L6-v2` (also `sentence-transformers/all-MiniLM-L6-v2`); another
               name is a 404 naming the one served

The model is duetto.scoring.embeddings' MiniLM (the float model, unit-norm rows: the loader the
routers use). Requests that arrive together are batched into one encode call, run in a worker
thread, one at a time (the event loop stays free).
"""

# No `from __future__ import annotations`: FastAPI reads the route's signature at definition
# time (as in app.py).

import asyncio
import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from duetto.errors import ModelUnavailable
from duetto.openai_wire import error_body
from duetto.scoring.embeddings import DIM, MODEL_NAME, MiniLMEmbedder, minilm_path

MODEL_IDS = {MODEL_NAME.lower(), f"sentence-transformers/{MODEL_NAME}".lower()}
MAX_INPUTS = 2048  # OpenAI's limit per request
BATCH_SIZE = 32


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class BadInput(ValueError):
    """A request the endpoint refuses with 400; `param` names the field."""

    def __init__(self, message: str, param: str = "input") -> None:
        super().__init__(message)
        self.param = param


def texts_of(body: EmbeddingRequest) -> list[str]:
    """The input as a list of texts; BadInput for token arrays, empty or too many inputs."""
    raw = body.input
    items: list[Any] = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise BadInput("`input` is empty")
    if not all(isinstance(t, str) for t in items):
        raise BadInput(
            "token-id arrays are not supported (MiniLM has its own tokenizer): send text"
        )
    texts: list[str] = items
    if len(texts) > MAX_INPUTS:
        raise BadInput(f"at most {MAX_INPUTS} inputs per request, got {len(texts)}")
    for i, t in enumerate(texts):
        if not t.strip():
            raise BadInput(f"input[{i}] is empty")
    if body.dimensions is not None and body.dimensions != DIM:
        raise BadInput(f"{MODEL_NAME} has {DIM} dimensions, not {body.dimensions}", "dimensions")
    return texts


def encode_vector(vec: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vec]


def response_body(model: str, vectors: np.ndarray, tokens: int, encoding: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@dataclass(slots=True)
class _Job:
    texts: list[str]
    done: asyncio.Future[np.ndarray]


@dataclass
class Embeddings:
    """MiniLM behind a micro-batcher: jobs queued while an encode runs go in the next one."""

    embedder: MiniLMEmbedder = field(
        default_factory=lambda: MiniLMEmbedder(batch_size=BATCH_SIZE, use_cache=False)
    )
    _pending: list[_Job] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _worker: asyncio.Task[None] | None = None

    def lengths(self, texts: list[str]) -> tuple[list[int], int]:
        """(tokens of each text, the most the model reads): in a worker thread."""
        with self._lock:
            return self.embedder.count_tokens(texts), self.embedder.max_tokens

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # one tokenizer, one model: never used from two threads at once
            return self.embedder.embed_uncached(texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm vectors of `texts` (one row each), batched with concurrent requests."""
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        return await job.done

    async def _drain(self) -> None:
        while self._pending:
            jobs, self._pending = self._pending, []
            flat = [t for j in jobs for t in j.texts]
            try:
                vecs = await asyncio.to_thread(self._encode, flat)
            except Exception as exc:  # every waiting request gets the error
                for j in jobs:
                    if not j.done.done():
                        j.done.set_exception(exc)
                continue
            start = 0
            for j in jobs:
                end = start + len(j.texts)
                if not j.done.done():
                    j.done.set_result(vecs[start:end])
                start = end


def model_entry() -> dict[str, Any] | None:
    """The served embedding model as GET /v1/models lists it (None when it is not installed)."""
    try:
        minilm_path()
    except ModelUnavailable:
        return None
    caps = {"embeddings": True, "dimensions": DIM}
    return {
        "id": MODEL_NAME,
        "object": "model",
        "created": 0,
        "owned_by": "duetto",
        "duetto": {"kind": "embedding", "mode": None, "location": "local", "capabilities": caps},
    }


def router(caller: Callable[..., Any], embeddings: Embeddings | None = None) -> Any:
    """The /v1/embeddings route, authenticated by the gateway's `caller` dependency."""
    from fastapi import APIRouter, Depends
    from fastapi.responses import JSONResponse

    api = APIRouter()
    service = embeddings or Embeddings()

    def bad(status: int, message: str, code: str, param: str | None) -> JSONResponse:
        body = error_body(message, "invalid_request_error", code, param)
        return JSONResponse(body, status_code=status)

    @api.post("/v1/embeddings", response_model=None, summary="Embeddings (local MiniLM)")
    async def create_embeddings(
        body: EmbeddingRequest, _: Annotated[Any, Depends(caller)]
    ) -> JSONResponse:
        if body.model.lower() not in MODEL_IDS:
            return bad(
                404,
                f"The embedding model `{body.model}` does not exist: this gateway serves "
                f"`{MODEL_NAME}`",
                "model_not_found",
                "model",
            )
        try:
            texts = texts_of(body)
        except BadInput as exc:
            return bad(400, str(exc), "invalid_request", exc.param)
        lengths, limit = await asyncio.to_thread(service.lengths, texts)
        if too_long := [i for i, n in enumerate(lengths) if n > limit]:
            message = (
                f"input[{too_long[0]}] has {lengths[too_long[0]]} tokens; {MODEL_NAME} reads at "
                f"most {limit} (it is not truncated: split it)"
            )
            return bad(400, message, "context_length_exceeded", "input")
        vecs = await service.embed(texts)
        return JSONResponse(response_body(MODEL_NAME, vecs, sum(lengths), body.encoding_format))

    return api
