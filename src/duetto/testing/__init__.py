"""Test tools shipped with duetto: a scripted model, a real fake OpenAI server, a
server-in-a-thread for any ASGI app, and a guard against remote calls.

Importing this package is cheap: uvicorn is imported only when a server starts.
"""

from duetto.testing.asgi import Exchange
from duetto.testing.fake_server import FakeOpenAIServer, Fault
from duetto.testing.guard import (
    RemoteNetworkBlocked,
    allow_remote_network,
    block_remote_network,
    blocked_attempts,
    no_remote_network,
)
from duetto.testing.scripted import Script, ScriptedModel
from duetto.testing.server_thread import ServerThread

__all__ = [
    "Exchange",
    "FakeOpenAIServer",
    "Fault",
    "RemoteNetworkBlocked",
    "Script",
    "ScriptedModel",
    "ServerThread",
    "allow_remote_network",
    "block_remote_network",
    "blocked_attempts",
    "no_remote_network",
]
