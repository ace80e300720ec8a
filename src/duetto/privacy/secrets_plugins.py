"""detect-secrets (Yelp, Apache-2.0) as an optional source of spans for `secrets.find_secrets`.

Its plugins are used through their Python API (`analyze_string` on each line that holds a
candidate: `://`, `BEGIN`, or a 12-character token run); the strings they yield are mapped back to
every occurrence in that line. Imported lazily: without the library `detect_secrets_hits` yields
nothing and `detect_secrets_available()` is False. Entropy plugins keep their default limits
(base64 4.5, hex 3.0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from duetto.scoring.pii import Entity

_CANDIDATE_LINE = re.compile(r"://|BEGIN|[A-Za-z0-9+/_-]{12}")


@lru_cache(maxsize=1)
def _detect_secrets_plugins() -> tuple[tuple[str, Callable[[str], Iterator[str]]], ...] | None:
    """detect-secrets' plugins but two: IPPublicDetector (an IP is PII, not a secret) and
    KeywordDetector (the key-word rules here cover it: on the three secret sets it found no
    gold span they missed and took 70% of detect-secrets' time)."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
    except ImportError:
        return None
    plugins: list[tuple[str, Callable[[str], Iterator[str]]]] = []
    classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    for cls in classes:
        name = cls.__name__
        if name in ("IPPublicDetector", "KeywordDetector"):
            continue
        plugin = cls()
        if isinstance(plugin, HighEntropyStringsPlugin):
            plugins.append((name, _entropy_filtered(plugin)))
        else:
            plugins.append((name, plugin.analyze_string))
    return tuple(sorted(plugins))


def _entropy_filtered(plugin) -> Callable[[str], Iterator[str]]:  # type: ignore[no-untyped-def]
    def analyze(line: str) -> Iterator[str]:
        for s in plugin.analyze_string(line):
            if plugin.calculate_shannon_entropy(s) > plugin.entropy_limit:
                yield s

    return analyze


_DS_TYPES = {
    "PrivateKeyDetector": "PRIVATE_KEY",
    "JwtTokenDetector": "JWT",
    "BasicAuthDetector": "CONNECTION_STRING",
    "Base64HighEntropyString": "SECRET",
    "HexHighEntropyString": "SECRET",
}


def detect_secrets_hits(text: str) -> Iterator[Entity]:
    """Spans of what detect-secrets' plugins yield, line by line (none without the library)."""
    plugins = _detect_secrets_plugins()
    if not plugins:
        return
    offset = 0
    for line in text.split("\n"):
        if len(line) >= 8 and _CANDIDATE_LINE.search(line):
            for name, analyze in plugins:
                for value in set(analyze(line)):
                    if not value or len(value) < 3:
                        continue
                    etype = _DS_TYPES.get(name, "API_KEY")
                    for m in re.finditer(re.escape(value), line):
                        s, e = offset + m.start(), offset + m.end()
                        yield Entity(etype, s, e, value, 0.9 if etype != "SECRET" else 0.6)
        offset += len(line) + 1


def detect_secrets_available() -> bool:
    return _detect_secrets_plugins() is not None
