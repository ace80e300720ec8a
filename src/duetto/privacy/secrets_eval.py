"""Recall of the secret detector on three public secret sets it was not written from.

`load_secret_sets(data_dir)` reads `data_dir/pii_eval/{CredSweeper,noseyparker,kingfisher}` (or
`data_dir` = the pii_eval folder itself) into `LabelledText` lists for `evaluate.evaluate`:

- ``credsweeper``: one text per sample file of `tests_samples.tar.gz` (read in memory, never
  extracted). Gold = CredSweeper's expected hits (`labels_compact.jsonl`: value + line + offsets in
  the line; where the offsets disagree with the file, e.g. XML it parses, the value's occurrence
  nearest that line). Files with no hit are negatives (empty spans); lines without a hit are too.
  Dropped from gold, as not secrets: the rules UUID, Nonce, Salt, Firebase Domain, AWS S3 Bucket.
  Binary files (archives, .class, .jks, NUL bytes) are skipped: no prompt carries them as text.
- ``noseyparker`` / ``kingfisher``: the positive rule examples; the whole example string is the
  text, the gold span is the rule's secret capture in every match (`_secret_group`: group 1 for
  one-group rules; for pair rules the last group that is not a host, URL or scheme; the Rust
  pattern is compiled with Python `re` after two syntax fixes). A positive whose pattern will not
  compile or match in Python gets the whole stripped string as gold (counted in `notes`).
  Examples of rules that capture an identifier, not a secret (`IDENTIFIER_RULES`: buckets, ARNs,
  account/client/app IDs, domains, usernames) are left out.
- ``noseyparker_negatives`` / ``kingfisher_negatives``: the negative examples, empty spans. They
  are negatives for ONE rule each, not secret-free text: report detections, no threshold.

Gold types come from the rule name (`gold_type`): PASSWORD, PRIVATE_KEY, JWT, CONNECTION_STRING,
else API_KEY. What counts for a leak is "redacted as any type": a gold span overlapped by any
detection (`evaluate`'s `any_type_recall`); `covered_recall` is stricter (every character of the
value inside detections). `python -m duetto.privacy.secrets_eval [DATA_DIR] [--json F]`.

All three sets were read for errors while the rules were written (each change was re-checked on
the other two and on ordinary prose: presidio-research synth, MEDDOCAN dev, banking77), so none
of them is held out; no rule or example from them is shipped.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from duetto.privacy.evaluate import LabelledText, evaluate
from duetto.scoring.pii import Entity

NOT_SECRET_RULES = frozenset({"UUID", "Nonce", "Salt", "Firebase Domain", "AWS S3 Bucket"})
_BINARY_SUFFIXES = (".zip", ".gz", ".bz2", ".tar", ".class", ".jks", ".docx", ".xlsx", ".pdf")
# Rules whose capture is an identifier, not a secret (left out of the secret sets).
IDENTIFIER_RULES = re.compile(
    r"(?i)bucket|resource name|account id|account name|client id|\bdomain\b|username"
    r"|recipient|organization id|\bbot id|\bapp id"
)
_HOSTISH = re.compile(
    r"(?i)(?:https?|ftps?|wss?|ssh|ldaps?|mongodb(?:\+srv)?|postgres(?:ql)?|mysql|redis|amqp"
    r"|smtps?|localhost)(?::\d{2,5})?|(?:\w+://)?[\w-]+(?:\.[\w-]*)+(?::\d+)?(?:/\S*)?"
)
NEGATIVE_SETS = frozenset({"noseyparker_negatives", "kingfisher_negatives"})  # no gold spans
SET_NAMES = (
    "credsweeper",
    "noseyparker",
    "kingfisher",
    "noseyparker_negatives",
    "kingfisher_negatives",
)


def gold_type(rule: str) -> str:
    r = rule.lower()
    if "private key" in r or "pem" in r or ("ssh" in r and "key" in r):
        return "PRIVATE_KEY"
    if "jwt" in r or "json web token" in r:
        return "JWT"
    if "url cred" in r or "connection" in r or "uri" in r.split() or "dsn" in r:
        return "CONNECTION_STRING"
    if "password" in r or "passwd" in r or "credential" in r:
        return "PASSWORD"
    return "API_KEY"


def _pii_eval_dir(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    return data_dir / "pii_eval" if (data_dir / "pii_eval").is_dir() else data_dir


def _decode(data: bytes) -> str | None:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def load_credsweeper(folder: Path, notes: dict[str, int] | None = None) -> list[LabelledText]:
    notes = {} if notes is None else notes
    labels: dict[str, list[dict[str, Any]]] = {}
    with open(folder / "labels_compact.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                labels.setdefault(row["file"], []).append(row)
    out: list[LabelledText] = []
    with tarfile.open(folder / "tests_samples.tar.gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.startswith("tests/samples/"):
                continue
            raw = tar.extractfile(member)
            text = _decode(raw.read()) if raw else None
            if text is None or member.name.lower().endswith(_BINARY_SUFFIXES):
                notes["binary_files_skipped"] = notes.get("binary_files_skipped", 0) + 1
                continue
            spans = _credsweeper_spans(text, labels.get(member.name, []), notes)
            out.append(LabelledText(text, tuple(spans)))
    return out


def _credsweeper_spans(
    text: str, rows: list[dict[str, Any]], notes: dict[str, int]
) -> list[Entity]:
    starts, pos = [], 0
    for line in text.split("\n"):
        starts.append(pos)
        pos += len(line) + 1
    spans: dict[tuple[int, int], Entity] = {}
    for row in rows:
        if row["rule"] in NOT_SECRET_RULES:
            notes["not_secret_hits_dropped"] = notes.get("not_secret_hits_dropped", 0) + 1
            continue
        value, no = row["value"], row["line_num"] - 1
        base = starts[no] if 0 <= no < len(starts) else 0
        start = base + row["value_start"]
        if text[start : start + len(value)] != value:
            hits = [m.start() for m in re.finditer(re.escape(value), text)]
            if not hits:
                notes["unlocated_values"] = notes.get("unlocated_values", 0) + 1
                continue
            start = min(hits, key=lambda h: abs(h - base))
        end = start + len(value)
        spans[(start, end)] = Entity(gold_type(row["rule"]), start, end, value)
    return sorted(spans.values(), key=lambda e: e.start)


def _python_pattern(pattern: str) -> re.Pattern[str] | None:
    pattern = pattern.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    try:
        return re.compile(pattern)
    except re.error:
        pass
    flags = re.findall(r"\(\?([a-z]+)\)", pattern)  # Rust allows inline flags anywhere
    body = re.sub(r"\(\?[a-z]+\)", "", pattern)
    try:
        return re.compile(f"(?{''.join(sorted(set(''.join(flags))))})" + body)
    except re.error:
        return None


def _secret_group(m: re.Match[str]) -> int:
    """The last non-empty capture group that is not a host, URL or scheme (pair rules put the
    user or host first and the secret last: netrc, user/password, Azure, Auth0, PHPMailer), the
    one before a trailing host (`user:secret@host`); 0 (the whole match) when none."""
    groups = [i for i in range(1, (m.re.groups or 0) + 1) if m.group(i)]
    secret = [i for i in groups if not _HOSTISH.fullmatch(m.group(i))]
    return secret[-1] if secret else 0


def load_rule_examples(
    path: Path, label: str, notes: dict[str, int] | None = None
) -> list[LabelledText]:
    notes = {} if notes is None else notes
    out: list[LabelledText] = []
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if row["label"] != label:
            continue
        text = row["text"]
        if label == "negative":
            out.append(LabelledText(text, ()))
            continue
        rule = row.get("rule_name") or ""
        if IDENTIFIER_RULES.search(rule):
            notes["identifier_rule_examples_dropped"] = (
                notes.get("identifier_rule_examples_dropped", 0) + 1
            )
            continue
        etype = gold_type(rule)
        spans: list[Entity] = []
        pattern = _python_pattern(row.get("pattern") or "")
        for m in pattern.finditer(text) if pattern else ():
            group = _secret_group(m)
            if m.end(group) > m.start(group):
                spans.append(Entity(etype, m.start(group), m.end(group), m.group(group)))
        if not spans:
            notes["whole_text_gold"] = notes.get("whole_text_gold", 0) + 1
            s = text.strip()
            start = text.index(s)
            spans.append(Entity(etype, start, start + len(s), s))
        out.append(LabelledText(text, tuple(spans)))
    return out


def load_secret_sets(
    data_dir: str | Path, notes: dict[str, dict[str, int]] | None = None
) -> dict[str, list[LabelledText]]:
    """The sets of `SET_NAMES` found under `data_dir` (missing folders are left out)."""
    root = _pii_eval_dir(data_dir)
    notes = {} if notes is None else notes
    sets: dict[str, list[LabelledText]] = {}
    if (root / "CredSweeper" / "labels_compact.jsonl").is_file():
        sets["credsweeper"] = load_credsweeper(
            root / "CredSweeper", notes.setdefault("credsweeper", {})
        )
    for name, folder in (("noseyparker", "noseyparker"), ("kingfisher", "kingfisher")):
        path = root / folder / "rule_examples.jsonl"
        if path.is_file():
            sets[name] = load_rule_examples(path, "positive", notes.setdefault(name, {}))
            sets[f"{name}_negatives"] = load_rule_examples(path, "negative")
    return sets


def covered(gold: Entity, predicted: Iterable[Entity]) -> bool:
    """Every character of the gold value lies inside some detection."""
    chars = set(range(gold.start, gold.end))
    for p in predicted:
        chars.difference_update(range(p.start, p.end))
    return not chars


def score_set(
    samples: list[LabelledText], detector: Callable[[str], list[Entity]]
) -> dict[str, Any]:
    cache: dict[str, list[Entity]] = {}

    def cached(text: str) -> list[Entity]:
        if text not in cache:
            cache[text] = detector(text)
        return cache[text]

    report = evaluate(samples, cached).to_dict()
    gold = [(g, s) for s in samples for g in s.spans]
    negatives = [s for s in samples if not s.spans]
    full = sum(covered(g, cached(s.text)) for g, s in gold)
    return {
        "texts": len(samples),
        "gold": len(gold),
        "any_type_recall": report["micro"]["any_type_recall"] if gold else None,
        "covered_recall": round(full / len(gold), 4) if gold else None,
        "precision_any_type": _precision_any(samples, cached) if gold else None,
        "negative_texts": len(negatives),
        "detections_on_negatives": sum(len(cached(s.text)) for s in negatives),
        "negative_texts_flagged": sum(bool(cached(s.text)) for s in negatives),
        "per_type": report["entities"],
    }


def _precision_any(samples: list[LabelledText], detect: Callable[[str], list[Entity]]) -> float:
    predicted = correct = 0
    for s in samples:
        for p in detect(s.text):
            predicted += 1
            correct += any(p.start < g.end and g.start < p.end for g in s.spans)
    return round(correct / predicted, 4) if predicted else 0.0


def missed(
    samples: list[LabelledText], detector: Callable[[str], list[Entity]]
) -> list[tuple[Entity, str]]:
    """Gold spans no detection overlaps, with their text (for reading errors)."""
    out = []
    for s in samples:
        found = detector(s.text)
        for g in s.spans:
            if not any(p.start < g.end and g.start < p.end for p in found):
                out.append((g, s.text))
    return out


def main(argv: list[str] | None = None) -> int:
    from duetto.privacy.secrets import find_secrets

    args = list(sys.argv[1:] if argv is None else argv)
    out_json = None
    if "--json" in args:
        i = args.index("--json")
        out_json = args[i + 1]
        del args[i : i + 2]
    data_dir = Path(args[0]) if args else Path(__file__).resolve().parents[4] / "shared/datasets"
    notes: dict[str, dict[str, int]] = {}
    results = {
        name: score_set(samples, find_secrets)
        for name, samples in load_secret_sets(data_dir, notes).items()
    }
    for name, r in results.items():
        print(
            f"{name:22} texts={r['texts']:5} gold={r['gold']:5} "
            f"any_type_recall={r['any_type_recall']} covered={r['covered_recall']} "
            f"precision_any={r['precision_any_type']} negatives={r['negative_texts']} "
            f"detections_on_negatives={r['detections_on_negatives']} "
            f"flagged={r['negative_texts_flagged']}"
        )
    print("notes:", json.dumps(notes))
    if out_json:
        Path(out_json).write_text(json.dumps({"sets": results, "notes": notes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
