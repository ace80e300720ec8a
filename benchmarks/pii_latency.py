"""PII detection latency per request of about 500 characters (target: p95 <= 10 ms).

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/pii_latency.py --json out.json

Requests are real labelled sentences from ../shared/datasets/presidio_research_synth joined
until they reach --chars characters (synthetic ones when ../shared is absent); --seed 0 and 300
requests are the texts every earlier figure used. Each detector sees every request once after a
warm-up, one at a time. Timed per request: wall time (`perf_counter`, the latency a caller sees)
and the detecting thread's CPU time (`thread_time`, what the detector itself burns; it moves
less when other jobs share the cores). Reported: mean, p50, p95, p99, max.

Detectors: `presidio` (the default `PresidioDetector`: Presidio's recognizers + spaCy NER on
word windows around name candidates, the rules' detections blanked + duetto's rules),
`presidio_blis` (the same with thinc's default blis matrix products, for comparison),
`presidio_sentence_gate` (the earlier gate: whole sentences that may hold a name, nothing
blanked: `ner_window=None, ner_skips_found=False`), `presidio_ungated` (the NER reading all
the text, `ner_gate=False`), `patterns_only` (`ner=False`), `rules`
(`duetto.privacy.rules.rules_detect`: every dependency-free rule incl. identifiers, labelled
fields and secrets; the default without the privacy extra) and `regex`
(`duetto.scoring.pii.regex_detect`, the seam's minimal one). The breakdown times each stage
of the default detector alone on the same texts (CPU time). The JSON also records the load
average before and after, the CPU and the library versions. Objects loaded by the detectors
are frozen out of the garbage collector, as `duetto.privacy.presidio.install` does.
`--prose N` also times the default detector and the sentence gate on N requests
joined from banking77's test queries (lower-case prose with few names, unlike the synthetic
sentences). `--model-pass N` adds the optional local-model pass (`duetto.privacy.model_pass`,
the embedded SmolLM2) on N texts of generated_large.json: PERSON recall/precision with and
without it, and its latency per text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duetto.privacy.rules import rules_detect
from duetto.scoring.pii import Entity, regex_detect

DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared/datasets/presidio_research_synth/synth_dataset_v2.json"
)
_SYNTHETIC = [
    "Please call Maria Keller at +41 85 806 98 67 about the invoice.",
    "My card 4111 1111 1111 1111 was charged twice; my SSN is 219-09-9999.",
    "Send it to 90 Whitchurch Road, Cardiff, United Kingdom CF14 3LX.",
    "The server at 192.168.10.4 logs every e-mail to ops@example.org.",
    "Transfer the deposit to GB82WEST12345698765432 before Friday.",
    "Dr. Tomomi Nishiyama moved to Helsinki last year and works for Garmin.",
]


def make_requests(n: int, chars: int, seed: int) -> tuple[list[str], str]:
    rng = random.Random(seed)
    if DATA.is_file():
        sentences = [row["full_text"] for row in json.loads(DATA.read_text())]
        source = str(DATA)
    else:
        sentences, source = _SYNTHETIC, "synthetic sentences (../shared absent)"
    requests = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(rng.choice(sentences))
        requests.append(" ".join(parts)[:chars])
    return requests, source


def _stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731 - nearest rank
    return {
        "mean_ms": round(statistics.fmean(v), 3),
        "p50_ms": round(at(0.50), 3),
        "p95_ms": round(at(0.95), 3),
        "p99_ms": round(at(0.99), 3),
        "max_ms": round(v[-1], 3),
    }


def time_detector(detect: Callable[[str], Any], texts: list[str]) -> dict[str, Any]:
    """Wall and CPU milliseconds per request, one request at a time after a warm-up."""
    for text in texts[:5]:
        detect(text)  # warm-up: first calls allocate spaCy/regex caches
    wall, cpu = [], []
    for text in texts:
        c0, t0 = time.thread_time(), time.perf_counter()
        detect(text)
        t1, c1 = time.perf_counter(), time.thread_time()
        wall.append((t1 - t0) * 1000)
        cpu.append((c1 - c0) * 1000)
    return {"n": len(wall), **_stats(wall), "cpu": _stats(cpu)}


def breakdown(detector: Any, texts: list[str]) -> dict[str, Any]:
    """CPU time of each stage of the default detector, alone, on the same texts."""
    from duetto.privacy.fields import fields
    from duetto.privacy.identifiers import identifiers
    from duetto.privacy.names import person_names
    from duetto.privacy.presidio import ner_entities
    from duetto.privacy.recognizers import phone_numbers, street_addresses
    from duetto.privacy.rules import rule_entities
    from duetto.privacy.secrets import find_secrets
    from duetto.scoring.pii import card_numbers

    found = {t: detector.presidio_patterns(t) + rule_entities(t, seam=False) for t in texts}

    def gated(text: str) -> str:
        return detector.ner_input(text, found[text]) or ""

    def spacy_ner(text: str) -> Any:
        with detector._blas_limit():
            return detector._nlp(gated(text))

    docs = [spacy_ner(t) for t in texts]
    by_text = dict(zip(texts, docs, strict=True))
    stages: dict[str, Callable[[str], Any]] = {
        "ner_gate": gated,
        "spacy_ner": spacy_ner,
        "presidio_patterns": detector.presidio_patterns,
        "ner_entities+person_names": lambda t: ner_entities(by_text[t]) + person_names(by_text[t]),
        "street+phone+card_rules": lambda t: (
            street_addresses(t) + phone_numbers(t) + card_numbers(t)
        ),
        "identifiers+fields": lambda t: identifiers(t) + fields(t),
        "secrets": lambda t: find_secrets(t, use_detect_secrets=False),
    }
    return {name: time_detector(fn, texts)["cpu"] for name, fn in stages.items()}


def prose_requests(n: int, chars: int, seed: int) -> list[str]:
    """Requests joined from banking77's test queries: lower-case customer prose, few names."""
    from duetto.privacy.datasets import load_banking77

    path = DATA.parents[1] / "banking77" / "test.csv"
    sentences = [s.text for s in load_banking77(path)]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(rng.choice(sentences))
        out.append(" ".join(parts)[:chars])
    return out


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("spacy", "thinc", "blis", "presidio-analyzer", "numpy", "threadpoolctl"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "versions": versions}


