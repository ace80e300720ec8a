"""The requests of the demo traffic built from public datasets (see `duetto.eval.traffic`).

Each builder turns one source record into one workload row (the JSONL format of
`duetto.eval.workload`) whose gold answer a scorer can check without a model:

- intents (banking77, clinc150): the user message is the query itself; the system prompt lists
  a short candidate list of intents (`CANDIDATES` in-scope names, plus `out_of_scope` for
  clinc150) and the answer is the intent name (scorer `choice` over the candidates). The list
  is the anchor label and the labels nearest to it by name (shared name words; for clinc150 the
  same domain first), seeded; the anchor is the gold intent, or for an out-of-scope query the
  intent whose name shares most words with the query, so out-of-scope queries meet plausible
  candidates too. A local student that predicts over all labels reads the query from the user
  message and the label set from `labels.json`.
- GSM8K: the question; the gold final number (scorer `numeric`).
- presidio-research sentences (synthetic, Faker-filled): `extract` asks for the one labelled
  value of a type (scorer `exact` after normalisation: case, punctuation and spacing; digit
  values also accept the digits alone), `classify` asks which one of four kinds of personal data
  the message holds (scorer `choice`; the three distractor kinds are absent from the labels),
  `summarise` asks for a one-sentence summary keeping the person's name (scorer `contains`: it
  checks only that the name is kept, not the summary's quality; repeating the message passes).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from duetto.errors import DataError

CANDIDATES = 6  # in-scope intent names offered per intent request
OUT_OF_SCOPE = "out_of_scope"  # the answer to a clinc150 query that fits no intent
INTENT_MAX_TOKENS = 16
MATH_MAX_TOKENS = 200
EXTRACT_MAX_TOKENS = 48
CLASSIFY_MAX_TOKENS = 16
SUMMARISE_MAX_TOKENS = 64

INTENT_TASKS = {
    "banking77": "online-banking customer messages",
    "clinc150": "requests to a virtual assistant",
}
MATH_SYSTEM = "Solve the math problem. Be brief, then end with 'The answer is N'."
PII_SYSTEM = "You help a support team handle customer messages. Be brief."

# entity type -> (what the extract question asks for, how the reply is described)
EXTRACT_TYPES: dict[str, tuple[str, str]] = {
    "EMAIL_ADDRESS": ("What e-mail address is given in the message below?", "the e-mail address"),
    "PHONE_NUMBER": ("What phone number is given in the message below?", "the phone number"),
    "CREDIT_CARD": ("What credit card number is given in the message below?", "the card number"),
    "IBAN_CODE": ("What IBAN is given in the message below?", "the IBAN"),
    "US_SSN": ("What social security number is given in the message below?", "the number"),
    "IP_ADDRESS": ("What IP address is given in the message below?", "the IP address"),
    "PERSON": ("What is the full name of the person in the message below?", "the name"),
}
# entity type -> the option text of `classify` (each picks itself under the choice scorer)
CLASSIFY_TYPES: dict[str, str] = {
    "CREDIT_CARD": "credit card number",
    "EMAIL_ADDRESS": "email address",
    "PHONE_NUMBER": "phone number",
    "IBAN_CODE": "IBAN",
    "US_SSN": "social security number",
    "IP_ADDRESS": "IP address",
    "STREET_ADDRESS": "street address",
}
_DIGITS_TYPES = {"PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"}
SUMMARISE_MIN_CHARS = 60  # shorter messages have nothing to summarise
PII_TASKS = ("extract", "classify", "summarise")
KIND_CAP = 0.4  # the most of a PII task's requests one entity type takes (while others last)


# --- intents ----------------------------------------------------------------------------------


# Words that say nothing about an intent ("what are you", "for", "please"): never an overlap.
_STOP_WORDS = (
    "about and any are can could did does for from get has have how know like made make many "
    "much need not out please should tell that the their there they this want was were what "
    "when where which who why will with would you your"
)
_STOP = frozenset(_STOP_WORDS.split(" "))


def _words(text: str) -> set[str]:
    """Content words: lower case, 3+ characters, not in `_STOP`, a plural 's' dropped."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return (
        {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words}
        - _STOP
        - {w for w in words if len(w) < 3}
    )


def _name_words(label: str) -> set[str]:
    return set(label.lower().split("_"))


def nearest_labels(
    anchor: str, labels: Sequence[str], domain_of: Mapping[str, str], k: int, rng: random.Random
) -> list[str]:
    """The k labels nearest to `anchor` by name: same domain first, then shared name words
    (Jaccard), ties broken by `rng`."""
    aw, ad = _name_words(anchor), domain_of.get(anchor)

    def key(lab: str) -> tuple[int, float, float]:
        w = _name_words(lab)
        same = int(ad is not None and domain_of.get(lab) == ad)
        return (-same, -len(aw & w) / len(aw | w), rng.random())

    others = sorted(labels)
    keys = {lab: key(lab) for lab in others if lab != anchor}  # draw in a fixed order
    return sorted(keys, key=keys.__getitem__)[:k]


