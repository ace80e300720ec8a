"""A model that answers from recorded outputs (e.g. real GPT-4 answers in ../shared/datasets).

A record is `{"response": str, "score": float | None, "tokens_in": int, "tokens_out": int,
"cost": float}` (only `response` is usual; a bare string is shorthand for it). A request is
looked up, in order, by `request.metadata["item_id"]`, by `request.key()`, by its last user
message and by its whole text; a miss is a `UserError` naming the prompt: replaying a dataset
that does not cover the evaluation is a setup mistake, not a model failure.

The recorded quality score goes to `RawResult.extra["recorded_score"]` (and the trace) for
evaluators. It is deliberately *not* `ChatResponse.score`: that field is a confidence a strategy
may act on, and acting on the ground truth would leak the answer key into routing decisions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from duetto.errors import DataError, UserError
from duetto.messages import ChatRequest, ChatResponse
from duetto.models.base import LeafModel, ModelCard, RawResult, _Meter

Record = Mapping[str, Any]


def _count_tokens(text: str) -> int:
    return len(text.split())


class ReplayModel(LeafModel):
    def __init__(self, card: ModelCard | str, records: Mapping[str, Record | str]) -> None:
        super().__init__(card if isinstance(card, ModelCard) else ModelCard(name=card))
        self.records: dict[str, Record] = {
            str(k): ({"response": v} if isinstance(v, str) else v) for k, v in records.items()
        }
        self.hits = 0

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, request: ChatRequest) -> Record:
        item_id = request.metadata.get("item_id")
        candidates = [str(item_id)] if item_id is not None else []
        candidates += [request.key(), request.last_user, request.text]
        for key in candidates:
            record = self.records.get(key)
            if record is not None:
                return record
        prompt = request.last_user
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        where = f" (item_id {item_id!r})" if item_id is not None else ""
        raise UserError(
            f"replay model {self.name!r} has no recorded answer for prompt {shown!r}{where}; "
            f"it holds {len(self.records)} records keyed by item id, request key or prompt text"
        )

    async def _call(self, request: ChatRequest) -> RawResult:
        record = self.lookup(request)
        self.hits += 1
        text = str(record.get("response") or "")
        extra: dict[str, Any] = {"replayed": True, "recorded_score": record.get("score")}
        if record.get("cost") is not None:
            extra["recorded_cost"] = float(record["cost"])
        tokens_in = record.get("tokens_in")
        tokens_out = record.get("tokens_out")
        return RawResult(
            text=text,
            tokens_in=int(tokens_in) if tokens_in is not None else _count_tokens(request.text),
            tokens_out=int(tokens_out) if tokens_out is not None else _count_tokens(text),
            finish_reason=str(record.get("finish_reason") or "stop"),
            extra=extra,
        )

    def _account(self, request: ChatRequest, raw: RawResult, meter: _Meter) -> ChatResponse:
        response = super()._account(request, raw, meter)
        if "recorded_cost" in raw.extra:  # what the call really cost when it was recorded
            response.usage.cost_usd = raw.extra["recorded_cost"]
            response.trace.usage.cost_usd = raw.extra["recorded_cost"]
        return response

    # ---- loaders -------------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls,
        card: ModelCard | str,
        rows: Iterable[Mapping[str, Any]],
        *,
        prompt_field: str = "prompt",
        id_field: str = "item_id",
        response_field: str = "response",
        score_field: str = "score",
        source: str = "<rows>",
    ) -> ReplayModel:
        """Index rows by item id and by prompt (whichever they carry). Other known fields
        (`tokens_in`, `tokens_out`, `cost`, `finish_reason`, `key`) are kept."""
        records: dict[str, Record] = {}
        for n, row in enumerate(rows, 1):
            keys = [str(row[f]) for f in (id_field, prompt_field, "key") if row.get(f) is not None]
            if not keys:
                raise DataError(
                    f"row {n} has neither {id_field!r} nor {prompt_field!r}",
                    file=source,
                    expected="one JSON object per line",
                )
            record = {
                "response": row.get(response_field),
                "score": row.get(score_field),
                **{
                    k: row[k]
                    for k in ("tokens_in", "tokens_out", "cost", "finish_reason")
                    if row.get(k) is not None
                },
            }
            for key in keys:
                records[key] = record
        return cls(card, records)

    @classmethod
    def from_jsonl(cls, card: ModelCard | str, path: str | Path, **fields: str) -> ReplayModel:
        """Load recorded outputs from a JSONL file (one object per line; see `from_rows`)."""
        path = Path(path)
        if not path.is_file():
            raise DataError("replay file not found", file=str(path), expected="a JSONL file")
        rows: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(
                        f"line {n} is not JSON ({exc})",
                        file=str(path),
                        expected="one JSON object per line",
                    ) from exc
                if not isinstance(row, dict):
                    raise DataError(
                        f"line {n} is not a JSON object",
                        file=str(path),
                        expected="one JSON object per line",
                    )
                rows.append(row)
        return cls.from_rows(card, rows, source=str(path), **fields)
