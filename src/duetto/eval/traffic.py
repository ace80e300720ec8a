"""Real traffic, offline: the demo's workload drawn from public datasets with gold answers.

The mix by request count is 60% intents (banking77 and clinc150 in equal parts, clinc150's
out-of-scope queries at their share of clinc150's test set), 20% GSM8K and 20% PII-bearing
requests built from presidio-research sentences (extract, classify, summarise in thirds). The
traffic comes in three pools, disjoint (no user message in two pools):

- `train`: the traffic an LLM serves first (its answers are the traces a student learns from),
  drawn from the sources' training splits;
- `audit`: a small gold-labelled sample for the shadow phase, from clinc150's validation split
  and the training splits of the others (disjoint from `train`);
- `test`: held-out traffic served at the end, from the sources' test splits.

presidio-research has one file of template-filled sentences: its templates, not its sentences,
are split between the pools, so no pool sees another's templates. Each pool is ordered so that
every prefix keeps the mix (within one request per stream): `items[:n]` is a smaller sample of
the same traffic. How each request is phrased and scored: `duetto.eval.traffic_sources`.

The package ships the default draw under `duetto/data/traffic/` (with ATTRIBUTION.md and
manifest.json); `scripts/draw_demo_traffic.py` redraws it from ../shared/datasets, byte for
byte, with the same seed, and `load_traffic(pool, data_dir=DIR)` draws the same way from DIR.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from duetto.errors import DataError
from duetto.eval import traffic_sources as src
from duetto.eval.workload import WorkItem, _items_from_rows, _parse_jsonl_text

POOLS = ("train", "audit", "test")
DEFAULT_SEED = 0
DEFAULT_SIZES: dict[str, int] = {"train": 480, "audit": 150, "test": 360}
MIX = {"intent": Fraction(3, 5), "math": Fraction(1, 5), "pii": Fraction(1, 5)}
# Streams in the order ties are broken when interleaving a pool.
STREAMS = ("banking77", "clinc150", "clinc150-oos", "gsm8k", "extract", "classify", "summarise")
PII_TASKS = src.PII_TASKS
# Which split of each source a pool draws from; pools sharing a split take disjoint items.
SPLITS = {
    "banking77": {"train": "train", "audit": "train", "test": "test"},
    "clinc150": {"train": "train", "audit": "validation", "test": "test"},
    "gsm8k": {"train": "train", "audit": "train", "test": "test"},
}
DRAW_ORDER = ("test", "audit", "train")  # the held-out traffic is drawn first
SHIPPED = "duetto.data"
SHIPPED_DIR = "traffic"
COMMAND = "python scripts/draw_demo_traffic.py --data-dir ../shared/datasets"


# --- the plan: how many requests of each stream -----------------------------------------------


def _largest_remainder(n: int, shares: Sequence[Fraction]) -> list[int]:
    quotas = [n * s / sum(shares) for s in shares]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(shares)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def plan(n: int, oos_share: Fraction) -> dict[str, int]:
    """Requests per stream for a pool of n: the 60/20/20 mix, intents halved between the
    datasets, clinc150's out-of-scope share, PII tasks in thirds."""
    intents, math, pii = _largest_remainder(n, list(MIX.values()))
    banking, clinc = _largest_remainder(intents, [Fraction(1), Fraction(1)])
    oos = int(clinc * oos_share + Fraction(1, 2))
    out = {"banking77": banking, "clinc150": clinc - oos, "clinc150-oos": oos, "gsm8k": math}
    out.update(zip(PII_TASKS, _largest_remainder(pii, [Fraction(1)] * 3), strict=True))
    return out


