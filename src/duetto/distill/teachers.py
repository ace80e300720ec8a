"""Teachers: who labels the traffic the small model learns from.

- `GoldTeacher` replays the dataset's gold labels: a perfect teacher, an UPPER BOUND on what any
  real teacher gives (reported with `upper_bound=True`).
- `LocalLLMTeacher` is a real language model run in process by llama.cpp (by default the offline
  stand-in Qwen2.5-Coder-0.5B, else the embedded SmolLM2). A small model cannot reliably spell one
  of 77-151 intent names, so it labels by *constrained decoding*: the prompt lists the labels once
  (a prefix evaluated once and kept in the KV cache), each query adds ~30 tokens, and decoding
  may only follow token paths that spell a label, greedily, until one label remains. Answers are
  cached on disk under ~/.cache/duetto/distill/ (override with DUETTO_CACHE), keyed by model file,
  label list and prompt, so the ~1 s/query labelling is paid once.
  `candidates=k` narrows each choice to the k intents whose names are most similar to the query
  (MiniLM sentence embeddings), plus the out-of-scope label: retrieve, then let the LLM choose,
  as intent classifiers built on LLMs do. The prompt still lists every label (the same cached
  prefix); only the token paths the decoding may follow change.

Teachers are plain picklable objects with a blocking `label(texts)`: labelling is a batch job
(possibly on Ray workers, see ray_exec), not a request path.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from duetto.errors import ModelUnavailable

PROMPT_VERSION = "v1"


class Teacher(Protocol):
    name: str
    upper_bound: bool  # True when the teacher is the gold labels (an upper bound, not a model)

    def label(self, texts: Sequence[str]) -> list[str]: ...


@dataclass
class GoldTeacher:
    """Replays gold labels: labelled an upper bound wherever it is reported."""

    gold: Mapping[str, str]
    name: str = "gold"
    upper_bound: bool = True

    def label(self, texts: Sequence[str]) -> list[str]:
        return [self.gold[t] for t in texts]


def cache_root() -> Path:
    root = os.environ.get("DUETTO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "duetto") / "distill"


def label_prompt(labels: Sequence[str], task: str, out_of_scope: str | None) -> str:
    """The system prompt: the task and the closed list of labels (the shared prefix)."""
    lines = [f"You label {task} with exactly one intent name from this list:"]
    lines += [f"- {lab}" for lab in labels]
    if out_of_scope:
        lines.append(f"- {out_of_scope} (the query fits none of the intents above)")
    lines.append("Reply with the intent name only.")
    return "\n".join(lines)


@dataclass
class LabelTrie:
    """Token sequences of the labels, for decoding that can only spell a label."""

    children: dict[int, LabelTrie] = field(default_factory=dict)
    labels: set[str] = field(default_factory=set)  # labels reachable below this node

    @classmethod
    def build(cls, tokenized: Mapping[str, Sequence[int]]) -> LabelTrie:
        root = cls()
        for label, tokens in tokenized.items():
            node = root
            node.labels.add(label)
            for tok in tokens:
                node = node.children.setdefault(tok, cls())
                node.labels.add(label)
        return root

    def decode(self, next_logits: Any) -> str:
        """Greedy constrained walk. `next_logits(token_or_None)` feeds a token (None: the prompt's
        own last position) and returns the logits row for the next position."""
        node, logits = self, next_logits(None)
        while len(node.labels) > 1:
            allowed = list(node.children)
            if not allowed:  # a label that is a prefix of another one ends here
                break
            tok = allowed[int(np.argmax(np.asarray(logits)[allowed]))]
            node = node.children[tok]
            if len(node.labels) > 1:
                logits = next_logits(tok)
        # Ties only when one label is a prefix of others: the shortest complete one wins.
        return min(node.labels, key=len)


class LocalLLMTeacher:
    """A GGUF chat model labelling queries by constrained choice among the labels."""

    upper_bound = False

    def __init__(
        self,
        model_path: str | Path,
        labels: Sequence[str],
        *,
        task: str = "user queries",
        out_of_scope: str | None = None,
        n_threads: int = 2,
        use_cache: bool = True,
        candidates: int = 0,
        embedder: Any = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.labels = list(labels)
        self.out_of_scope = out_of_scope
        self.system = label_prompt(self.labels, task, out_of_scope)
        self.candidates = candidates if 0 < candidates < len(self.labels) else 0
        suffix = f"+top{self.candidates}" if self.candidates else ""
        self.name = f"local:{self.model_path.stem}{suffix}"
        self._embedder = embedder  # ranks the candidates; default: duetto's MiniLM
        self._label_vectors: Any = None
        self.n_threads = n_threads
        self.use_cache = use_cache
        self._state: Any = None  # (llama, prefix_len, trie, suffix): rebuilt after unpickling
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_state"], state["_lock"] = None, None
        # The embedder is heavy: the receiver loads its own.
        state["_embedder"] = state["_label_vectors"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def choices(self) -> list[str]:
        return [*self.labels, self.out_of_scope] if self.out_of_scope else list(self.labels)

    def cache_path(self) -> Path:
        st = self.model_path.stat() if self.model_path.exists() else None
        h = hashlib.sha256(
            json.dumps(
                [self.model_path.name, st.st_size if st else 0, self.system, PROMPT_VERSION]
                + ([f"top{self.candidates}:{self._embedder_name()}"] if self.candidates else [])
            ).encode()
        ).hexdigest()[:20]
        return cache_root() / f"teacher-{self.model_path.stem}-{h}.jsonl"

    def _read_cache(self) -> dict[str, str]:
        path = self.cache_path()
        out: dict[str, str] = {}
        if self.use_cache and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a killed run
                out[row["text"]] = row["label"]
        return out

    def label(self, texts: Sequence[str]) -> list[str]:
        with self._lock:
            known = self._read_cache()
            todo = list(dict.fromkeys(t for t in texts if t not in known))
            allowed = dict(zip(todo, self.shortlist(todo), strict=True)) if todo else {}
            if todo and not self.use_cache:
                known.update((text, self._label_one(text, allowed[text])) for text in todo)
            elif todo:
                path = self.cache_path()
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as fh:
                    for text in todo:
                        known[text] = self._label_one(text, allowed[text])
                        # Appended one by one: a long run killed half way resumes from here.
                        fh.write(json.dumps({"text": text, "label": known[text]}) + "\n")
                        fh.flush()
            return [known[t] for t in texts]

    def _embedder_name(self) -> str:
        return str(getattr(self._embedder, "name", "minilm")) if self._embedder else "minilm"

    def shortlist(self, texts: Sequence[str]) -> list[list[str]]:
        """Per query, the `candidates` intents whose names are nearest to it (plus the
        out-of-scope label); every label when narrowing is off."""
        if not self.candidates:
            return [self.choices for _ in texts]
        if self._embedder is None:
            from duetto.scoring.embeddings import default_embedder

            self._embedder = default_embedder()
        if self._label_vectors is None:
            names = [lab.replace("_", " ") for lab in self.labels]
            self._label_vectors = np.asarray(self._embedder.embed(names))
        sims = np.asarray(self._embedder.embed(list(texts))) @ self._label_vectors.T
        top = np.argsort(-sims, axis=1)[:, : self.candidates]
        extra = [self.out_of_scope] if self.out_of_scope else []
        return [[self.labels[i] for i in row] + extra for row in top]

    def _load(self) -> Any:
        if self._state is not None:
            return self._state
        try:
            from llama_cpp import Llama, llama_chat_format
        except ImportError as exc:
            raise ModelUnavailable("llama-cpp-python is not installed (duetto[local])") from exc
        if not self.model_path.is_file():
            raise ModelUnavailable(f"teacher model not found: {self.model_path}")
        llama: Any = Llama(
            model_path=str(self.model_path), n_ctx=4096, n_threads=self.n_threads, verbose=False
        )
        template = llama.metadata.get("tokenizer.chat_template")
        eos = llama.token_eos()
        marker = "\x00QUERY\x00"
        messages: list[Any] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": marker},
        ]
        if template:
            fmt = llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=llama._model.token_get_text(eos), bos_token=""
            )
            prompt = fmt(messages=messages).prompt
        else:
            prompt = llama_chat_format.format_chatml(messages=messages).prompt
        prefix, suffix = prompt.split(marker)
        prefix_tokens = llama.tokenize(prefix.encode(), add_bos=True, special=True)
        llama.reset()
        llama.eval(prefix_tokens)  # the label list: evaluated once, kept in the KV cache
        tokenized = {
            lab: llama.tokenize(lab.encode(), add_bos=False, special=False) for lab in self.choices
        }
        self._state = (llama, len(prefix_tokens), tokenized, suffix)
        return self._state

    def _label_one(self, text: str, allowed: Sequence[str] | None = None) -> str:
        llama, prefix_len, tokenized, suffix = self._load()
        trie = LabelTrie.build({lab: tokenized[lab] for lab in (allowed or self.choices)})
        n_vocab = llama.n_vocab()
        query_text = " ".join(text.split()) + suffix
        query = llama.tokenize(query_text.encode(), add_bos=False, special=True)
        llama.n_tokens = prefix_len  # drop the previous query; eval() trims the KV cache

        def next_logits(token: int | None) -> Any:
            llama.eval(query if token is None else [token])
            return np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(n_vocab,))

        return str(trie.decode(next_logits))


def teacher_model_path(which: str = "standin") -> Path:
    """A GGUF path: "standin" or "standin-1.5b" (Qwen2.5-Coder-0.5B/1.5B, from
    duetto.models.standin),
    "smollm2" (the embedded SLM), or a file path."""
    if which == "smollm2":
        from duetto.models.local import smollm2_path

        return smollm2_path()
    if which in ("standin", "standin-0.5b", "standin-1.5b"):
        try:
            standin = importlib.import_module("duetto.models.standin")
        except ImportError as exc:
            raise ModelUnavailable("duetto.models.standin is not available") from exc
        return Path(standin.fetch_standin(size="1.5b" if which.endswith("1.5b") else "0.5b"))
    path = Path(which).expanduser()
    if not path.is_file():
        raise ModelUnavailable(f"teacher model not found: {path}")
    return path
