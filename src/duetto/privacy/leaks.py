"""What left the device, by risk tier (`duetto.privacy.tiers`), and what a second opinion found
that the first detector missed.

    count = tier_counter(rules_detect)            # a LeafModel.pii_counter: text -> {tier: n}
    count("key sk-live-... for ana@example.org")  # {"secret": 1, "contact": 1}
    residual(second_opinion(text), first)         # spans the first detector did not cover

Entities inside duetto's placeholders (`<EMAIL_ADDRESS_1>`) hold no personal data and are never
counted. The Engine counts with the process-wide detector (`count_by_tier`, what `duetto eval`
reports); the gateway counts inline with the dependency-free rules and re-scans a sample of what
it sent with the slower detector off the request path (duetto.gateway.leaks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from duetto.privacy.tiers import TIERS, tier_of
from duetto.scoring.pii import Entity, detect, outside_placeholders

Detector = Callable[[str], list[Entity]]


def by_tier(entities: Iterable[Entity]) -> dict[str, int]:
    """{tier: count} of the entities, tiers with none left out."""
    return dict(Counter(tier_of(e.type) for e in entities))


def sent_entities(text: str, detector: Detector = detect) -> list[Entity]:
    """What `detector` finds in `text` outside placeholders."""
    return outside_placeholders(text, detector(text)) if text else []


def count_by_tier(text: str) -> dict[str, int]:
    """The Engine's default `pii_counter`: the process-wide detector's entities by tier."""
    return by_tier(sent_entities(text))


def tier_counter(detector: Detector) -> Callable[[str], dict[str, int]]:
    """A `pii_counter` over a given detector."""
    return lambda text: by_tier(sent_entities(text, detector))


def residual(found: Iterable[Entity], first: Iterable[Entity]) -> list[Entity]:
    """The entities of `found` that no entity of `first` overlaps: leaks the first detector
    missed (an overlap of any type counts as caught: it was redacted, or counted, as something)."""
    spans = [(e.start, e.end) for e in first]
    return [e for e in found if not any(e.start < end and start < e.end for start, end in spans)]


def add_tiers(total: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """`total` with `more` added in place (and returned), in the order of TIERS."""
    for tier, n in more.items():
        total[tier] = total.get(tier, 0) + int(n)
    order: dict[str, int] = {t: i for i, t in enumerate(TIERS)}
    ordered = sorted(total.items(), key=lambda kv: order.get(kv[0], len(order)))
    total.clear()
    total.update(ordered)
    return total
