"""Labelled fields and honorifics, beyond English: "Nombre: Pedro", "Domicilio: Calle …", "Dr. …".

Forms, clinical headers and signatures label their personal data ("Apellidos:", "Address:",
"Fecha de nacimiento:", "Médico:"); the value after the label takes the label's type, up to the
end of the line or the next label. Names after a label or an honorific are cut to a run of
capitalised words (with the particles de, del, van, von, …). Spanish street prefixes ("C/",
"Calle", "Avda.", "Ctra.", "Paseo de …") followed by a number or "s/n" are street addresses.
Pure `re`, no model: serves the regex fast path and the Presidio path alike.
"""

from __future__ import annotations

import re

from duetto.scoring.pii import Entity

_UP = "A-ZÁÉÍÓÚÑÜÀÈÌÒÙÇÂÊÎÔÛÄËÏÖ"
_LOW = "a-záéíóúñüàèìòùçâêîôûäëïöß"
_NAME_WORD = rf"[{_UP}][{_LOW}'’]+(?:-[{_UP}][{_LOW}'’]+)?"
_INITIAL = rf"[{_UP}]\."
_PARTICLE = r"(?:de|del|la|las|los|y|i|da|das|do|dos|van|von|der|den|di|du|le|ter|bin)"
NAME = (
    rf"(?:{_NAME_WORD}|{_INITIAL})"
    rf"(?:[ ]+(?:{_PARTICLE}[ ]+)*(?:{_NAME_WORD}|{_INITIAL})){{0,5}}"
)
_NAME_RE = re.compile(NAME)
# A name stops before these (a place or an institution follows it, not more name).
_STOP_WORDS = re.compile(
    r"[ ]+(?:(?:de|del|la|y)[ ]+)*(?:Hospital|Servicio|Cl[ií]nica|Centro|Universidad|Unidad|"
    r"Departamento|Instituto|Fundaci[oó]n|Department|University|Clinic|Institute|Center|"
    r"Centre|Medical|School|Street|Road|Calle|Avenida|Plaza|Madrid|Barcelona|Espa[nñ]a)\b.*",
    re.S,
)


def _name_at(text: str, pos: int) -> tuple[int, str] | None:
    m = _NAME_RE.match(text, pos)
    if not m:
        return None
    name = _STOP_WORDS.sub("", m.group())
    return (m.start(), name) if name else None


