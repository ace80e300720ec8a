"""instructor, unmodified, in the modes an application picks (TOOLS is its default), each
directly and through duetto."""

from __future__ import annotations

import instructor
import openai
import pytest
from pydantic import BaseModel

from compat.env import Target

pytestmark = pytest.mark.timeout(60)


class User(BaseModel):
    name: str
    age: int


MODES = {
    "tools": instructor.Mode.TOOLS,
    "tools_strict": instructor.Mode.TOOLS_STRICT,
    "json": instructor.Mode.JSON,
    "md_json": instructor.Mode.MD_JSON,
    "json_schema": instructor.Mode.JSON_SCHEMA,
}


def extract(t: Target, mode: instructor.Mode) -> User:
    raw = openai.OpenAI(base_url=t.base_url, api_key=t.api_key, max_retries=0, timeout=20)
    client = instructor.from_openai(raw, mode=mode)
    return client.chat.completions.create(
        model=t.model,
        response_model=User,
        max_retries=1,
        messages=[{"role": "user", "content": "Extract: 'Ada' is 36 years old."}],
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_extract(target: Target, mode: str) -> None:
    user = extract(target, MODES[mode])
    # instructor hands back its own subclass of the response model: compare the fields
    assert isinstance(user, User) and user.model_dump() == {"name": "Ada", "age": 36}
