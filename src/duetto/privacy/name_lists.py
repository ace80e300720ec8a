"""Given names and surnames for the person-name rules, shipped with the package (no download).

Source: the US Census Bureau's 1990 name-frequency lists (public domain), as shipped in the PyPI
package `names` 0.3.0 (MIT): `dist.female.first` + `dist.male.first` (5,494 given names) and the
5,000 most frequent entries of `dist.all.last`. Names that are also common English words ("may",
"grace", "brown", "hunter") are left out: a name is dropped when, in English text that is not a
privacy evaluation set (../shared/datasets gsm8k, routellm_evals, llmrouter_ulab), it occurs in
lower case at least 3 times and at least half as often as capitalised. Names shorter than three
letters, month and weekday names are left out too. `common_words` lists the lower-case words
of that corpus seen at least 5 times and mostly in lower case (a word, not a name: "transfer",
"balance"). Rebuild with `python -m duetto.privacy.name_lists CENSUS_DIR CORPUS_FILE...`
(writes `data/*.txt`).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from functools import cache
from importlib.resources import files
from pathlib import Path

SURNAMES_KEPT = 5000
# Capitalised in English text, so the corpus test keeps them, but never a name on their own.
_CALENDAR_WORDS = (
    "january february march april may june july august september october november december"
    " monday tuesday wednesday thursday friday saturday sunday"
)
_CALENDAR = frozenset(_CALENDAR_WORDS.split())


@cache
def given_names() -> frozenset[str]:
    """Lower-case given names (about 5,300)."""
    return _read("given_names.txt")


@cache
def surnames() -> frozenset[str]:
    """Lower-case surnames (about 4,500 of the 5,000 most frequent)."""
    return _read("surnames.txt")


@cache
def common_words() -> frozenset[str]:
    """Lower-case words common in English text (the corpus test above, seen 5+ times)."""
    return _read("common_words.txt")


def _read(name: str) -> frozenset[str]:
    text = files("duetto.privacy").joinpath("data", name).read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def build(census: Path, corpus: list[Path], out: Path) -> dict[str, int]:
    """Write data/given_names.txt and data/surnames.txt from the census lists and a corpus."""
    lower: Counter[str] = Counter()
    upper: Counter[str] = Counter()
    for path in corpus:
        for m in re.finditer(r"[A-Za-z]+", path.read_text(errors="ignore")):
            w = m.group()
            if w.islower():
                lower[w] += 1
            elif w[0].isupper() and w[1:].islower():
                upper[w.lower()] += 1

    def keep(name: str) -> bool:
        common = lower[name] >= 3 and 2 * lower[name] >= upper[name]
        return len(name) >= 3 and not common and name not in _CALENDAR

    def column(file: str, n: int | None = None) -> list[str]:
        rows = (census / file).read_text().splitlines()[:n]
        return [r.split()[0].lower() for r in rows if r.strip()]

    given = sorted({n for n in column("dist.female.first") + column("dist.male.first") if keep(n)})
    last = sorted({n for n in column("dist.all.last", SURNAMES_KEPT) if keep(n)})
    common = sorted(
        w for w, k in lower.items() if k >= 5 and 2 * k >= upper[w] and len(w) >= 3 and w.isascii()
    )
    header = "# see duetto/privacy/name_lists.py for the source and how this list was built\n"
    lists = (("given_names.txt", given), ("surnames.txt", last), ("common_words.txt", common))
    for name, values in lists:
        (out / name).write_text(header + "\n".join(values) + "\n", encoding="utf-8")
    return {"given_names": len(given), "surnames": len(last), "common_words": len(common)}


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]], Path(__file__).parent / "data"))
