"""`duetto serve` with no config: the demo's embedded defaults (local SmolLM2, the stand-in LLM,
the demo's strategies) behind the gateway, called with the official openai client. Slow (starts
two llama.cpp models): one test, marked `standin`; skips when the stand-in is not fetched
(`duetto models fetch`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.standin, pytest.mark.slow, pytest.mark.timeout(600)]


def test_default_config_serves_every_strategy(tmp_path: Path, standin_gguf: Path) -> None:
    import httpx
    import openai

    from duetto.config import load_default_config
    from duetto.engine import Engine
    from duetto.gateway import GatewaySettings, create_app
    from duetto.testing import ServerThread

    cfg = load_default_config()
    settings = GatewaySettings.from_config(cfg, db=str(tmp_path / "gw.db"))
    assert settings.fallback == cfg.slm_name()  # the embedded defaults' fallback, as served
    with ServerThread(create_app(Engine(cfg), settings)) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=300)
        ids = {m.id for m in client.models.list()}
        assert set(cfg.strategies) <= ids and {"slm", "llm"} <= ids
        question = [{"role": "user", "content": "Which is larger, 3 or 5? Answer with the number."}]
        raw = client.chat.completions.with_raw_response.create(
            model="pipeline-llm-draft-slm-format", max_tokens=16, messages=question
        )
        answer = raw.parse()
        assert answer.choices[0].message.content
        trace = httpx.get(f"{gw.base_url}/traces/{raw.headers['x-duetto-trace-id']}").json()
        assert trace["trace"]["mode"] == "pipeline" and trace["usage"]["remote_calls"] == 1
        chunks = list(
            client.chat.completions.create(
                model="llm", max_tokens=16, stream=True, messages=question
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        # thresholded strategies need the calibration `duetto eval` fits: until then the
        # SLM answers them, and says so
        cascade = client.chat.completions.create(
            model="cascade-logprob", max_tokens=16, messages=question
        )
        assert cascade.choices[0].message.content
