"""Every labelled PII set under `../shared/datasets`, each with its label mapping stated here.

    for spec in labelled_sets(root):           # root: the `datasets` folder
        samples = spec.load()                  # list[LabelledText]

| set | labels → detector types | tuned on? |
|---|---|---|
| presidio synth_dataset_v2 | `DEFAULT_LABEL_MAP` (GPE→LOCATION, …) | yes (the original rules) |
| presidio generated_large | `DEFAULT_LABEL_MAP` (ADDRESS→STREET_ADDRESS) | read while tuning v2 |
| MEDDOCAN dev | `MEDDOCAN_LABELS` | yes (the Spanish field rules) |
| MEDDOCAN test | `MEDDOCAN_LABELS` | no: held out |
| python-stdnum | iban→IBAN_CODE, everything else→IDENTIFIER, in seeded sentences | no |

Negative (unlabelled) sets are scored for false alarms only: banking77's customer queries.
The secret sets (CredSweeper, Nosey Parker, Kingfisher) come from `duetto.privacy.secrets_eval`
(its docstring states their mapping); their "negatives" are negatives for one rule each.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from duetto.privacy.evaluate import LabelledText, load_labelled
from duetto.scoring.pii import Entity

# MEDDOCAN (Spanish clinical reports, IberLEF 2019) → detector types; tiers via `tier_of`.
MEDDOCAN_LABELS: dict[str, str] = {
    "NOMBRE_SUJETO_ASISTENCIA": "PERSON",  # the patient: contact
    "NOMBRE_PERSONAL_SANITARIO": "PERSON",  # the doctor: contact
    "FAMILIARES_SUJETO_ASISTENCIA": "OTHER",  # mostly kin words ("su padre"): quasi
    "OTROS_SUJETO_ASISTENCIA": "OTHER",
    "CALLE": "STREET_ADDRESS",
    "CORREO_ELECTRONICO": "EMAIL_ADDRESS",
    "NUMERO_TELEFONO": "PHONE_NUMBER",
    "NUMERO_FAX": "PHONE_NUMBER",
    "ID_SUJETO_ASISTENCIA": "MEDICAL_ID",  # NHC, CIPA: identifier
    "ID_CONTACTO_ASISTENCIAL": "MEDICAL_ID",  # episode number
    "ID_ASEGURAMIENTO": "INSURANCE_ID",  # NASS (social security)
    "ID_TITULACION_PERSONAL_SANITARIO": "PROFESSIONAL_ID",  # NºCol
    "ID_EMPLEO_PERSONAL_SANITARIO": "EMPLOYEE_ID",
    "TERRITORIO": "LOCATION",  # towns, provinces, postcodes: quasi
    "PAIS": "LOCATION",
    "FECHAS": "DATE_TIME",
    "EDAD_SUJETO_ASISTENCIA": "AGE",
    "SEXO_SUJETO_ASISTENCIA": "SEX",
    "PROFESION": "PROFESSION",
    "HOSPITAL": "ORGANIZATION",
    "INSTITUCION": "ORGANIZATION",
    "CENTRO_SALUD": "ORGANIZATION",
}
# python-stdnum module → type: IBANs keep their type, the other 117 formats are identifiers.
STDNUM_TYPES: dict[str, str] = {"iban": "IBAN_CODE"}
# Sentences the bare python-stdnum values are placed in (seeded choice per value); half name
# the kind of number, half give no context word at all.
STDNUM_TEMPLATES: tuple[str, ...] = (
    "My number is {v}.",
    "Please check {v} before Friday.",
    "The form says {v}, is that right?",
    "I typed {v} into the portal and it was rejected.",
    "Reference: {v}",
    "can you look up {v} for me",
    "Our registration ID {v} appears on the invoice.",
    "It was {v} last time I checked",
)


@dataclass(frozen=True)
class LabelledSet:
    name: str
    load: Callable[[], list[LabelledText]]
    tuned: bool  # rules were changed while reading this set's errors
    negative: bool = False  # no labels: every detection is a false alarm candidate
    note: str = ""


def load_meddocan(path: Path) -> list[LabelledText]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text = row["text"]
        spans = tuple(
            Entity(MEDDOCAN_LABELS.get(e["label"], e["label"]), e["start"], e["end"], e["text"])
            for e in row["entities"]
        )
        out.append(LabelledText(text, tuple(sorted(spans, key=lambda e: e.start))))
    return out


def load_stdnum(path: Path, seed: int = 0) -> list[LabelledText]:
    """Each python-stdnum value (valid and invalid alike) in one seeded template sentence."""
    rng = random.Random(seed)
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        value = row["value"].strip()
        template = rng.choice(STDNUM_TEMPLATES)
        start = template.index("{v}")
        text = template.replace("{v}", value)
        etype = STDNUM_TYPES.get(row["stdnum_module"], "IDENTIFIER")
        out.append(LabelledText(text, (Entity(etype, start, start + len(value), value),)))
    return out


def load_banking77(path: Path) -> list[LabelledText]:
    with path.open(encoding="utf-8", newline="") as f:
        return [LabelledText(row["text"], ()) for row in csv.DictReader(f)]


def labelled_sets(root: Path) -> list[LabelledSet]:
    """The sets present under `root` (the shared `datasets` folder), in a fixed order."""
    sets: list[LabelledSet] = []
    presidio = root / "presidio_research_synth"
    for name, tuned in (("synth_dataset_v2", True), ("generated_large", True)):
        path = presidio / f"{name}.json"
        if path.is_file():
            sets.append(
                LabelledSet(f"presidio/{name}", partial(load_labelled, path), tuned, note="en")
            )
    meddocan = root / "pii_eval/SPACCC_MEDDOCAN"
    for split, tuned in (("dev", True), ("test", False)):
        path = meddocan / f"meddocan_{split}.jsonl"
        if path.is_file():
            sets.append(
                LabelledSet(f"meddocan/{split}", partial(load_meddocan, path), tuned, note="es")
            )
    stdnum = root / "pii_eval/python-stdnum/stdnum_doctest_numbers.jsonl"
    if stdnum.is_file():
        sets.append(LabelledSet("python-stdnum", lambda: load_stdnum(stdnum), False))
    sets.extend(_secret_sets(root))
    banking = root / "banking77/test.csv"
    if banking.is_file():
        sets.append(
            LabelledSet("banking77/test", lambda: load_banking77(banking), False, negative=True)
        )
    return sets


def _secret_sets(root: Path) -> list[LabelledSet]:
    """The secret sets of `duetto.privacy.secrets_eval` (CredSweeper, Nosey Parker, Kingfisher;
    its docstring states their mapping); read once, on the first `load`."""
    from duetto.privacy.secrets_eval import SET_NAMES, load_secret_sets

    if not (root / "pii_eval").is_dir():
        return []
    cache: dict[str, list[LabelledText]] = {}

    def load(name: str) -> list[LabelledText]:
        if not cache:
            cache.update(load_secret_sets(root))
        return cache.get(name, [])

    present = {
        "credsweeper": root / "pii_eval/CredSweeper/labels_compact.jsonl",
        "noseyparker": root / "pii_eval/noseyparker/rule_examples.jsonl",
        "kingfisher": root / "pii_eval/kingfisher/rule_examples.jsonl",
    }
    out = []
    for name in SET_NAMES:
        if present[name.removesuffix("_negatives")].is_file():
            negative = name.endswith("_negatives")
            out.append(
                LabelledSet(f"secrets/{name}", partial(load, name), False, negative=negative)
            )
    return out