def query_anchor(query: str, labels: Sequence[str], rng: random.Random) -> str:
    """The label whose name shares most words with the query (ties and no overlap: seeded)."""
    qw = _words(query)
    keys = {lab: (-len(qw & _words(lab.replace("_", " "))), rng.random()) for lab in sorted(labels)}
    return min(keys, key=keys.__getitem__)


def intent_row(
    dataset: str,
    row_id: str,
    query: str,
    gold: str | None,
    labels: Sequence[str],
    domain_of: Mapping[str, str],
    rng: random.Random,
) -> dict[str, Any]:
    """One intent request; `gold` None means out of scope (clinc150 only)."""
    anchor = gold if gold is not None else query_anchor(query, labels, rng)
    cands = [anchor, *nearest_labels(anchor, labels, domain_of, CANDIDATES - 1, rng)]
    rng.shuffle(cands)
    oos = dataset == "clinc150"
    choices = [*cands, OUT_OF_SCOPE] if oos else cands
    system = f"You sort {INTENT_TASKS[dataset]} by intent. Intents: {', '.join(cands)}."
    if oos:
        system += f" If none of them fits, reply {OUT_OF_SCOPE}."
    system += " Reply with one intent name only."
    tags = ["intent", dataset] + (["oos"] if gold is None else [])
    return {
        "id": row_id,
        "task": "intent",
        "system": system,
        "prompt": query,
        "reference": gold if gold is not None else OUT_OF_SCOPE,
        "scorer": "choice",
        "choices": choices,
        "tags": tags,
        "max_tokens": INTENT_MAX_TOKENS,
    }


# --- GSM8K ------------------------------------------------------------------------------------


def gsm8k_gold(answer: str) -> str:
    """The final number of a GSM8K solution ("... #### 1,234" -> "1234")."""
    if "####" not in answer:
        raise ValueError("GSM8K answer without '####'")
    gold = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", gold):
        raise ValueError(f"GSM8K gold {gold!r} is not a number")
    return gold


def math_row(row_id: str, question: str, answer: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "task": "math",
        "system": MATH_SYSTEM,
        "prompt": question.strip(),
        "reference": gsm8k_gold(answer),
        "scorer": "numeric",
        "tags": ["gsm8k"],
        "max_tokens": MATH_MAX_TOKENS,
    }


# --- PII-bearing requests (presidio-research) -------------------------------------------------


