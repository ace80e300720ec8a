"""A cheap guess whether a text is English, for detectors whose model only knows English.

Counts frequent function words of English against those of Spanish, Portuguese, French,
Italian, German and Dutch (about 20 each). Short or word-poor texts count as English, so the
English NER still runs on them: a false "not English" only skips the model, and the rules
(`duetto.privacy.rules`) run either way.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+")
_EN_WORDS = (
    "the of and to in is was for that with on as by are be this from at it an which have has "
    "his her he she they you not or"
)
_OTHER_WORDS = (
    # es / pt
    "el la los las de del y en que con por para una un se su al lo como es más pero sus "
    "le fue son está o da do dos das em os não com uma "
    # fr
    "les des et est une dans pour pas sur qui au avec ce il elle sont "
    # it
    "il di che è per non della nel sono alla gli "
    # de / nl
    "der die das und ist nicht mit den ein eine zu auf für von sich het een van en niet "
    "zijn"
)
_ENGLISH = frozenset(_EN_WORDS.split())
_OTHER = frozenset(_OTHER_WORDS.split()) - _ENGLISH


def looks_english(text: str, min_words: int = 8) -> bool:
    """False when the text's function words are mostly not English ones."""
    en = other = 0
    for m in _WORD.finditer(text[:4000]):
        w = m.group().lower()
        en += w in _ENGLISH
        other += w in _OTHER
    if en + other < min_words:
        return True
    return en >= other
