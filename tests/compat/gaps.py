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

THROUGH_DUETTO: dict[str, str] = {
    # refused with 400 by duetto's request schema: content parts, `tool` messages, tools
    "langchain_standard::test_audio_inputs": "input_audio content part refused (400)",
    "langchain_standard::test_image_inputs": "image_url content part refused (400)",
    "langchain_standard::test_pdf_inputs": "file content part refused (400)",
    "langchain_standard::test_image_tool_message": "tool role message refused (400)",
    "langchain_standard::test_pdf_tool_message": "tool role message refused (400)",
    "langchain_standard::test_structured_few_shot_examples": "tool role message refused (400)",
    "langchain_standard::test_tool_message_error_status": "tool role message refused (400)",
    "langchain_standard::test_tool_message_histories_list_content": "tool message refused (400)",
    "langchain_standard::test_tool_message_histories_string_content": "tool message refused (400)",
    "openai_client::test_image_input": "image_url content part refused (400)",
    "openai_client::test_tool_choice_none_answers_in_text": "tools refused (400)",
    # accepted, then lost or changed on the way to the upstream
    "openai_client::test_message_name_and_developer_role": "message `name` dropped",
    "openai_client::test_reasoning_effort_and_unknown_fields_forwarded": "unknown fields dropped",
    "openai_client::test_seed_user_metadata_forwarded": "`user` and `metadata` dropped",
    "openai_client::test_streamed_logprobs": "streamed logprobs not forwarded",
    "openai_client::test_unset_options_not_invented": "adds temperature=0, seed=0, max_tokens",
}

UPSTREAM: dict[str, str] = {
    # FakeOpenAIServer on main answers text only: no tool calls, no JSON for a schema, one choice
    "instructor::test_extract[json]": "JSON for a schema in the prompt",
    "instructor::test_extract[json_schema]": "json_schema answers",
    "instructor::test_extract[md_json]": "JSON for a schema in the prompt",
    "instructor::test_extract[tools]": "tool calls",
    "instructor::test_extract[tools_strict]": "tool calls",
    "langchain_standard::test_agent_loop[model0]": "tool calls",
    "langchain_standard::test_agent_loop[model1]": "tool calls",
    "langchain_standard::test_bind_runnables_as_tools": "tool calls",
    "langchain_standard::test_json_mode": "json_object answers",
    "langchain_standard::test_structured_output[json_schema]": "tool calls",
    "langchain_standard::test_structured_output[pydantic]": "json_schema answers",
    "langchain_standard::test_structured_output[typeddict]": "tool calls",
    "langchain_standard::test_structured_output_async[json_schema]": "tool calls",
    "langchain_standard::test_structured_output_async[pydantic]": "json_schema answers",
    "langchain_standard::test_structured_output_async[typeddict]": "tool calls",
    "langchain_standard::test_structured_output_optional_param": "json_schema answers",
    "langchain_standard::test_structured_output_pydantic_2_v1": "json_schema answers",
    "langchain_standard::test_tool_calling[model0]": "tool calls",
    "langchain_standard::test_tool_calling[model1]": "tool calls",
    "langchain_standard::test_tool_calling_async": "tool calls",
    "langchain_standard::test_tool_calling_with_no_arguments": "tool calls",
    "langchain_standard::test_tool_choice": "tool calls",
    "langchain_standard::test_unicode_tool_call_integration": "tool calls",
    "openai_client::test_json_object": "json_object answers",
    "openai_client::test_logprobs": "top_logprobs",
    "openai_client::test_n_2": "n > 1",
    "openai_client::test_parse_json_schema": "json_schema answers",
    "openai_client::test_streamed_tool_call": "tool calls",
    "openai_client::test_tool_choice_and_parallel_tool_calls": "tool calls",
    "openai_client::test_tools_round_trip": "tool calls",
    "openai_client::test_usage_details": "usage token details",
    "pydantic_ai::test_agent_tool_and_native_output": "tool calls",
    "pydantic_ai::test_agent_tool_and_output_type": "tool calls",
    "pydantic_ai::test_agent_tool_then_text": "tool calls",
}
