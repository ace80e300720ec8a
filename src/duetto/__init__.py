"""duetto: collaboration between a small local language model and a large remote one.

Everything a user needs is here: the plain data types, the model seam, the real backends, the
strategies (which are models too), the engine that builds them from YAML, and the whole error
tree. Light on import: llama.cpp, torch, FastAPI, Presidio and matplotlib load only inside the
functions that need them (tests/unit/test_public_api.py checks both).
"""

from duetto.config import Config, load_config, load_default_config
from duetto.engine import Engine
from duetto.errors import (
    BrokenStream,
    CircuitOpen,
    ConfigError,
    DataError,
    DuettoError,
    FallbackFailed,
    GatewayError,
    GatewayFailure,
    MissingCapability,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    OverBudget,
    RateLimited,
    Rejected,
    UnknownModel,
    UpstreamError,
    UserError,
)
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk
from duetto.models.base import ChatModel, LeafModel, ModelCard, RawResult
from duetto.models.local import LlamaCppModel
from duetto.models.openai import OpenAIModel
from duetto.models.replay import ReplayModel
from duetto.scoring.verifiers import JudgeVerifier, LogprobVerifier, SelfVerifier
from duetto.strategies import (
    Cascade,
    CompressAssist,
    Fallback,
    Fuse,
    HintAssist,
    Pipeline,
    RedactAssist,
    Route,
    Stage,
    Strategy,
)
from duetto.trace import Step
from duetto.usage import Usage

__version__ = "0.1.0"

__all__ = [
    "BrokenStream",
    "Cascade",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "CircuitOpen",
    "CompressAssist",
    "Config",
    "ConfigError",
    "DataError",
    "DuettoError",
    "Engine",
    "Fallback",
    "FallbackFailed",
    "Fuse",
    "GatewayError",
    "GatewayFailure",
    "HintAssist",
    "JudgeVerifier",
    "LeafModel",
    "LlamaCppModel",
    "LogprobVerifier",
    "Message",
    "MissingCapability",
    "ModelCard",
    "ModelError",
    "ModelTimeout",
    "ModelUnavailable",
    "OpenAIModel",
    "OverBudget",
    "Pipeline",
    "RateLimited",
    "RawResult",
    "RedactAssist",
    "Rejected",
    "ReplayModel",
    "Route",
    "SelfVerifier",
    "Stage",
    "Step",
    "Strategy",
    "StreamChunk",
    "UnknownModel",
    "UpstreamError",
    "Usage",
    "UserError",
    "__version__",
    "load_config",
    "load_default_config",
]
