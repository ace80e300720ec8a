"""Run the differential compatibility suite (tests/compat) and write what it measured into
docs/gateway.md, between `<!-- compat-table:start -->` and `<!-- compat-table:end -->`.

    python scripts/compat_table.py               # run the suite, rewrite the table
    python scripts/compat_table.py --gaps        # also print gaps.py entries for what fails
    python scripts/compat_table.py --junit x.xml # table from an earlier run (COMPAT_RAW=1)

The suite runs with COMPAT_RAW=1: no xfail marks, so every cell is a measured pass or fail of an
unmodified client (a known gap shows as a failure here, as it does for a user).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "gateway.md"
START, END = "<!-- compat-table:start -->", "<!-- compat-table:end -->"
TARGETS = ("direct", "duetto", "duetto-route")
CLIENTS = {  # test file (without test_) -> how the client is named in the table
    "langchain_standard": "LangChain standard chat-model suite (`langchain-tests`, `ChatOpenAI`)",
    "openai_client": "official `openai` client",
    "pydantic_ai": "pydantic-ai (`OpenAIChatModel`)",
    "instructor": "instructor",
    "wire_shape": "raw JSON (`httpx`): the whole answer equal to the direct one",
}
PACKAGES = ("openai", "langchain-openai", "langchain-tests", "pydantic-ai-slim", "instructor")
MARK = {"pass": "pass", "fail": "**fail**", "skip": "skip", None: "–"}


@dataclass(frozen=True, slots=True)
class Outcome:
    client: str
    case: str
    target: str
    result: str  # pass | fail | skip
    message: str


def run_suite(junit: Path) -> int:
    env = {**os.environ, "COMPAT_RAW": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_family=xunit1",
        f"--junitxml={junit}",
        "tests/compat",
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def outcomes(junit: Path) -> list[Outcome]:
    out = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") or "" for p in tc.iter("property")}
        case = props.get("compat_case")
        if not case:
            continue
        client, _, name = case.partition("::")
        result, message = "pass", ""
        for tag in ("failure", "error"):
            node = tc.find(tag)
            if node is not None:
                result, message = "fail", (node.get("message") or "").splitlines()[0][:160]
        if tc.find("skipped") is not None:
            result = "skip"
            message = (tc.find("skipped").get("message") or "")[:160]  # type: ignore[union-attr]
        out.append(Outcome(client, name, props.get("compat_target") or "direct", result, message))
    return out


def grid(results: list[Outcome]) -> dict[str, dict[str, dict[str, str]]]:
    """client -> case -> target -> result (a case run twice keeps its worst result)."""
    g: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    rank = {"fail": 2, "skip": 1, "pass": 0}
    for o in results:
        cell = g[o.client][o.case]
        if rank[o.result] >= rank.get(cell.get(o.target, "pass"), 0):
            cell[o.target] = o.result
    return g


def versions() -> str:
    found = []
    for p in PACKAGES:
        try:
            found.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            found.append(f"{p} (not installed)")
    return ", ".join(found)


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(g: dict[str, dict[str, dict[str, str]]]) -> str:
    lines = [
        START,
        "",
        f"Measured by `python scripts/compat_table.py` at commit `{commit()}` on "
        f"{datetime.now(UTC):%Y-%m-%d} ({versions()}). Each client is unmodified and runs "
        "every case directly against the suite's OpenAI-compatible upstream "
        "(`duetto.testing.FakeOpenAIServer`) and through a duetto gateway (the app `duetto serve` "
        "runs, on a loopback socket) in front of that same upstream, asked for the raw model "
        "(`llm`) and for a route strategy (`route`).",
        "",
        "| client | direct | through duetto (`llm`) | through duetto (`route`) |",
        "|---|---|---|---|",
    ]
    for client, title in CLIENTS.items():
        cases = g.get(client, {})
        if not cases:
            continue
        if not any("direct" in t for t in cases.values()):  # each case compares with direct
            cells = ["the reference"]
            for target in TARGETS[1:]:
                ran = [c for c, t in cases.items() if target in t]
                ok = [c for c in ran if cases[c][target] == "pass"]
                cells.append(f"{len(ok)} of {len(ran)} equal" if ran else "–")
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
            continue
        direct_ok = [c for c, t in cases.items() if t.get("direct") == "pass"]
        skipped = sum(t.get("direct") == "skip" for t in cases.values())
        cells = [
            f"{len(direct_ok)} of {len(cases)} pass" + (f" ({skipped} skip)" if skipped else "")
        ]
        for target in TARGETS[1:]:
            ran = [c for c in direct_ok if target in cases[c]]
            ok = [c for c in ran if cases[c][target] == "pass"]
            cells.append(f"{len(ok)} of those {len(ran)} pass" if ran else "–")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per case (`fail` directly: the upstream cannot do it, which says nothing about duetto):",
        "",
    ]
    for client, title in CLIENTS.items():
        cases = g.get(client, {})
        if not cases:
            continue
        lines += [
            f"<details><summary>{title}</summary>",
            "",
            "| case | direct | duetto `llm` | duetto `route` |",
            "|---|---|---|---|",
        ]
        for case in sorted(cases):
            t = cases[case]
            row = [MARK[t.get(x)] for x in TARGETS]
            lines.append(f"| `{case}` | " + " | ".join(row) + " |")
        lines += ["", "</details>", ""]
    lines.append(END)
    return "\n".join(lines)


def write_doc(table: str, doc: Path) -> None:
    text = doc.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{doc}: markers {START} ... {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + table + tail)


def print_gaps(results: list[Outcome]) -> None:
    """gaps.py entries for what failed: UPSTREAM (fails directly) and THROUGH_DUETTO (passes
    directly, fails through duetto; `case@target` when only some targets fail)."""
    g = grid(results)
    msgs = {(o.client, o.case, o.target): o.message for o in results if o.result == "fail"}
    upstream, through = [], []
    for client, cases in sorted(g.items()):
        for case, t in sorted(cases.items()):
            key = f"{client}::{case}"
            if t.get("direct") == "fail":
                upstream.append(f'    "{key}": {msgs[(client, case, "direct")]!r},')
                continue
            if t.get("direct") != "pass":
                continue
            failed = [x for x in TARGETS[1:] if t.get(x) == "fail"]
            ran = [x for x in TARGETS[1:] if x in t]
            for x in failed if len(failed) < len(ran) else failed[:1]:
                k = key if len(failed) == len(ran) else f"{key}@{x}"
                through.append(f'    "{k}": {msgs[(client, case, x)]!r},')
    print("THROUGH_DUETTO = {\n" + "\n".join(through) + "\n}")
    print("UPSTREAM = {\n" + "\n".join(upstream) + "\n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--junit", type=Path, help="read this junit xml instead of running the suite")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--gaps", action="store_true", help="print gaps.py entries for failures")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave the doc")
    args = ap.parse_args()
    if args.junit is None:
        tmp = Path(tempfile.mkdtemp(prefix="duetto-compat-")) / "compat.xml"
        run_suite(tmp)  # failures are what is measured: the exit status is not an error here
        junit = tmp
    else:
        junit = args.junit
    results = outcomes(junit)
    if not results:
        raise SystemExit(f"no compat results in {junit}")
    table = render(grid(results))
    if args.no_write:
        print(table)
    else:
        write_doc(table, args.doc)
        print(f"wrote the compatibility table ({len(results)} results) into {args.doc}")
    if args.gaps:
        print_gaps(results)


if __name__ == "__main__":
    main()
