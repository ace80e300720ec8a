"""The compat suite's upstream: the package's `FakeOpenAIServer` with an answer script that
behaves like a model an application would be written against (it answers the question asked,
and after a tool result it uses that result)."""

from __future__ import annotations

from typing import Any

from duetto.testing import FakeOpenAIServer


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def oracle(messages: list[dict[str, Any]]) -> str:
    """A plain-text answer: after a tool result, a sentence that uses it; else an echo."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"The tool returned {_text(last.get('content'))}."
    user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return f"You said: {_text(user.get('content'))}"


def compat_upstream() -> FakeOpenAIServer:
    return FakeOpenAIServer(script=oracle)
