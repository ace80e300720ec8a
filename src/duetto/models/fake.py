"""`backend: fake` in YAML: the scripted test model, whose home is `duetto.testing.scripted`."""

from duetto.testing.scripted import Script, ScriptedModel

__all__ = ["Script", "ScriptedModel"]
