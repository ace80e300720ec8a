"""The error tree of duetto.

    DuettoError
    ├── UserError              a developer mistake: fix the code or the config, retrying won't help
    │   ├── ConfigError        bad YAML/config; `path` names the key ("strategies.c1.models[0]")
    │   ├── UnknownModel       no model or strategy of that name (also a KeyError)
    │   └── DataError          a missing or malformed data file; names file and format
    ├── ModelError             a runtime failure of a model call; may succeed on retry or fallback
    │   ├── ModelUnavailable   the backend cannot be reached or loaded (refused, no weights)
    │   │   └── CircuitOpen    the upstream's circuit breaker is open: not attempted
    │   ├── ModelTimeout       connect/read timeout
    │   ├── UpstreamError      the upstream answered with an error status (`status`, `body`)
    │   │   └── RateLimited    HTTP 429
    │   ├── BrokenStream       a stream ended before its final chunk
    │   └── FallbackFailed     a Fallback's primary and backup both failed
    └── GatewayError           the gateway could not serve a request; `status` is the HTTP code
        ├── Rejected           refused before any model call, not stored (`kind`, `code`,
        │   │                  `retry_after`): unknown model 404, rate limit 429, privacy 400
        │   ├── OverBudget     the key's budget cannot hold the request's worst-case cost: 429
        │   └── MissingCapability  no model the strategy may choose can serve the request (it
        │                      needs tools, vision, a longer context, ...): 400; strategies
        │                      raise it before any model call
        └── GatewayFailure     the model and its fallback both failed (502) or timed out (504)

Errors from lower libraries (httpx, llama_cpp) are translated into this tree at the boundary.
"""

from __future__ import annotations


class DuettoError(Exception):
    """Base of every error duetto raises on purpose."""


class UserError(DuettoError):
    """A developer mistake: fix the call, the config or the data."""


class ConfigError(UserError):
    """`message` is the bare text, `path` the key it is about; `errors` lists every
    (path, message) found at once (the first is `path`/`message`)."""

    def __init__(
        self, message: str, path: str = "", errors: list[tuple[str, str]] | None = None
    ) -> None:
        self.message = message
        self.path = path
        self.errors = list(errors) if errors else [(path, message)]
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in self.errors))

    def under(self, prefix: str) -> ConfigError:
        """The same error(s) with every path prefixed: `e.under("strategies.c1")` turns
        `models[1]` into `strategies.c1.models[1]`."""

        def join(path: str) -> str:
            if not path or not prefix:
                return path or prefix
            return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"

        errors = [(join(p), m) for p, m in self.errors]
        return ConfigError(errors[0][1], errors[0][0], errors)


class UnknownModel(UserError, KeyError):
    """No model or strategy of that name (a KeyError too, for `except KeyError` callers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataError(UserError):
    def __init__(self, message: str, file: str = "", expected: str = "") -> None:
        self.file = file
        self.expected = expected
        text = f"{file}: {message}" if file else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class ModelError(DuettoError):
    """A model call failed at run time."""

    retryable: bool = False


class ModelUnavailable(ModelError):
    retryable = True


class ModelTimeout(ModelError):
    retryable = True


class UpstreamError(ModelError):
    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status == 429 or self.status >= 500


class RateLimited(UpstreamError):
    pass


class BrokenStream(ModelError):
    retryable = True


class CircuitOpen(ModelUnavailable):
    """The upstream's breaker is open: the call was not attempted (duetto.gateway.breaker)."""


class FallbackFailed(ModelError):
    """The primary and the backup both failed (duetto.strategies.Fallback). `timed_out` is True
    when the backup's failure was its deadline (a gateway answers 504 then, else 502)."""

    def __init__(
        self, message: str, primary_error: BaseException, backup_error: BaseException
    ) -> None:
        super().__init__(message)
        self.primary_error = primary_error
        self.backup_error = backup_error

    @property
    def timed_out(self) -> bool:
        return isinstance(self.backup_error, TimeoutError)


class GatewayError(DuettoError):
    """A request the gateway could not serve; `status` is the HTTP status it answers with."""

    status: int = 500


class Rejected(GatewayError):
    """Refused before any model call (not stored: the request was not accepted). `kind` and
    `code` are the OpenAI error type and code; `retry_after` is in seconds."""

    def __init__(
        self, status: int, message: str, kind: str, code: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.retry_after = status, kind, code, retry_after


class OverBudget(Rejected):
    """The key's budget cannot hold the request's worst-case cost (spent and reserved
    included)."""

    def __init__(self, key: str, budget_usd: float) -> None:
        super().__init__(
            429,
            f"Budget of key {key!r} (USD {budget_usd}) would be exceeded by this request's "
            "worst-case cost",
            "insufficient_quota",
            "insufficient_quota",
        )
        self.key, self.budget_usd = key, budget_usd


class MissingCapability(Rejected):
    """No candidate of `strategy` has what the request needs: a 400 `invalid_request_error`
    whose message names the capability and the strategy (never a silent drop). `capability`
    is the first missing one ("vision", "tools", "context", ...); `reasons` says, per
    candidate, what it lacks."""

    def __init__(
        self, strategy: str, mode: str, capability: str, reasons: list[str] | None = None
    ) -> None:
        self.strategy, self.mode, self.capability = strategy, mode, capability
        self.reasons = list(reasons or [])
        detail = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        what = f"no model of {mode} {strategy!r} offers" if mode else f"model {strategy!r} lacks"
        super().__init__(
            400,
            f"This request needs {capability}, which {what}{detail}",
            "invalid_request_error",
            "missing_capability",
        )


class GatewayFailure(GatewayError):
    """The requested model and its fallback both failed: a well-formed 502 (504 on a
    timeout) for the client."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status