def values_by_type(spans: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each entity type's distinct values, a value inside another of its type dropped
    ("Yefremova" inside "Faina D. Yefremova")."""
    raw: dict[str, set[str]] = {}
    for s in spans:
        raw.setdefault(str(s["entity_type"]), set()).add(str(s["entity_value"]).strip())
    out: dict[str, list[str]] = {}
    for kind, vals in raw.items():
        out[kind] = sorted(v for v in vals if v and not any(v != w and v in w for w in vals))
    return out


def _message(instruction: str, text: str) -> str:
    return f"{instruction}\n\nMessage: {text.strip()}"


def extract_row(
    row_id: str,
    text: str,
    values: Mapping[str, list[str]],
    rng: random.Random,
    allowed: Collection[str] = EXTRACT_TYPES,
) -> dict[str, Any] | None:
    """Ask for the one value of an `allowed` type the message holds once (any other type wins
    over PERSON); None when no type fits."""
    kinds = [
        k
        for k in EXTRACT_TYPES
        if k in allowed and len(values.get(k, ())) == 1 and "|" not in values[k][0]
    ]
    if not kinds:
        return None
    rare = [k for k in kinds if k != "PERSON"]
    kind = rng.choice(rare) if rare else kinds[0]
    value = values[kind][0]
    question, what = EXTRACT_TYPES[kind]
    reference = value
    digits = re.sub(r"[^0-9A-Za-z]", "", value)
    if kind in _DIGITS_TYPES and digits != value:
        reference = f"{value}|{digits}"
    return {
        "id": row_id,
        "task": "extract",
        "system": PII_SYSTEM,
        "prompt": _message(f"{question} Reply with {what} only, exactly as written.", text),
        "reference": reference,
        "scorer": "exact",
        "tags": ["pii", "extract", kind.lower()],
        "max_tokens": EXTRACT_MAX_TOKENS,
    }


def classify_row(
    row_id: str,
    text: str,
    values: Mapping[str, list[str]],
    rng: random.Random,
    allowed: Collection[str] = CLASSIFY_TYPES,
) -> dict[str, Any] | None:
    """Which one kind of personal data the message holds, among four; None unless exactly one
    of the `CLASSIFY_TYPES` is labelled in it, and that one is `allowed`."""
    present = [k for k in CLASSIFY_TYPES if values.get(k)]
    if len(present) != 1 or present[0] not in allowed:
        return None
    gold = present[0]
    absent = [k for k in CLASSIFY_TYPES if k != gold]
    kinds = [gold, *rng.sample(absent, 3)]
    rng.shuffle(kinds)
    options = [CLASSIFY_TYPES[k] for k in kinds]
    instruction = (
        "Which kind of personal data does the message below contain? "
        f"Answer with one of: {', '.join(options)}."
    )
    return {
        "id": row_id,
        "task": "classify",
        "system": PII_SYSTEM,
        "prompt": _message(instruction, text),
        "reference": CLASSIFY_TYPES[gold],
        "scorer": "choice",
        "choices": options,
        "tags": ["pii", "classify", gold.lower()],
        "max_tokens": CLASSIFY_MAX_TOKENS,
    }


def summarise_row(
    row_id: str,
    text: str,
    values: Mapping[str, list[str]],
    rng: random.Random,
    allowed: Collection[str] = ("PERSON",),
) -> dict[str, Any] | None:
    """A one-sentence summary that keeps the person's name; None unless the message is long
    enough and names exactly one person."""
    del rng  # same signature as the other builders
    persons = values.get("PERSON", [])
    if (
        "PERSON" not in allowed
        or len(persons) != 1
        or len(text.strip()) < SUMMARISE_MIN_CHARS
        or "|" in persons[0]
    ):
        return None
    instruction = "Summarise the message below in one short sentence. Keep the person's name."
    return {
        "id": row_id,
        "task": "summarise",
        "system": PII_SYSTEM,
        "prompt": _message(instruction, text),
        "reference": persons[0],
        "scorer": "contains",
        "tags": ["pii", "summarise", "person"],
        "max_tokens": SUMMARISE_MAX_TOKENS,
    }


PII_BUILDERS = {"extract": extract_row, "classify": classify_row, "summarise": summarise_row}
ENTITY_TYPES = frozenset(EXTRACT_TYPES) | frozenset(CLASSIFY_TYPES)


def seeded_rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join([str(seed), *parts]))  # str seeds hash with sha512: stable


def template_pools(
    sentences: Sequence[dict[str, Any]], needs: Mapping[str, int], rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    """Split presidio's templates between pools in proportion to each pool's PII requests."""
    by_template: dict[int, list[dict[str, Any]]] = {}
    for s in sentences:
        by_template.setdefault(int(s["template_id"]), []).append(s)
    templates = sorted(by_template)
    rng.shuffle(templates)
    total, want = len(sentences), sum(needs.values()) or 1
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in needs}
    for t in templates:
        pool = max(needs, key=lambda p: needs[p] / want * total - len(out[p]))
        out[pool].extend(by_template[t])
    return out


def pii_rows(
    pool: str, sentences: list[dict[str, Any]], counts: Mapping[str, int], seed: int, used: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """The pool's extract/classify/summarise rows. A first pass lets no entity type take more
    than `KIND_CAP` of a task's rows (PERSON would crowd out the rarer types), a second fills
    what is left without the cap."""
    rng = seeded_rng(seed, "presidio", pool)
    rng.shuffle(sentences)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in PII_TASKS}
    kinds: dict[str, Counter[str]] = {t: Counter() for t in PII_TASKS}
    for capped in (True, False):
        for s in sentences:
            left = [t for t in PII_TASKS if len(rows[t]) < counts[t]]
            if not left:
                break
            text = str(s["full_text"])
            if text in used:
                continue
            values = values_by_type(s["spans"])
            for task in sorted(left, key=lambda t: (len(rows[t]) - counts[t], PII_TASKS.index(t))):
                cap = max(1, math.ceil(KIND_CAP * counts[task])) if capped else counts[task]
                allowed = {k for k in ENTITY_TYPES if kinds[task][k] < cap}
                row_id = f"presidio-{pool}-{task}-{len(rows[task]):04d}"
                row = PII_BUILDERS[task](row_id, text, values, rng, allowed)
                if row is not None:
                    rows[task].append(row)
                    kinds[task][row["tags"][2].upper()] += 1
                    used.add(text)
                    break
    for task in PII_TASKS:
        if len(rows[task]) < counts[task]:
            raise DataError(
                f"presidio-research ({pool}): only {len(rows[task])} of {counts[task]} "
                f"'{task}' requests available"
            )
    return rows
