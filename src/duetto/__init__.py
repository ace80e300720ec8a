"""duetto: collaboration between a small local language model and a large remote one.

Light on import: only plain data types and the model seam are loaded here.
"""

from duetto.errors import ConfigError, DataError, DuettoError, ModelError, UserError
from duetto.messages import ChatRequest, ChatResponse, Message, StreamChunk
from duetto.models.base import ChatModel, LeafModel, ModelCard, RawResult
from duetto.trace import Step
from duetto.usage import Usage

__version__ = "0.1.0"

__all__ = [
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "ConfigError",
    "DataError",
    "DuettoError",
    "LeafModel",
    "Message",
    "ModelCard",
    "ModelError",
    "RawResult",
    "Step",
    "StreamChunk",
    "Usage",
    "UserError",
    "__version__",
]
