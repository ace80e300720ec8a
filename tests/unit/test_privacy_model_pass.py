"""The optional local-model pass: proposals that occur in the text become PERSON spans."""

from __future__ import annotations

import asyncio

from duetto.models.fake import ScriptedModel
from duetto.privacy.model_pass import ModelPass, proposed_names
from duetto.privacy.rules import rules_detect

TEXT = "Regina is very reliable; ask Tomás Ibáñez or mail ana@example.org."


def test_proposals_must_occur_verbatim_and_look_like_names() -> None:
    answer = "1. Regina\n- Tomás Ibáñez, Peter Pan\nNONE\n" + TEXT  # the echo is dropped
    found = proposed_names(answer, TEXT)
    assert [(e.type, e.text, e.start) for e in found] == [
        ("PERSON", "Regina", 0),
        ("PERSON", "Tomás Ibáñez", 29),
    ]
    assert proposed_names("NONE", TEXT) == []


def test_model_pass_merges_with_the_base_detector() -> None:
    second = ModelPass(ScriptedModel("slm", lambda r: "Regina"), base=rules_detect)
    found = asyncio.run(second.detect(TEXT))
    assert [(e.type, e.text) for e in found] == [
        ("PERSON", "Regina"),
        ("EMAIL_ADDRESS", "ana@example.org"),
    ]
