"""Session affinity: a session that a route or cascade answered with one model keeps going to
that model (same voice, warm caches), within a bounded LRU of sessions."""

from __future__ import annotations

from collections import OrderedDict

from duetto.messages import ChatResponse
from duetto.models.base import ChatModel

AFFINITY_MODES = ("route", "cascade")  # strategies whose answer comes from one chosen model

SessionKey = tuple[str | None, str, str]  # (API key name, requested model, session)


class Affinity:
    """Pins (key, requested, session) to the engine name of the model that answered it."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.by_card: dict[str, str] = {}  # model card name → engine name
        self._sessions: OrderedDict[SessionKey, str] = OrderedDict()

    def index(self, models: dict[str, ChatModel]) -> None:
        self.by_card = {m.card.name: n for n, m in models.items()}

    def pinned(self, session: SessionKey, model: ChatModel) -> str | None:
        """The model name this session is pinned to, if `model` is a strategy that pins."""
        if getattr(model, "mode", None) not in AFFINITY_MODES:
            return None
        name = self._sessions.get(session)
        if name is not None:
            self._sessions.move_to_end(session)
        return name

    def pin(self, session: SessionKey, response: ChatResponse) -> None:
        root = response.trace
        if root.mode not in AFFINITY_MODES or not root.children:
            return
        name = self.by_card.get(root.children[-1].name)
        if name is None:
            return
        self._sessions[session] = name
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
