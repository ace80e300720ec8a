"""Known differences, each marked `xfail(strict=True)` so that it turns into a failure the day
it is fixed (then delete its line here). Keys are "file::case": the test file's name without
`test_`, and the test function (for LangChain, the standard test's) name.

THROUGH_DUETTO: the case passes directly against the upstream and fails through duetto
(issue 13: the wire work on branch i-wire, capabilities on i-caps).
UPSTREAM: the suite's upstream (`FakeOpenAIServer`) cannot do it yet, so the case fails on both
sides and measures nothing about duetto (i-wire extends the fake server).
"""

from __future__ import annotations

THROUGH_DUETTO: dict[str, str] = {
    "openai_client::test_unset_options_not_invented": "adds temperature/seed/max_tokens",
    "openai_client::test_seed_user_metadata_forwarded": "user/metadata not forwarded",
    "openai_client::test_reasoning_effort_and_unknown_fields_forwarded": "unknown fields dropped",
    "openai_client::test_message_name_and_developer_role": "message name dropped",
    "openai_client::test_streamed_logprobs": "streamed logprobs not forwarded",
    "openai_client::test_tool_choice_none_answers_in_text": "tools refused (400)",
    "openai_client::test_image_input": "image parts refused (400)",
}

UPSTREAM: dict[str, str] = {
    "openai_client::test_n_2": "n > 1",
    "openai_client::test_logprobs": "top_logprobs",
    "openai_client::test_tools_round_trip": "tool calls",
    "openai_client::test_tool_choice_and_parallel_tool_calls": "tool calls",
    "openai_client::test_streamed_tool_call": "tool calls",
    "openai_client::test_parse_json_schema": "json_schema answers",
    "openai_client::test_json_object": "json_object answers",
    "openai_client::test_usage_details": "usage token details",
}
