"""`duetto serve` with no config: the demo's embedded defaults (local SmolLM2, the stand-in LLM,
the demo's strategies) behind the gateway, called with the official openai client. Slow (starts
two llama.cpp models): one test, marked `standin`; skips when the stand-in is not fetched
(`duetto models fetch`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.standin, pytest.mark.slow, pytest.mark.timeout(600)]


def test_default_config_serves_every_strategy(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from duetto.models.standin import cached_standin

    if cached_standin() is None:
        pytest.skip("stand-in LLM not fetched: run `duetto models fetch`")
    import openai

    from duetto.config import load_default_config
    from duetto.engine import Engine
    from duetto.gateway import GatewaySettings, create_app
    from duetto.gateway.runner import ServerThread

    cfg = load_default_config()
    settings = GatewaySettings.from_config(cfg, db=str(tmp_path / "gw.db"))
    with ServerThread(create_app(Engine(cfg), settings)) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0,
                               timeout=300)
        ids = {m.id for m in client.models.list()}
        assert set(cfg.strategies) <= ids and {"slm", "llm"} <= ids
        answer = client.chat.completions.create(
            model="cascade-logprob", max_tokens=16,
            messages=[{"role": "user",
                       "content": "Which is larger, 3 or 5? Answer with the number."}])
        assert answer.choices[0].message.content
        chunks = list(client.chat.completions.create(
            model="route-task-prior", max_tokens=16, stream=True,
            messages=[{"role": "user", "content": "Name a primary colour."}]))
        assert chunks[-1].usage is not None
