"""LangChain's standard chat-model integration suite (`langchain-tests`) for `ChatOpenAI`,
unmodified, once directly against the upstream and through duetto (the raw model name, and a
route strategy).

The suite downloads its sample image, PDF and audio from the internet; here those downloads are
answered with small local files (the network is closed in tests). The requests the client
then makes are the suite's own.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from compat.env import compat_env

# One event loop for the module's async tests: ChatOpenAI caches its async HTTP client per
# base URL, and a client bound to an earlier test's (closed) loop fails with "Event loop is closed".
# (The mark reaches the sync tests too; pytest-asyncio's warning about that is noise here.)
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings(
        "ignore:The test <Function .* is marked with '@pytest.mark.asyncio'"
    ),
]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


def _sample(url: str, *args: Any, **kwargs: Any) -> httpx.Response:
    """The suite's sample files, served locally (by extension)."""
    lower = url.lower()
    if lower.endswith(".pdf"):
        body, ctype = PDF, "application/pdf"
    elif lower.endswith((".wav", ".mp3", ".ogg", ".flac")):
        body, ctype = _wav(), "audio/wav"
    else:
        body, ctype = PNG, "image/png"
    return httpx.Response(
        200, content=body, headers={"content-type": ctype}, request=httpx.Request("GET", url)
    )


class _Standard(ChatModelIntegrationTests):
    TARGET = "direct"
    OVERRIDE = "fake-llm-2"

    @pytest.fixture(autouse=True)
    def _local_samples(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        from langchain_tests.integration_tests import chat_models

        monkeypatch.setattr(chat_models.httpx, "get", _sample)
        env = compat_env()
        env.upstream.reset()
        yield

    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        t = compat_env().target(self.TARGET)
        return {
            "model": t.model,
            "base_url": t.base_url,
            "api_key": t.api_key,
            "max_retries": 0,
            "timeout": 20,
            "stream_usage": True,
        }

    @property
    def model_override_value(self) -> str | None:
        return self.OVERRIDE

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
        return True


class TestChatOpenAIDirect(_Standard):
    TARGET = "direct"
    OVERRIDE = "fake-llm-2"  # the upstream answers under the name it was asked for


class TestChatOpenAIThroughDuetto(_Standard):
    TARGET = "duetto"
    OVERRIDE = "route"  # the other name duetto serves: a strategy


class TestChatOpenAIThroughDuettoRoute(_Standard):
    TARGET = "duetto-route"
    OVERRIDE = "llm"
