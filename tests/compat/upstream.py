"""The compat suite's upstream: the package's `FakeOpenAIServer` as it is (no script), so what
it answers is its documented default behaviour: an echo of the last user message, tool calls
when tools are offered, JSON valid for a requested schema, and so on (see its docstring)."""

from __future__ import annotations

from duetto.testing import FakeOpenAIServer


def compat_upstream() -> FakeOpenAIServer:
    return FakeOpenAIServer()