# label (regex, case-insensitive) -> type of the value that follows it
_LABELS: tuple[tuple[str, str], ...] = (
    (
        "PERSON",
        r"nombre(?: y apellidos)?|apellidos?|name|first name|last name|surname|full name|"
        r"given names?|patient name|nom|pr[ée]nom|vorname|nachname|cognome|"
        r"m[ée]dic[oa](?: responsable)?|doctor[a]?|remitido por|responsable cl[ií]nico|"
        r"enfermer[oa]|firmado(?: por)?|attending(?: physician)?|physician|nurse|"
        r"referred by|signed(?: by)?|emergency contact|contacto|next of kin|padre|madre|"
        r"tutor|guardian|father|mother|spouse|c[oó]nyuge|autor(?:a|es)?|author",
    ),
    (
        "STREET_ADDRESS",
        r"domicilio|direcci[oó]n|address|home address|street address|street|adresse|"
        r"anschrift|indirizzo|endere[cç]o|morada",
    ),
    (
        "LOCATION",
        r"localidad(?: ?/ ?provincia)?|provincia|municipio|ciudad|poblaci[oó]n|pa[ií]s|"
        r"city|town|country|county|state|lugar de nacimiento|place of birth|birthplace",
    ),
    ("ZIP_CODE", r"cp|c\.p\.|c[oó]digo postal|zip(?: code)?|postal code|postcode|plz"),
    (
        "DATE_TIME",
        r"fecha(?: de (?:nacimiento|ingreso|alta|consulta|admisi[oó]n))?|date of birth|dob|"
        r"birth ?date|d\.o\.b\.|admission date|discharge date|geburtsdatum|"
        r"date de naissance|data di nascita",
    ),
    ("AGE", r"edad|age|alter|[âa]ge"),
    ("SEX", r"sexo|sex|gender|g[ée]nero|geschlecht"),
    ("PROFESSION", r"profesi[oó]n|ocupaci[oó]n|occupation|profession|job title"),
)
_LABEL_RE = re.compile(
    r"(?:(?<=^)|(?<=[\n.;|•(\ufeff]|\s))("
    + "|".join(rf"(?P<L{i}>{keys})" for i, (_, keys) in enumerate(_LABELS))
    + r")[ \t]*:[ \t]*",
    re.I | re.M,
)
_HONORIFIC = re.compile(
    rf"(?<![\w.])(?:Dr|Dra|Dres|Drs|Mr|Mrs|Ms|Mx|Prof|Profa|Sr|Sra|Srta|D|Dña|Don|Doña|"
    rf"Herr|Frau|Mme|Mlle)(?:\.[ \t]*|:[ \t]*|[ \t]+)(?={_NAME_WORD}|{_INITIAL})"
)
_STREET_PREFIX = (
    r"C/|Cl\.|Calle|Avda\.?|Avenida|Av\.|Paseo|Pº|P[ºo]\.|Plaza|Pza\.|Plza\.|Ctra\.?|Carretera|"
    r"Camino|Ronda|Traves[ií]a|Glorieta|Rambla|V[ií]a|Urbanizaci[oó]n|Urb\.|Pasaje|"
    r"Callej[oó]n|Pol[ií]gono|Pol\.|Barrio|Bº|Rua|Rúa|Largo|Praça"
)
_STREET = re.compile(
    rf"(?<![\w/])(?:{_STREET_PREFIX})[ \t]?(?:(?:{_PARTICLE}|[{_UP}\d][\w'’.ºª-]*)[ \t]+){{0,6}}"
    rf"(?:[{_UP}\d][\w'’.ºª-]*)"
    r"(?:,?[ \t]*(?:n[ºo°]\.?[ \t]*)?(?:\d{1,5}[A-Za-z]?(?:[ \t]*[-–][ \t]*\d{1,5})?|s/n|sn|S/N)"
    r"(?:,?[ \t]*\d{1,3}[ºª]?[ \t]?[A-Za-z]?\b|,?[ \t]*(?:Km|km)\.?[ \t]*\d+(?:[.,]\d+)?)*)"
)


def labelled_fields(text: str) -> list[Entity]:
    """Values after a known label, typed by the label ("Apellidos: Rico Pedroza" -> PERSON)."""
    found: list[Entity] = []
    matches = list(_LABEL_RE.finditer(text))
    for k, m in enumerate(matches):
        etype = next(_LABELS[i][0] for i in range(len(_LABELS)) if m.group(f"L{i}"))
        start = m.end()
        stop = text.find("\n", start)
        stop = len(text) if stop < 0 else stop
        if k + 1 < len(matches) and matches[k + 1].start() < stop:
            stop = matches[k + 1].start()
        value = text[start:stop].rstrip(" \t.;,")
        if etype == "PERSON":
            honor = _HONORIFIC.match(value)
            offset = honor.end() if honor else 0
            name = _name_at(value, offset)
            if not name:
                continue
            start, value = start + name[0], name[1]
        if not value or len(value) > 120:
            continue
        found.append(Entity(etype, start, start + len(value), value, 0.6))
    return found


def honorific_names(text: str) -> list[Entity]:
    """A capitalised name after an honorific: "Dra. Ana Gil", "Mrs. Diana Usamov"."""
    found: list[Entity] = []
    for m in _HONORIFIC.finditer(text):
        name = _name_at(text, m.end())
        if name:
            start, value = name
            found.append(Entity("PERSON", start, start + len(value), value, 0.6))
    return found


def spanish_streets(text: str) -> list[Entity]:
    """ "C/ Fernando Vinuesa, 6, 3 A", "Avda. Valdecilla sn", "Ctra. Colmenar Viejo Km 9,1"."""
    return [
        Entity("STREET_ADDRESS", m.start(), m.end(), m.group(), 0.6) for m in _STREET.finditer(text)
    ]


def fields(text: str) -> list[Entity]:
    return labelled_fields(text) + honorific_names(text) + spanish_streets(text)