def _patterns_only() -> Callable[[str], list[Entity]]:
    """Presidio's recognizers and duetto's rules without spaCy NER (no PERSON/LOCATION/ORG)."""
    from duetto.privacy.presidio import PresidioDetector

    detector = PresidioDetector(ner=False)
    detector.load()
    return detector


def model_pass(n: int, seed: int, detector: Any) -> dict[str, Any]:
    """PERSON recall and precision of `detector` alone and with the SLM's proposals on n texts
    of generated_large.json (seeded), and the model pass's latency per text."""
    import asyncio

    from duetto.models.local import LlamaCppModel
    from duetto.privacy.evaluate import evaluate, load_labelled
    from duetto.privacy.model_pass import ModelPass

    path = DATA.parent / "generated_large.json"
    samples = load_labelled(path)
    samples = random.Random(seed).sample(samples, min(n, len(samples)))
    second = ModelPass(LlamaCppModel.smollm2(n_threads=1), base=detector)
    latencies: list[float] = []
    merged: dict[str, list[Entity]] = {}

    async def run() -> None:
        for s in samples:
            t0 = time.perf_counter()
            merged[s.text] = await second.detect(s.text)
            latencies.append((time.perf_counter() - t0) * 1000)

    asyncio.run(run())
    out: dict[str, Any] = {"texts": len(samples), "source": str(path), "latency": _stats(latencies)}
    for name, fn in (("base", detector), ("with_model", merged.__getitem__)):
        scores = evaluate(samples, fn).to_dict()
        person = scores["entities"].get("PERSON", {})
        out[name] = {
            "person_any_type_recall": person.get("any_type_recall"),
            "person_precision": person.get("precision"),
            "micro_any_type_recall": scores["micro"]["any_type_recall"],
            "contact_precision": scores["tiers"]["contact"]["any_type_precision"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-stage times")
    parser.add_argument(
        "--prose", type=int, default=0, metavar="N", help="also N banking77 prose requests"
    )
    parser.add_argument(
        "--model-pass", type=int, default=0, metavar="N", help="also time the SLM pass on N texts"
    )
    args = parser.parse_args()

    from duetto.cli.serve import freeze_loaded_objects
    from duetto.privacy.presidio import PresidioDetector

    load_before = os.getloadavg()
    texts, source = make_requests(args.requests, args.chars, args.seed)
    t0 = time.perf_counter()
    detector = PresidioDetector()
    detector.load()
    load_s = time.perf_counter() - t0
    blis = PresidioDetector(single_thread_blas=False)
    blis.load()
    ungated = PresidioDetector(ner_gate=False)
    ungated.load()
    sentences = PresidioDetector(ner_window=None, ner_skips_found=False)
    sentences.load()
    freeze_loaded_objects()  # as `duetto serve` does once started
    result: dict[str, Any] = {
        "source": source,
        "requests": len(texts),
        "chars_per_request": args.chars,
        "seed": args.seed,
        "load_s": round(load_s, 2),
        "presidio": time_detector(detector, texts),
        "presidio_blis": time_detector(blis, texts),
        "presidio_sentence_gate": time_detector(sentences, texts),
        "presidio_ungated": time_detector(ungated, texts),
        "patterns_only": time_detector(_patterns_only(), texts),
        "rules": time_detector(rules_detect, texts),
        "regex": time_detector(regex_detect, texts),
        "target_p95_ms": 10.0,
    }
    if args.prose:
        prose = prose_requests(args.prose, args.chars, args.seed)
        result["prose"] = {
            "source": "banking77 test queries",
            "presidio": time_detector(detector, prose),
            "presidio_sentence_gate": time_detector(sentences, prose),
            "presidio_ungated": time_detector(ungated, prose),
        }
    if not args.no_breakdown:
        result["breakdown_cpu"] = breakdown(detector, texts)
    if args.model_pass:
        result["model_pass"] = model_pass(args.model_pass, args.seed, detector)
        print(json.dumps(result["model_pass"], indent=1))
    result["meets_target"] = result["presidio"]["p95_ms"] <= 10.0
    result["rules_meet_target"] = result["rules"]["p95_ms"] <= 10.0
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["environment"] = environment()

    print(f"{len(texts)} requests of {args.chars} chars from {source}")
    print(f"detector load: {load_s:.2f} s; load average before {result['loadavg_before']}")
    verdict = "met" if result["meets_target"] else "NOT met"
    for key, label in [
        ("presidio", "presidio+spaCy+rules"),
        ("presidio_blis", "  same, blis gemm"),
        ("presidio_sentence_gate", "  same, sentence gate"),
        ("presidio_ungated", "  same, NER on all"),
        ("patterns_only", "patterns, no NER"),
        ("rules", "rules (no Presidio)"),
        ("regex", "regex only"),
    ]:
        r = result[key]
        print(
            f"{label:21s} wall mean {r['mean_ms']:7.3f} p50 {r['p50_ms']:7.3f} "
            f"p95 {r['p95_ms']:7.3f} p99 {r['p99_ms']:7.3f} max {r['max_ms']:7.3f} ms | "
            f"cpu p50 {r['cpu']['p50_ms']:7.3f} p95 {r['cpu']['p95_ms']:7.3f}"
        )
    print(f"target p95 <= 10 ms (default detector, wall): {verdict}")
    for key, r in result.get("prose", {}).items():
        if key != "source":
            print(
                f"prose {key:16s} wall p50 {r['p50_ms']:7.3f} p95 {r['p95_ms']:7.3f} | "
                f"cpu p50 {r['cpu']['p50_ms']:7.3f} p95 {r['cpu']['p95_ms']:7.3f}"
            )
    for stage, r in result.get("breakdown_cpu", {}).items():
        print(f"  stage {stage:27s} cpu p50 {r['p50_ms']:6.3f} p95 {r['p95_ms']:6.3f} ms")
    print(f"load average after {result['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
