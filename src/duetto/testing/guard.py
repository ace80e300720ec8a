"""A guard that makes an accidental real remote call fail loudly (in tests, benchmarks, CI).

`block_remote_network()` patches `socket.socket.connect`/`connect_ex` and `socket.getaddrinfo`
so that connecting to anything but a loopback address (or a Unix socket), or resolving a
non-local host name, raises `RemoteNetworkBlocked`. The error is deliberately not an `OSError`:
HTTP clients and duetto's retry/fallback logic treat OSErrors as "server down, try again or fall
back", which would hide the mistake. Blocked attempts are also recorded in `blocked_attempts()`
so a test fixture can fail a test whose code swallowed the error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_blocked: list[str] = []
_originals: dict[str, Any] = {}


class RemoteNetworkBlocked(RuntimeError):
    """A connection to a non-loopback address was attempted while the guard was active."""


def is_loopback_host(host: object) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard/loopback
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_unspecified
    except ValueError:
        return False


def _refuse(what: str) -> RemoteNetworkBlocked:
    _blocked.append(what)
    return RemoteNetworkBlocked(
        f"duetto network guard: blocked {what}. Tests must not reach remote hosts: use "
        "duetto.testing.FakeOpenAIServer (loopback) or a scripted model instead."
    )


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets and friends never leave the machine
    host = address[0] if isinstance(address, tuple) else address
    if not is_loopback_host(host):
        raise _refuse(f"a connection to {address!r}")


def block_remote_network() -> Callable[[], None]:
    """Install the guard (idempotent); return a function that removes it."""
    if not _originals:
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        getaddrinfo = socket.getaddrinfo
        _originals.update(connect=connect, connect_ex=connect_ex, getaddrinfo=getaddrinfo)

        def guarded_connect(self: socket.socket, address: Any) -> None:
            _check_address(self, address)
            return connect(self, address)

        def guarded_connect_ex(self: socket.socket, address: Any) -> int:
            _check_address(self, address)
            return connect_ex(self, address)

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # Refused here rather than at connect(): async clients connect inside task groups
            # that would wrap the error. "0.0.0.0"/"::" are allowed for binding servers.
            if not is_loopback_host(host) and not _is_unspecified(host):
                raise _refuse(f"a DNS lookup of {host!r}")
            return getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
        socket.getaddrinfo = guarded_getaddrinfo
    return allow_remote_network


def allow_remote_network() -> None:
    """Remove the guard if it is installed."""
    if _originals:
        socket.socket.connect = _originals["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = _originals["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = _originals["getaddrinfo"]
        _originals.clear()


def guard_active() -> bool:
    return bool(_originals)


def blocked_attempts(clear: bool = False) -> list[str]:
    """What the guard refused since the last clear (even if the caller swallowed the error)."""
    out = list(_blocked)
    if clear:
        _blocked.clear()
    return out


@contextlib.contextmanager
def no_remote_network() -> Iterator[None]:
    """`with no_remote_network(): ...` — the guard for a block of code."""
    was_active = guard_active()
    block_remote_network()
    try:
        yield
    finally:
        if not was_active:
            allow_remote_network()
