"""The Presidio-based detector on the real labelled data, offline, against the issue's targets."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

pytest.importorskip("presidio_analyzer", reason="needs the `privacy` extra")

from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.privacy.evaluate import evaluate, load_labelled
from duetto.privacy.policy import Action, PrivacyPolicy
from duetto.privacy.presidio import PresidioDetector, install, url_candidates
from duetto.scoring import pii
from duetto.testing.scripted import ScriptedModel

PATTERN_TYPES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    det = PresidioDetector()
    det.load()
    return det


@pytest.fixture
def installed(detector: PresidioDetector) -> Iterator[PresidioDetector]:
    install(detector)
    try:
        yield detector
    finally:
        pii.set_detector(pii.regex_detect)


@pytest.mark.shared_data
@pytest.mark.slow
def test_recall_targets_on_synth_dataset_v2(
    shared_datasets: Path, detector: PresidioDetector
) -> None:
    samples = load_labelled(shared_datasets / "presidio_research_synth/synth_dataset_v2.json")
    scores = evaluate(samples, detector).to_dict()["entities"]
    for etype in PATTERN_TYPES:
        assert scores[etype]["recall"] >= 0.95, (etype, scores[etype])
    assert scores["PERSON"]["recall"] >= 0.85, scores["PERSON"]
    assert scores["STREET_ADDRESS"]["recall"] >= 0.85, scores["STREET_ADDRESS"]
    assert all(0.0 <= s["f2"] <= 1.0 for s in scores.values())


def test_detects_names_and_patterns_offline(detector: PresidioDetector) -> None:
    text = (
        "Hi, my name is Tomomi Nishiyama. Mail tomomi@example.co.jp or call +41 85 806 98 67; "
        "card 4111 1111 1111 1111, IBAN GB82WEST12345698765432. I live at 90 Whitchurch Road."
    )
    found = {(e.type, e.text) for e in detector(text)}
    for expected in [
        ("PERSON", "Tomomi Nishiyama"),
        ("EMAIL_ADDRESS", "tomomi@example.co.jp"),
        ("PHONE_NUMBER", "+41 85 806 98 67"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("IBAN_CODE", "GB82WEST12345698765432"),
        ("STREET_ADDRESS", "90 Whitchurch Road"),
    ]:
        assert expected in found, found
    spans = sorted((e.start, e.end) for e in detector(text))
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no overlaps
    assert detector("") == []


def test_runs_presidio_pattern_recognizers_directly(detector: PresidioDetector) -> None:
    names = set(detector.recognizer_names)
    assert {"UrlRecognizer", "IpRecognizer", "OfflineEmailRecognizer"} <= names
    # NER runs once in detect(); phones come from duetto's rules; the noisy ones are off;
    # cards, IBANs, SSNs and the US/UK number formats come from duetto's recall-first rules.
    assert not names & {"SpacyRecognizer", "PhoneRecognizer", "EmailRecognizer", "UsBankRecognizer"}
    assert not names & {"CreditCardRecognizer", "IbanRecognizer", "UsSsnRecognizer"}
    only = PresidioDetector(entities={"IBAN_CODE"}, ner=False)
    assert only.recognizer_names == []  # loads on first use
    found = only("IBAN GB82WEST12345698765432, call +41 85 806 98 67")
    assert [(e.type, e.text) for e in found] == [("IBAN_CODE", "GB82WEST12345698765432")]
    urls = PresidioDetector(entities={"URL"}, ner=False)
    urls.load()
    assert urls.recognizer_names == ["UrlRecognizer"]


def test_url_candidates_keep_offsets_and_every_url() -> None:
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    text = "See www.example.com/a?b=c and http://x.io, 'foo.bar' (e.g. Mr. Smith), ana@b.org."
    masked = url_candidates(text)
    assert len(masked) == len(text)
    assert "www.example.com/a?b=c" in masked and "Smith" not in masked and "See" not in masked
    rec = UrlRecognizer()
    spans = [(r.start, r.end, r.score) for r in rec.analyze(text, ["URL"])]
    assert len(spans) >= 3
    assert [(r.start, r.end, r.score) for r in rec.analyze(masked, ["URL"])] == spans


def test_numpy_matrix_products_give_the_same_entities_as_blis(detector: PresidioDetector) -> None:
    from thinc.api import NumpyOps

    ner = detector._nlp.get_pipe("ner")
    assert all(isinstance(n.ops, NumpyOps) and not n.ops.use_blis for n in ner.model.walk())
    blis = PresidioDetector(single_thread_blas=False)
    texts = [
        "Hi, I'm Tomomi Nishiyama from Osaka; I work for Garmin since March 2019.",
        "Mrs. Diana Usamov lives at 90 Whitchurch Road, Cardiff with her son Pavel.",
        "Jan de Vries, Ana Lopez and Mohammed Al-Sayed met at the Louvre in Paris on Friday.",
    ]
    assert [detector(t) for t in texts] == [blis(t) for t in texts]
    assert any(e.type == "PERSON" for e in blis(texts[2]))


def test_blas_is_on_one_thread_only_while_a_detection_runs(detector: PresidioDetector) -> None:
    from threadpoolctl import threadpool_info

    def numpy_blas_threads() -> list[int]:
        info = threadpool_info()
        return [
            i["num_threads"] for i in info if i["user_api"] == "blas" and "numpy" in i["filepath"]
        ]

    before = numpy_blas_threads()
    assert before
    first, second = detector._blas_limit(), detector._blas_limit()  # two threads' detections
    first.__enter__()
    second.__enter__()
    assert numpy_blas_threads() == [1] * len(before)
    first.__exit__(None, None, None)  # the first ends while the second still runs
    assert numpy_blas_threads() == [1] * len(before)
    second.__exit__(None, None, None)
    assert numpy_blas_threads() == before


async def test_installed_detector_feeds_the_privacy_axis_and_policy(
    installed: PresidioDetector,
) -> None:
    text = "Please forward this to Mrs. Diana Usamov, she lives at 90 Whitchurch Road."
    assert any(e.type == "PERSON" for e in pii.detect(text))
    remote = ScriptedModel(ModelCard("big", location="remote", trusted=False), "fine")
    remote.pii_counter = partial(pii.count_pii, detector=installed)
    response = await remote.complete(ChatRequest.of(text))
    assert response.usage.pii_sent == len(pii.detect(text)) >= 2
    decision = PrivacyPolicy("local_only").decide(pii.detect(text), remote.card)
    assert decision.action is Action.LOCAL


def test_cli_eval_on_a_sample_with_presidio(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from duetto.cli.main import app

    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps(
            {
                "text": "Write to Mr. John Keller at 10.0.0.7",
                "entities": [
                    {"type": "PERSON", "value": "John Keller"},
                    {"type": "IP_ADDRESS", "value": "10.0.0.7"},
                ],
            }
        )
        + "\n"
    )
    out = tmp_path / "o.json"
    result = CliRunner().invoke(app, ["privacy", "eval", "--data", str(data), "--json", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert scores["entities"]["IP_ADDRESS"]["recall"] == 1.0
    assert scores["entities"]["PERSON"]["recall"] == 1.0
