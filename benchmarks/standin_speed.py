"""The stand-in LLM through loopback HTTP: its speed, and a probe of how much stronger it is.

Starts the stand-in (Qwen2.5-Coder-0.5B-Instruct by default, `--size 1.5b` for the larger one)
with StandinServer and reaches it through duetto's `openai` backend, as strategies do.

  - prompt tok/s: distinct ~400-token prompts with max_tokens=1; prompt tokens (the server's
    usage count) over the call's wall time (one decoded token and HTTP included: a lower bound).
  - generation tok/s: distinct prompts asking for long answers, max_tokens=128; generated tokens
    over (wall time - prompt tokens / measured prompt tok/s). End-to-end tok/s is shown too.
  - probe: 12 short questions with known answers (arithmetic, facts, intents given as choices),
    greedy, asked of the embedded SmolLM2-135M (in process) and of the stand-in. An answer is
    right when the first accepted or wrong form it names is an accepted one.

    flock /tmp/duetto-cpu.lock python benchmarks/standin_speed.py --json out/standin_speed.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duetto.messages import ChatRequest
from duetto.models.base import ChatModel
from duetto.models.local import LlamaCppModel
from duetto.models.standin import StandinServer, fetch_standin

SYSTEM = "Answer with the answer only, no explanation."
INTENT = (
    "Classify the intent of the customer message as exactly one of: card_lost, balance, "
    "transfer. Reply with the label only.\nMessage: "
)
LABELS = ["card_lost", "balance", "transfer"]


@dataclass(frozen=True)
class Probe:
    question: str
    accept: tuple[str, ...]
    reject: tuple[str, ...] = ()

    def is_right(self, answer: str) -> bool:
        """The first accepted or wrong form the answer names decides ("0.9 is larger than 0.45")."""

        def first(s: str) -> int:
            # whole word/number: "12" is not in "120", "0.9" is not in "0.95"
            m = re.search(rf"(?<![\w.]){re.escape(s.lower())}(?!\w|\.\d)", answer.lower())
            return m.start() if m else len(answer) + 1

        right = min(first(a) for a in self.accept)
        wrong = min((first(r) for r in self.reject), default=len(answer) + 1)
        return right <= len(answer) and right < wrong


def _intent(message: str, label: str) -> Probe:
    return Probe(INTENT + message, (label,), tuple(x for x in LABELS if x != label))


PROBES = [
    Probe("What is 17 * 3?", ("51",)),
    Probe("What is 144 divided by 12?", ("12",)),
    Probe("What is 25 + 38?", ("63",)),
    Probe("Which is larger, 0.9 or 0.45?", ("0.9",), ("0.45",)),
    Probe("What is the capital of Japan?", ("Tokyo",)),
    Probe("What is the chemical symbol for gold?", ("Au",)),
    Probe("Which planet is known as the Red Planet?", ("Mars",)),
    Probe("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    Probe("What is the boiling point of water at sea level in degrees Celsius?", ("100",)),
    _intent("I can't find my credit card anywhere, I think I dropped it.", "card_lost"),
    _intent("How much money is left in my checking account?", "balance"),
    _intent("Please send 50 dollars to my brother's account.", "transfer"),
]

TOPICS = ["rivers", "volcanoes", "bridges", "libraries", "glaciers", "telescopes", "harbours"]


def _long_prompt(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    filler = " ".join(f"Fact {k} about {topic}: they matter to many people." for k in range(40))
    return f"Request {i}. Read these notes about {topic}.\n{filler}\nSummarise them in one word."


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


async def speed(model: ChatModel, reps: int, max_tokens: int) -> dict[str, Any]:
    await model.complete(ChatRequest.of("Hello", max_tokens=4))  # warm-up
    prompt_rates = []
    for i in range(reps):
        r = await model.complete(ChatRequest.of(_long_prompt(i), max_tokens=1))
        prompt_rates.append(r.usage.tokens_in / (r.usage.latency_ms / 1000))
    prompt_tps = _median(prompt_rates)
    gen_rates, e2e_rates, tokens_out = [], [], []
    for i in range(reps):
        topic = TOPICS[(i + 3) % len(TOPICS)]
        req = ChatRequest.of(f"Write a detailed essay about {topic}.", max_tokens=max_tokens)
        r = await model.complete(req)
        wall = r.usage.latency_ms / 1000
        decode = max(1e-6, wall - r.usage.tokens_in / prompt_tps)
        gen_rates.append(r.usage.tokens_out / decode)
        e2e_rates.append(r.usage.tokens_out / wall)
        tokens_out.append(r.usage.tokens_out)
    return {
        "prompt_tok_s": prompt_tps,
        "generation_tok_s": _median(gen_rates),
        "end_to_end_tok_s": _median(e2e_rates),
        "prompt_tok_s_all": prompt_rates,
        "generation_tok_s_all": gen_rates,
        "tokens_out": tokens_out,
    }


async def probe(model: ChatModel) -> list[dict[str, Any]]:
    out = []
    for p in PROBES:
        r = await model.complete(ChatRequest.of(p.question, system=SYSTEM, max_tokens=32))
        out.append({"question": p.question, "answer": r.text.strip(), "right": p.is_right(r.text)})
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    smollm2 = LlamaCppModel.smollm2(n_ctx=2048)
    slm_probe = await probe(smollm2)
    path = await asyncio.to_thread(fetch_standin, args.size)
    t0 = time.perf_counter()
    async with StandinServer(path, n_ctx=4096) as server:
        startup_s = time.perf_counter() - t0
        llm = server.model(timeout=300.0, retries=0)
        try:
            speeds = await speed(llm, args.reps, args.max_tokens)
            llm_probe = await probe(llm)
        finally:
            await llm.aclose()
    return {
        "standin": path.name,
        "size": args.size,
        "server_startup_s": startup_s,
        "reps": args.reps,
        "max_tokens": args.max_tokens,
        **speeds,
        "probe": {
            "n": len(PROBES),
            "smollm2_right": sum(x["right"] for x in slm_probe),
            "standin_right": sum(x["right"] for x in llm_probe),
            "smollm2": slm_probe,
            "standin": llm_probe,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="0.5b", choices=["0.5b", "1.5b"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    pr = res["probe"]
    up = res["server_startup_s"]
    print(f"stand-in {res['standin']} over loopback HTTP (server up in {up:.1f} s)")
    print(f"  prompt      {res['prompt_tok_s']:6.1f} tok/s (median of {res['reps']})")
    print(f"  generation  {res['generation_tok_s']:6.1f} tok/s "
          f"(end to end {res['end_to_end_tok_s']:.1f} tok/s)")  # fmt: skip
    print(f"  probe: stand-in {pr['standin_right']}/{pr['n']} right, "
          f"SmolLM2-135M {pr['smollm2_right']}/{pr['n']} right")  # fmt: skip
    for a, b in zip(pr["smollm2"], pr["standin"], strict=True):
        q = a["question"].split("Message: ")[-1][:48]
        print(f"    {q:<48} slm {'✓' if a['right'] else '✗'} {a['answer'][:24]!r:<28}"
              f"llm {'✓' if b['right'] else '✗'} {b['answer'][:24]!r}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
