"""A small synthetic intent task and a hashed-words embedder: smoke tests and demos of the loop
that need neither the shared datasets nor MiniLM. Deterministic for a given seed."""

from __future__ import annotations

import hashlib
import random

import numpy as np

from duetto.distill.data import Example, IntentDataset

INTENTS = {
    "card_arrival": ["card", "arrive", "delivery", "post"],
    "exchange_rate": ["rate", "exchange", "currency", "euro"],
    "pin_blocked": ["pin", "blocked", "locked", "unlock"],
    "top_up_failed": ["top", "failed", "topup", "declined"],
}
OFF_TOPIC = ["weather", "song", "recipe", "movie", "football"]
FILLER = ["my", "the", "please", "why", "is", "help", "today", "now", "again", "bank"]


class HashedWords:
    """Bag of hashed words in 64 dimensions, unit rows: similar sentences, similar vectors."""

    name = "hashed-words"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("_", " ").split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: np.ndarray = out / np.maximum(norms, 1e-9)
        return unit


def synthetic(
    n_train: int = 1200, n_test: int = 300, oos: bool = False, seed: int = 7, n_val: int = 0
) -> IntentDataset:
    """Four intents from key words; 30% of queries borrow another intent's key word (so a student
    is sometimes unsure); with `oos`, 15% are off-topic queries labelled "oos". `n_val` > 0 adds
    a validation split of that size."""
    rng = random.Random(seed)

    def make(n: int) -> tuple[Example, ...]:
        rows = []
        for _ in range(n):
            if oos and rng.random() < 0.15:
                words = rng.sample(OFF_TOPIC, 2)
                rows.append(Example(" ".join([*words, *rng.sample(FILLER, 3)]), "oos"))
                continue
            label = rng.choice(sorted(INTENTS))
            keys = rng.sample(INTENTS[label], 2)
            if rng.random() < 0.3:
                keys.append(rng.choice(INTENTS[rng.choice(sorted(INTENTS))]))
            rows.append(Example(" ".join([*keys, *rng.sample(FILLER, 3)]), label))
        return tuple(rows)

    train, test = make(n_train), make(n_test)
    validation = make(n_val) if n_val else ()
    return IntentDataset(
        "synthetic", tuple(sorted(INTENTS)), train, test, "oos" if oos else None, validation
    )
