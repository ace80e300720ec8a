"""Routers: per-prompt predictions of each model's quality, for routing and cascades.

    base.py        Router, RouterInputs, the .npz save/load and the kind registry
    baselines.py   RandomRouter, LengthRouter, PriorRouter
    embedding.py   LogisticRouter, KnnRouter, MFRouter, EnsembleRouter, default_router()
    cascade.py     post-generation scorers that read the weak model's answer

Importing the package defines (and so registers) every router kind.
"""

from duetto.persist import FORMAT_VERSION
from duetto.scoring.routers.base import (
    Router,
    RouterInputs,
    choose_models,
    load_router,
    router_registry,
)
from duetto.scoring.routers.baselines import LengthRouter, PriorRouter, RandomRouter
from duetto.scoring.routers.cascade import (
    FEATURE_NAMES,
    AnswerFormatScorer,
    ArithmeticCheckScorer,
    CascadeLogisticScorer,
    answer_features,
    arithmetic_checks,
    feature_matrix,
    safe_eval,
)
from duetto.scoring.routers.embedding import (
    EnsembleRouter,
    KnnRouter,
    LogisticRouter,
    MFRouter,
    default_router,
)

__all__ = [
    "FEATURE_NAMES",
    "FORMAT_VERSION",
    "AnswerFormatScorer",
    "ArithmeticCheckScorer",
    "CascadeLogisticScorer",
    "EnsembleRouter",
    "KnnRouter",
    "LengthRouter",
    "LogisticRouter",
    "MFRouter",
    "PriorRouter",
    "RandomRouter",
    "Router",
    "RouterInputs",
    "answer_features",
    "arithmetic_checks",
    "choose_models",
    "default_router",
    "feature_matrix",
    "load_router",
    "router_registry",
    "safe_eval",
]
