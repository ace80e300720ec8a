"""Collaboration strategies: composites that are themselves ChatModels, so they nest.

Pipeline(name, stages)                 models in sequence, each a Stage with a role
Route(name, models, scorer, ...)       a scorer picks the answering model before generation
Cascade(name, models, verifier, ...)   the cheap model answers, a verifier may escalate
RedactAssist / CompressAssist / HintAssist
                                       one model (or tool) helps, another answers
Fuse(name, models, method=...)         several answers combined into one
Fallback(name, primary, backup, ...)   the backup answers when the primary fails or times out
Rules([Rule(when, target), ...])       pins traffic before any learned scorer
"""

from duetto.strategies.assist import CompressAssist, HintAssist, RedactAssist
from duetto.strategies.base import Branches, Strategy, Tunable
from duetto.strategies.cascade import Cascade
from duetto.strategies.fallback import Fallback
from duetto.strategies.fuse import Fuse
from duetto.strategies.pipeline import Pipeline, Stage, json_validator, regex_validator
from duetto.strategies.route import (
    LengthScorer,
    Policy,
    Route,
    RouterScorer,
    Scorer,
    TaskPriorScorer,
)
from duetto.strategies.rules import Rule, Rules

__all__ = [
    "Branches",
    "Cascade",
    "CompressAssist",
    "Fallback",
    "Fuse",
    "HintAssist",
    "LengthScorer",
    "Pipeline",
    "Policy",
    "RedactAssist",
    "Route",
    "RouterScorer",
    "Rule",
    "Rules",
    "Scorer",
    "Stage",
    "Strategy",
    "TaskPriorScorer",
    "Tunable",
    "json_validator",
    "regex_validator",
]
