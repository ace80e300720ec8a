"""Kept for imports written before the test tools moved: `ServerThread` lives in
`duetto.testing.server_thread` (one server-in-a-thread for the gateway and the fake server)."""

from duetto.testing.server_thread import ServerThread

__all__ = ["ServerThread"]
