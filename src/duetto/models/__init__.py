"""Model backends. Each is a ChatModel; heavy backends import their libraries lazily."""

from duetto.models.base import ChatModel, LeafModel, ModelCard, RawResult

__all__ = ["ChatModel", "LeafModel", "ModelCard", "RawResult"]
