"""pydantic-ai (slim, with its OpenAI chat model), unmodified: an agent with one tool and a
structured output type, and five more cases, each directly and through duetto."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from compat.env import Target

pytestmark = pytest.mark.timeout(60)


class Weather(BaseModel):
    city: str
    summary: str


def model(t: Target) -> OpenAIChatModel:
    return OpenAIChatModel(t.model, provider=OpenAIProvider(base_url=t.base_url, api_key=t.api_key))


def weather_agent(t: Target, output_type: object) -> Agent:
    agent = Agent(model(t), output_type=output_type, retries=1)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return f"sunny in {city}"

    return agent


def tool_was_called(result: object) -> bool:
    return any(
        isinstance(part, ToolCallPart) and part.tool_name == "get_weather"
        for message in result.all_messages()  # type: ignore[attr-defined]
        for part in getattr(message, "parts", ())
    )


def test_agent_tool_and_output_type(target: Target) -> None:
    """An agent with a tool and the default structured output (an output tool): the model
    answers with the output tool (`tool_choice` "required", two tools offered)."""
    result = weather_agent(target, Weather).run_sync("Answer with final_result for 'Paris'.")
    assert isinstance(result.output, Weather)
    assert result.output.city == "Paris"


def test_agent_tool_call_then_output_tool(target: Target) -> None:
    """The whole chain: a function tool call, its result, then the output tool."""
    result = weather_agent(target, Weather).run_sync("Use get_weather for 'Paris'.")
    assert isinstance(result.output, Weather)
    assert tool_was_called(result)


def test_agent_tool_and_native_output(target: Target) -> None:
    """A function tool, then the answer as `response_format` json_schema."""
    agent = weather_agent(target, NativeOutput(Weather))
    result = agent.run_sync("Use get_weather for 'Paris'.")
    assert isinstance(result.output, Weather)
    assert tool_was_called(result)


def test_agent_tool_then_text(target: Target) -> None:
    result = weather_agent(target, str).run_sync("Use get_weather for 'Paris'.")
    assert "sunny in" in result.output
    assert tool_was_called(result)


def test_text_agent(target: Target) -> None:
    result = Agent(model(target)).run_sync("hello there")
    assert result.output == "echo: hello there"
    assert result.usage.output_tokens > 0


def test_streamed_text(target: Target) -> None:
    async def run() -> list[str]:
        agent = Agent(model(target))
        async with agent.run_stream("hello there") as stream:
            return [t async for t in stream.stream_text(delta=True)]

    assert "".join(asyncio.run(run())) == "echo: hello there"


def test_message_history(target: Target) -> None:
    agent = Agent(model(target), system_prompt="Be brief.")
    first = agent.run_sync("hello there")
    second = agent.run_sync("and again", message_history=first.new_messages())
    assert second.output == "echo: and again"
    assert len(second.all_messages()) == 4
