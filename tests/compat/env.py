"""The two sides of the differential suite: one OpenAI-compatible upstream (the package's
`FakeOpenAIServer`), and a real `duetto` gateway on a loopback socket in front of that same
upstream. Every client case runs against each `Target`; a difference is duetto's.

One environment per test session (started on first use, stopped at session end): the servers
are cheap but the gateway's start (store, engine) is not free, and the suite must stay within
~2 minutes of CI time.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat.upstream import compat_upstream
from duetto.config import parse_config
from duetto.engine import Engine
from duetto.gateway import GatewaySettings, create_app
from duetto.gateway.auth import hash_key
from duetto.testing import FakeOpenAIServer, ServerThread

KEY = "sk-compat-suite"
UPSTREAM_MODEL = "fake-llm"

# target id -> (side, model name the client asks for)
TARGETS: dict[str, tuple[str, str]] = {
    "direct": ("upstream", UPSTREAM_MODEL),
    "duetto": ("gateway", "llm"),  # the raw model name through duetto
    "duetto-route": ("gateway", "route"),  # a strategy whose chosen candidate is the LLM
}
THROUGH_DUETTO = tuple(t for t in TARGETS if t != "direct")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    base_url: str
    api_key: str
    model: str

    @property
    def direct(self) -> bool:
        return self.name == "direct"


def gateway_config(upstream: FakeOpenAIServer) -> Any:
    """An Engine whose LLM is an OpenAIModel at the upstream; `route` always picks the LLM
    (length scores stay below the threshold), so it answers what the raw model answers."""
    return parse_config(
        {
            "endpoints": {"up": {"base_url": upstream.base_url, "timeout_s": 10, "retries": 0}},
            "models": {
                "slm": {
                    "backend": "fake",
                    "script": "small model answer",
                    "card": {"name": "slm-card"},
                },
                "llm": {
                    "backend": "openai",
                    "endpoint": "up",
                    "model": UPSTREAM_MODEL,
                    # what the upstream can do (openai backends claim tools, json_schema
                    # and logprobs by default; images and audio are declared)
                    "card": {
                        "name": "llm-card",
                        "location": "remote",
                        "trusted": True,
                        "vision": True,
                        "audio": True,
                    },
                },
            },
            "strategies": {
                "route": {
                    "mode": "route",
                    "models": ["slm", "llm"],
                    "threshold": 2.0,
                    "scorer": {"kind": "length", "scale_chars": 40},
                }
            },
            # The regex PII detector: privacy is not what this suite measures, and the default
            # one loads spaCy (seconds of CI time).
            "privacy": {"detector": "regex"},
            # No fallback: a failure must surface, not be answered by the small model.
            "gateway": {"keys": [{"name": "compat", "key_sha256": hash_key(KEY)}]},
        }
    )


class CompatEnv:
    def __init__(self, upstream: FakeOpenAIServer) -> None:
        self.upstream = upstream.start()  # the gateway's config needs its port
        self._dir = tempfile.TemporaryDirectory(prefix="duetto-compat-")
        cfg = gateway_config(upstream)
        settings = GatewaySettings.from_config(cfg, db=str(Path(self._dir.name) / "gw.db"))
        self.gateway = ServerThread(create_app(Engine(cfg), settings), name="compat-gateway")

    def start(self) -> CompatEnv:
        self.gateway.start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.upstream.stop()
        self._dir.cleanup()

    def target(self, name: str) -> Target:
        side, model = TARGETS[name]
        if side == "upstream":
            return Target(name, self.upstream.base_url, "sk-direct", model)
        return Target(name, self.gateway.base_url, KEY, model)


_lock = threading.Lock()
_env: CompatEnv | None = None


def compat_env() -> CompatEnv:
    """The session's environment, started on first use (LangChain's suite reads its model
    parameters from class properties, outside any fixture)."""
    global _env
    with _lock:
        if _env is None:
            _env = CompatEnv(compat_upstream()).start()
        return _env


def stop_env() -> None:
    global _env
    with _lock:
        if _env is not None:
            _env.stop()
            _env = None