def interleave(streams: Mapping[str, Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All rows, each stream's k-th row at (k + 1/2) / len(stream): every prefix keeps the mix."""
    keyed = [
        (Fraction(2 * k + 1, 2 * len(rows)), STREAMS.index(name), row)
        for name, rows in streams.items()
        for k, row in enumerate(rows)
    ]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [row for _, _, row in keyed]


# --- the sources ------------------------------------------------------------------------------


class _Sources:
    """The four datasets read from a data directory (each folder's SOURCE.md gives the format)."""

    def __init__(self, root: Path) -> None:
        from duetto.distill.data import load_banking77, load_clinc150

        self.banking = load_banking77(root / "banking77")
        self.clinc = load_clinc150(root / "clinc150")
        domains = _read_json(root / "clinc150" / "domains.json")
        self.domain_of = {lab: dom for dom, labs in domains.items() for lab in labs}
        self.gsm8k = {s: _read_jsonl(root / "gsm8k" / f"{s}.jsonl") for s in ("train", "test")}
        self.presidio = _read_json(root / "presidio_research_synth" / "synth_dataset_v2.json")
        oos_test = sum(1 for e in self.clinc.test if self.clinc.is_out_of_scope(e.label))
        self.oos_share = Fraction(oos_test, len(self.clinc.test))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected="the dataset's SOURCE.md")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError("file not found", file=str(path), expected="GSM8K JSONL")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class _Deck:
    """A seeded shuffle of one source split, dealt to pools in turn; skips used messages."""

    def __init__(self, records: Sequence[Any], rng: random.Random) -> None:
        self.records = list(records)
        rng.shuffle(self.records)
        self.pos = 0

    def deal(self, n: int, text_of: Any, used: set[str], what: str) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            if self.pos >= len(self.records):
                raise DataError(f"{what}: only {len(out)} of {n} requests available")
            rec = self.records[self.pos]
            self.pos += 1
            text = text_of(rec)
            if text not in used:
                used.add(text)
                out.append(rec)
        return out


def draw(
    data_dir: str | Path, seed: int = DEFAULT_SEED, sizes: Mapping[str, int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Every pool's workload rows, drawn from the full datasets in `data_dir`."""
    return _draw(_Sources(Path(data_dir)), seed, sizes)


def _draw(
    s: _Sources, seed: int, sizes: Mapping[str, int] | None
) -> dict[str, list[dict[str, Any]]]:
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    if set(sizes) != set(POOLS) or any(n < 0 for n in sizes.values()):
        raise ValueError(f"sizes must give a count >= 0 for each of {POOLS}, got {sizes}")
    plans = {p: plan(sizes[p], s.oos_share) for p in POOLS}
    in_scope: dict[str, dict[str, Sequence[Any]]] = {
        "banking77": {"train": s.banking.train, "test": s.banking.test},
        "clinc150": {
            split: [e for e in examples if not s.clinc.is_out_of_scope(e.label)]
            for split, examples in (
                ("train", s.clinc.train),
                ("validation", s.clinc.validation),
                ("test", s.clinc.test),
            )
        },
    }
    oos = {
        split: [e for e in examples if s.clinc.is_out_of_scope(e.label)]
        for split, examples in (
            ("train", s.clinc.train),
            ("validation", s.clinc.validation),
            ("test", s.clinc.test),
        )
    }
    decks: dict[tuple[str, str], _Deck] = {}

    def deck(name: str, split: str, records: Sequence[Any]) -> _Deck:
        if (name, split) not in decks:
            decks[name, split] = _Deck(records, src.seeded_rng(seed, name, split))
        return decks[name, split]

    labels = {"banking77": s.banking.labels, "clinc150": s.clinc.labels}
    domains: dict[str, Mapping[str, str]] = {"banking77": {}, "clinc150": s.domain_of}
    presidio = src.template_pools(
        s.presidio,
        {p: sum(plans[p][t] for t in PII_TASKS) for p in POOLS},
        src.seeded_rng(seed, "tpl"),
    )
    used: set[str] = set()
    out: dict[str, list[dict[str, Any]]] = {}
    for pool in DRAW_ORDER:
        n = plans[pool]
        rng = src.seeded_rng(seed, "candidates", pool)
        streams: dict[str, list[dict[str, Any]]] = {}
        for ds in ("banking77", "clinc150"):
            split = SPLITS[ds][pool]
            picked = deck(ds, split, in_scope[ds][split]).deal(
                n[ds], lambda e: e.text, used, f"{ds} {split}"
            )
            streams[ds] = [
                src.intent_row(
                    ds, f"{ds}-{pool}-{i:04d}", e.text, e.label, labels[ds], domains[ds], rng
                )
                for i, e in enumerate(picked)
            ]
        split = SPLITS["clinc150"][pool]
        picked = deck("clinc150-oos", split, oos[split]).deal(
            n["clinc150-oos"], lambda e: e.text, used, f"clinc150 out-of-scope {split}"
        )
        streams["clinc150-oos"] = [
            src.intent_row(
                "clinc150",
                f"clinc150-oos-{pool}-{i:04d}",
                e.text,
                None,
                s.clinc.labels,
                s.domain_of,
                rng,
            )
            for i, e in enumerate(picked)
        ]
        split = SPLITS["gsm8k"][pool]
        picked = deck("gsm8k", split, s.gsm8k[split]).deal(
            n["gsm8k"], lambda r: r["question"].strip(), used, f"gsm8k {split}"
        )
        streams["gsm8k"] = [
            src.math_row(f"gsm8k-{pool}-{i:04d}", r["question"], r["answer"])
            for i, r in enumerate(picked)
        ]
        streams |= src.pii_rows(pool, presidio[pool], n, seed, used)
        out[pool] = interleave({k: streams[k] for k in STREAMS})
    return {p: out[p] for p in POOLS}


# --- files ------------------------------------------------------------------------------------


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tags = Counter(t for r in rows for t in r.get("tags", ()))
    return {
        "requests": len(rows),
        "task": dict(sorted(Counter(str(r["task"]) for r in rows).items())),
        "tag": dict(sorted(tags.items())),
    }


def sample_files(
    data_dir: str | Path, seed: int = DEFAULT_SEED, sizes: Mapping[str, int] | None = None
) -> dict[str, bytes]:
    """The shipped sample's files (pool JSONL, labels.json, manifest.json) as bytes."""
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    s = _Sources(Path(data_dir))
    pools = _draw(s, seed, sizes)
    labels = {
        "banking77": list(s.banking.labels),
        "clinc150": list(s.clinc.labels),
        "out_of_scope": src.OUT_OF_SCOPE,
    }
    files = {f"{p}.jsonl": _jsonl(pools[p]) for p in POOLS}
    files["labels.json"] = (json.dumps(labels, indent=1) + "\n").encode("utf-8")
    command = f"{COMMAND} --seed {seed}"
    if sizes != DEFAULT_SIZES:
        command += " --sizes " + ",".join(f"{p}={sizes[p]}" for p in POOLS)
    manifest = {
        "command": command,
        "seed": seed,
        "sizes": sizes,
        "mix": {k: str(v) for k, v in MIX.items()},
        "clinc150_oos_share": str(s.oos_share),
        "candidates_per_intent": src.CANDIDATES,
        "counts": {p: counts(pools[p]) for p in POOLS},
        "files": {
            name: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
            for name, b in sorted(files.items())
        },
    }
    files["manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    return files


def write_sample(
    out_dir: str | Path,
    data_dir: str | Path,
    seed: int = DEFAULT_SEED,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, bytes]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = sample_files(data_dir, seed, sizes)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


# --- loading ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _drawn(data_dir: str, seed: int, sizes: tuple[tuple[str, int], ...]) -> dict[str, bytes]:
    return {f"{p}.jsonl": _jsonl(rows) for p, rows in draw(data_dir, seed, dict(sizes)).items()}


def _shipped(name: str) -> str:
    res = resources.files(SHIPPED).joinpath(SHIPPED_DIR, name)
    return res.read_text(encoding="utf-8")


def load_traffic(
    pool: str,
    data_dir: Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    sizes: Mapping[str, int] | None = None,
    limit: int | None = None,
) -> list[WorkItem]:
    """One pool of the demo traffic: the shipped sample, or drawn the same way from the full
    datasets in `data_dir` (`sizes` then sets each pool's request count). `limit` keeps the
    first n requests, which keep the mix."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    name = f"{pool}.jsonl"
    if data_dir is None:
        if sizes is not None or seed != DEFAULT_SEED:
            raise ValueError("the shipped sample has the default seed and sizes: pass data_dir")
        text, source = _shipped(name), f"duetto/data/traffic/{name}"
    else:
        key = tuple(sorted((DEFAULT_SIZES if sizes is None else sizes).items()))
        text = _drawn(str(Path(data_dir).resolve()), seed, key)[name].decode("utf-8")
        source = f"{data_dir} (drawn, seed {seed}): {pool}"
    items = _items_from_rows(_parse_jsonl_text(text, source), source, default_prefix=pool)
    return items if limit is None else items[:limit]


def traffic_labels() -> dict[str, tuple[str, ...]]:
    """Every intent label of the shipped sample's datasets (for a student predicting over all
    of them); key "out_of_scope" holds the one answer for clinc150 queries that fit none."""
    data = json.loads(_shipped("labels.json"))
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in data.items()}
