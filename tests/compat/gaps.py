"""Known differences, each marked `xfail(strict=True)` so that it turns into a failure the day
it is fixed (then delete its line here). Keys are "file::case": the test file's name without
`test_`, and the test id without its target (for LangChain, the standard test's id); a key
ending in "@duetto-route" (or "@duetto") applies to that target only.
`python scripts/compat_table.py --gaps` prints what fails today in this form.

THROUGH_DUETTO: the case passes directly against the upstream and fails through duetto
(issue 13: the wire work on branch i-wire, capabilities on i-caps).
UPSTREAM: the suite's upstream (`FakeOpenAIServer`) cannot do it yet, so the case fails on both
sides and measures nothing about duetto (i-wire extends the fake server).
"""

from __future__ import annotations

THROUGH_DUETTO: dict[str, str] = {}

UPSTREAM: dict[str, str] = {
    # FakeOpenAIServer answers json_object from a schema, never from prose instructions
    "langchain_standard::test_json_mode": 'json_object without a schema gives {"answer": ...}',
    # after a tool result FakeOpenAIServer answers text even with tool_choice "required", so
    # pydantic-ai's output tool is never called after a function tool
    "pydantic_ai::test_agent_tool_call_then_output_tool": "text after a tool result",
}
