"""Speculative decoding on CPU: Qwen2.5-Coder-1.5B alone vs drafted by the 0.5B (same tokenizer).

Three ways to run the same 1.5B GGUF through duetto's llama.cpp backend (chat template,
per-token logprobs, accounting), greedy, same prompts, same max_tokens:

  - plain:          LlamaCppModel, one target decode per token
  - draft-0.5b-kN:  SpeculativeLlamaModel, the 0.5B drafts N tokens greedily, the 1.5B verifies
                    them in one batch (llama-cpp-python's verification loop)
  - prompt-lookup:  the 1.5B with llama-cpp's LlamaPromptLookupDecoding (drafts by copying the
                    continuation of the last n-gram's earlier occurrence; no second model)

Calls rotate over the configurations per prompt, so load from other processes hits all alike.
Reported per configuration: end-to-end tokens/s (generated tokens over wall time, prefill
included) as the median over prompts of each prompt's median over runs, the aggregate (all
tokens / all time), the speed-up against plain, how many prompts gave plain's exact text, and
the draft acceptance rate.

    flock /tmp/duetto-cpu.lock python benchmarks/speculative.py --json out/speculative.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from duetto.messages import ChatRequest
from duetto.models.base import ModelCard
from duetto.models.local import LlamaCppModel, _Engine
from duetto.models.speculative import (
    SpeculativeLlamaModel,
    _engine_of,
    release_speculative_models,
)
from duetto.models.standin import fetch_standin

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome, with a docstring.",
    "Explain in a few sentences what a hash table is and why lookups are fast.",
    "Write a SQL query that returns the ten customers with the highest total order amount.",
    "Rewrite this function with type hints: def add(a, b): return a + b",
    "List the planets of the solar system in order from the Sun, one per line.",
]


class _PrebuiltModel(LlamaCppModel):
    """LlamaCppModel around an already built `Llama` (here: one with a prompt-lookup draft)."""

    def __init__(self, card: ModelCard, path: Path, llama: Any) -> None:
        super().__init__(card, path, n_ctx=llama.n_ctx())
        self._prebuilt = _engine_of(llama)

    async def _engine(self) -> _Engine:
        return self._prebuilt


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    target, draft = fetch_standin("1.5b"), fetch_standin("0.5b")
    card = ModelCard(name="qwen2.5-coder-1.5b", context_size=args.n_ctx)
    models: dict[str, LlamaCppModel] = {
        "plain": LlamaCppModel(card, target, n_threads=args.threads)
    }
    drafted: dict[str, SpeculativeLlamaModel] = {}
    for k in args.num_draft:
        drafted[f"draft-0.5b-k{k}"] = SpeculativeLlamaModel(
            card, target, draft, num_draft=k, n_threads=args.threads
        )
    models.update(drafted)
    if args.lookup_tokens > 0:
        lookup = Llama(
            model_path=str(target),
            n_ctx=args.n_ctx,
            n_threads=args.threads,
            logits_all=True,  # see build_speculative_llama: the score buffer needs every row
            draft_model=LlamaPromptLookupDecoding(num_pred_tokens=args.lookup_tokens),
            verbose=False,
        )
        models[f"prompt-lookup-{args.lookup_tokens}"] = _PrebuiltModel(card, target, lookup)

    names = list(models)
    for model in models.values():  # load, then one short call so first-call costs are not timed
        await model.load()
        await model.complete(ChatRequest.of("Hi", max_tokens=4, temperature=0.0))
    for model in drafted.values():
        assert model.draft is not None
        model.draft.reset_stats()

    rates: dict[str, dict[int, list[float]]] = {
        n: {i: [] for i in range(len(PROMPTS))} for n in names
    }
    totals = {n: [0, 0.0] for n in names}  # tokens, seconds
    texts: dict[str, dict[int, str]] = {n: {} for n in names}
    for rep in range(args.reps):
        for i, prompt in enumerate(PROMPTS):
            order = names[(i + rep) % len(names) :] + names[: (i + rep) % len(names)]
            for name in order:
                request = ChatRequest.of(prompt, max_tokens=args.max_tokens, temperature=0.0)
                t0 = time.perf_counter()
                response = await models[name].complete(request)
                wall = time.perf_counter() - t0
                n = response.usage.tokens_out
                rates[name][i].append(n / wall)
                totals[name][0] += n
                totals[name][1] += wall
                texts[name][i] = response.text
                print(f"  rep {rep} prompt {i} {name:<18} {n:3d} tok {n / wall:6.1f} tok/s",
                      file=sys.stderr)  # fmt: skip

    plain_rate = totals["plain"][0] / totals["plain"][1]
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        aggregate = totals[name][0] / totals[name][1]
        row: dict[str, Any] = {
            "tokens_per_s_median": _median([_median(r) for r in rates[name].values()]),
            "tokens_per_s_aggregate": aggregate,
            "speedup_vs_plain": aggregate / plain_rate,
            "same_text_as_plain": sum(
                texts[name][i] == texts["plain"][i] for i in range(len(PROMPTS))
            ),
            "tokens": totals[name][0],
            "seconds": totals[name][1],
            "per_prompt_median_tokens_per_s": [
                _median(rates[name][i]) for i in range(len(PROMPTS))
            ],
        }
        if name in drafted and drafted[name].draft is not None:
            stats = drafted[name].draft.stats  # type: ignore[union-attr]
            row["draft"] = {
                "calls": stats.calls,
                "drafted": stats.drafted,
                "verified": stats.verified,
                "accepted": stats.accepted,
                "acceptance": stats.acceptance,
                "draft_tokens_decoded": stats.evaluated,
            }
        rows[name] = row
    release_speculative_models()
    return {
        "target": target.name,
        "draft": draft.name,
        "prompts": len(PROMPTS),
        "reps": args.reps,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "n_ctx": args.n_ctx,
        "results": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['target']} greedy, {result['prompts']} prompts x {result['reps']} runs, "
          f"max_tokens={result['max_tokens']}, {result['threads']} threads")  # fmt: skip
    head = f"{'config':<20}{'tok/s med':>10}{'tok/s agg':>10}{'speed-up':>9}{'same text':>10}"
    print(head + f"{'acceptance':>11}")
    for name, row in result["results"].items():
        acc = row.get("draft", {}).get("acceptance")
        print(
            f"{name:<20}{row['tokens_per_s_median']:>10.1f}{row['tokens_per_s_aggregate']:>10.1f}"
            f"{row['speedup_vs_plain']:>8.2f}x{row['same_text_as_plain']:>7d}/{result['prompts']}"
            + (f"{acc:>11.2f}" if acc is not None else f"{'-':>11}")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument(
        "--num-draft",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[4],
        help="draft lengths of the 0.5B, comma-separated (one configuration each)",
    )
    parser.add_argument("--lookup-tokens", type=int, default=10, help="0 skips prompt lookup")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
