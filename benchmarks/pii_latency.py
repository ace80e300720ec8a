"""PII detection latency per request of about 500 characters (target: p95 <= 10 ms).

    flock /tmp/duetto-cpu.lock .venv/bin/python benchmarks/pii_latency.py --json out.json

Requests are real labelled sentences from ../shared/datasets/presidio_research_synth joined
until they reach --chars characters (synthetic ones when ../shared is absent). Each request is
detected once after a warm-up, one at a time, with the full detector (Presidio recognizers +
spaCy NER + duetto's rules); the same without NER, and the cheap regex detector, are timed on
the same texts for reference.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def time_detector(detect: Callable[[str], list[Entity]], texts: list[str]) -> dict[str, Any]:
    for text in texts[:5]:
        detect(text)  # warm-up: first calls allocate spaCy/regex caches
    times = []
    for text in texts:
        t0 = time.perf_counter()
        detect(text)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "n": len(times),
        "mean_ms": round(statistics.fmean(times), 3),
        "p50_ms": round(times[len(times) // 2], 3),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
        "max_ms": round(times[-1], 3),
    }


def _patterns_only() -> Callable[[str], list[Entity]]:
    """Presidio's recognizers and duetto's rules without spaCy NER (no PERSON/LOCATION/ORG)."""
    from duetto.scoring.pii_presidio import PresidioDetector

    detector = PresidioDetector(ner=False)
    detector.load()
    return detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    from duetto.scoring.pii_presidio import PresidioDetector

    texts, source = make_requests(args.requests, args.chars, args.seed)
    t0 = time.perf_counter()
    detector = PresidioDetector()
    detector.load()
    load_s = time.perf_counter() - t0
    result = {
        "source": source,
        "chars_per_request": args.chars,
        "load_s": round(load_s, 2),
        "presidio": time_detector(detector, texts),
        "patterns_only": time_detector(_patterns_only(), texts),
        "regex": time_detector(regex_detect, texts),
        "target_p95_ms": 10.0,
    }
    result["meets_target"] = result["presidio"]["p95_ms"] <= 10.0
    p, r = result["presidio"], result["regex"]
    print(f"{len(texts)} requests of {args.chars} chars from {source}")
    print(f"detector load: {load_s:.2f} s")
    print(
        f"presidio+spaCy+rules: mean {p['mean_ms']} ms, p50 {p['p50_ms']} ms, "
        f"p95 {p['p95_ms']} ms, max {p['max_ms']} ms (target p95 <= 10 ms: "
        f"{'met' if result['meets_target'] else 'NOT met'})"
    )
    q = result["patterns_only"]
    print(f"patterns, no NER:     mean {q['mean_ms']} ms, p95 {q['p95_ms']} ms")
    print(f"regex only:           mean {r['mean_ms']} ms, p95 {r['p95_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
