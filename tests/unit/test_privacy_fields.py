"""Labelled fields, honorifics and Spanish streets; tiers; the language guess; eval --all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duetto.cli.main import app
from duetto.privacy.datasets import labelled_sets, load_stdnum
from duetto.privacy.eval_all import evaluate_all
from duetto.privacy.fields import honorific_names, labelled_fields, spanish_streets
from duetto.privacy.language import looks_english
from duetto.privacy.rules import rules_detect
from duetto.privacy.tiers import TYPE_TIER, tier_of

HEADER = (
    "Datos del paciente.\n"
    "Nombre:  Lucía.\n"
    "Apellidos: Van der Berg Soto.\n"
    "Domicilio: Avda. de la Constitución 14, 2B.\n"
    "Fecha de nacimiento: 03/02/1971.\n"
    "Edad: 52 años Sexo: M.\n"
    "Médico: Tomás Ibáñez Lluch  NºCol: 46 46 10327.\n"
)


def _typed(found: list) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in found]


def test_labelled_fields_in_a_spanish_header() -> None:
    assert _typed(labelled_fields(HEADER)) == [
        ("PERSON", "Lucía"),
        ("PERSON", "Van der Berg Soto"),
        ("STREET_ADDRESS", "Avda. de la Constitución 14, 2B"),
        ("DATE_TIME", "03/02/1971"),
        ("AGE", "52 años"),
        ("SEX", "M"),
        ("PERSON", "Tomás Ibáñez Lluch"),
    ]


def test_english_labels_and_honorifics() -> None:
    text = "Name: Ngozi Adeyemi\nAddress: 12 Harbour Lane\nSeen by Dr. Pieter de Vries today."
    assert ("PERSON", "Ngozi Adeyemi") in _typed(labelled_fields(text))
    assert ("STREET_ADDRESS", "12 Harbour Lane") in _typed(labelled_fields(text))
    assert _typed(honorific_names(text)) == [("PERSON", "Pieter de Vries")]


def test_a_name_stops_before_an_institution() -> None:
    text = "remitida por la Dra. Elena Mas Hospital Clínico"
    assert _typed(honorific_names(text)) == [("PERSON", "Elena Mas")]


@pytest.mark.parametrize(
    ("text", "street"),
    [
        ("Servicio de Urología. C/ Fernando Poo, 6, 3 A. 28045 Madrid", "C/ Fernando Poo, 6, 3 A"),
        ("Hospital Norte. Avda. Valdecilla sn. 39008", "Avda. Valdecilla sn"),
        ("Unidad. Ctra. de Andalucía Km 5,4 - Getafe", "Ctra. de Andalucía Km 5,4"),
    ],
)
def test_spanish_streets(text: str, street: str) -> None:
    assert _typed(spanish_streets(text)) == [("STREET_ADDRESS", street)]


@pytest.mark.parametrize(
    "text",
    [
        "La calle estaba vacía y la plaza también.",  # no street name and number
        "Name of the game: chess.",  # lower-case value after a PERSON label
    ],
)
def test_fields_need_a_value_of_the_right_shape(text: str) -> None:
    assert [e for e in labelled_fields(text) + spanish_streets(text) if e.type != "DATE_TIME"] == []


def test_rules_detect_on_a_header_covers_every_identifier_and_contact() -> None:
    found = _typed(rules_detect(HEADER + "NHC: 7730215.\nCorreo: lucia.vb@correo.es\n"))
    for expected in [
        ("MEDICAL_ID", "7730215"),
        ("PROFESSIONAL_ID", "46 46 10327"),
        ("EMAIL_ADDRESS", "lucia.vb@correo.es"),
        ("PERSON", "Van der Berg Soto"),
    ]:
        assert expected in found


def test_tiers() -> None:
    assert [tier_of(t) for t in ("PASSWORD", "US_SSN", "PERSON", "DATE_TIME")] == [
        "secret",
        "identifier",
        "contact",
        "quasi",
    ]
    assert tier_of("SOME_NEW_TOKEN") == "secret" and tier_of("SOME_NEW_ID") == "identifier"
    assert TYPE_TIER["ORGANIZATION"] == "quasi" and TYPE_TIER["MEDICAL_ID"] == "identifier"


def test_language_guess() -> None:
    assert looks_english("The patient was admitted to the ward and the nurse called his wife.")
    assert not looks_english("El paciente ingresa en la planta y se llama a su mujer por la tarde.")
    assert looks_english("Ana Gil 12")  # too few words to tell: English (the NER still runs)


def _write_sets(root: Path) -> None:
    med = root / "pii_eval/SPACCC_MEDDOCAN"
    med.mkdir(parents=True)
    row = {
        "doc_id": "x",
        "text": "Nombre: Marta.\nNHC: 4412907.\n",
        "entities": [
            {"start": 8, "end": 13, "label": "NOMBRE_SUJETO_ASISTENCIA", "text": "Marta"},
            {"start": 20, "end": 27, "label": "ID_SUJETO_ASISTENCIA", "text": "4412907"},
        ],
    }
    (med / "meddocan_test.jsonl").write_text(json.dumps(row) + "\n")
    std = root / "pii_eval/python-stdnum"
    std.mkdir(parents=True)
    values = [("GB82 WEST 1234 5698 7654 32", "iban"), ("20-10123456-9", "cuit")]
    (std / "stdnum_doctest_numbers.jsonl").write_text(
        "".join(
            json.dumps({"value": v, "label": "valid", "stdnum_module": m}) + "\n" for v, m in values
        )
    )


def test_stdnum_values_are_placed_in_seeded_sentences(tmp_path: Path) -> None:
    _write_sets(tmp_path)
    path = tmp_path / "pii_eval/python-stdnum/stdnum_doctest_numbers.jsonl"
    a, b = load_stdnum(path), load_stdnum(path)
    assert a == b and [s.spans[0].type for s in a] == ["IBAN_CODE", "IDENTIFIER"]
    assert all(s.text[s.spans[0].start : s.spans[0].end] == s.spans[0].text for s in a)


def test_evaluate_all_and_the_cli(tmp_path: Path) -> None:
    _write_sets(tmp_path)
    assert [s.name for s in labelled_sets(tmp_path)] == ["meddocan/test", "python-stdnum"]
    results = evaluate_all(tmp_path, rules_detect)
    med = results["meddocan/test"]
    assert med["tuned"] is False and med["tiers"]["identifier"]["any_type_recall"] == 1.0
    assert med["entities"]["PERSON"]["recall"] == 1.0
    assert results["python-stdnum"]["tiers"]["identifier"]["any_type_recall"] == 1.0
    out = tmp_path / "all.json"
    args = ["privacy", "eval", "--all", "--root", str(tmp_path), "--detector", "regex"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())["sets"]) == {"meddocan/test", "python-stdnum"}
