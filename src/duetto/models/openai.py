"""A backend for any OpenAI-compatible chat endpoint, over httpx (non-streamed calls to a
plain-http upstream: over the lean keep-alive client of `duetto.models.http1`, same bytes).

What it measures, per call and summed over retries: the HTTP bytes of each request (request line
+ headers + body) and of each response (status line + headers + body as it came off the socket;
`Accept-Encoding: identity` keeps the body uncompressed, so raw and decoded are the same),
tokens from the response's `usage` block (a flagged estimate when the server sends none), and
for streams the time to the first token. Chunked-transfer framing and TLS overhead are not
counted. The wire format itself (payload, SSE parsing, byte sizes) is `duetto.openai_wire`.

Failures are translated into duetto.errors at this boundary. 429, 5xx, connection errors,
timeouts and cut streams are retried with exponential backoff and jitter (Retry-After is honoured,
capped); other statuses raise `UpstreamError` at once. A stream is retried only while nothing has
been yielded to the caller.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from duetto.answers import estimate_tokens
from duetto.errors import (
    BrokenStream,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    RateLimited,
    UpstreamError,
    UserError,
)
from duetto.messages import ChatRequest, StreamChunk
from duetto.models.base import LeafModel, ModelCard, RawResult
from duetto.models.http1 import Http1Pool
from duetto.openai_wire import (
    StreamState,
    choice_of,
    request_payload,
    request_size,
    response_head_size,
    usage_details,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=30.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)


@dataclass(slots=True)
class _Tally:
    """HTTP bytes and attempts of one logical call, over all its retries."""

    attempts: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    body_sent: int = 0
    body_received: int = 0

    def count_response(self, response: httpx.Response) -> None:
        self.bytes_received += response_head_size(response) + response.num_bytes_downloaded
        self.body_received += response.num_bytes_downloaded

    def extra(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "body_bytes_sent": self.body_sent,
            "body_bytes_received": self.body_received,
        }


class _AttemptFailed(Exception):
    """One attempt failed with `error`; `retry_after` is the server's hint in seconds."""

    def __init__(self, error: ModelError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class OpenAIModel(LeafModel):
    """Any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, llama.cpp server, ...)."""

    def __init__(
        self,
        card: ModelCard,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff_s: float = 0.25,
        max_retry_after_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        logprobs: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(card)
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise UserError(
                    f"model {card.name!r}: environment variable {api_key_env} is not set "
                    "(it should hold the API key)"
                )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self._headers = {"Accept-Encoding": "identity", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport = transport
        self._limits = limits
        self._rng = random.Random()
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        # set with each client (_new_client)
        self._post_url = httpx.URL(self.base_url)
        self._post_headers = httpx.Headers()
        self._post_timeout: dict[str, Any] = {}
        self._direct: httpx.AsyncBaseTransport | None = None
        self._lean: Http1Pool | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIModel({self.card.name!r}, {self.base_url!r}, {self.model!r})"

    # ---- plumbing ------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        # A client's pool is bound to the event loop that used it: make one per loop so that
        # `complete_sync` (a fresh loop per call) keeps working.
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = self._new_client()
            self._http_loop = loop
        return self._http

    def _new_client(self) -> httpx.AsyncClient:
        """The pooled keep-alive client, and what every POST to it shares, computed once: the
        URL, the merged headers, the timeout, and the transport to call directly."""
        transport = self._transport or httpx.AsyncHTTPTransport(limits=self._limits)
        client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=self.timeout,
            transport=transport,
            limits=self._limits,
        )
        self._post_url = client.build_request("POST", "chat/completions").url
        self._post_headers = httpx.Headers(client.headers)
        self._post_headers["Content-Type"] = "application/json"
        self._post_timeout = {"timeout": self.timeout.as_dict()}
        # Direct to the pool: `client.send` would re-merge the URL and headers, run the auth and
        # redirect machinery and parse cookies on every call (about half the client's CPU per
        # call, docs/gateway.md). Same request bytes; through the client when a proxy from the
        # environment may apply (the client mounts it).
        self._direct = None if _proxy_env() else transport
        # Non-streamed calls to a plain-http upstream skip httpx altogether (models/http1.py):
        # same request bytes, from a template httpx builds (a body, so Content-Length is where
        # httpx puts it)
        self._lean = None
        if self._direct is not None and self._transport is None and self._post_url.scheme == "http":
            template = httpx.Request(
                "POST", self._post_url, headers=self._post_headers, content=b"{}"
            )
            self._lean = Http1Pool(template, self.timeout, self._limits)
        return client

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
            self._lean = None
        if self._http is not None:
            await self._http.aclose()  # and its transport
            self._http = None

    def _payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        return request_payload(
            request, self.model, stream=stream, logprobs=self.logprobs, extra=self.extra_body
        )

    async def _open(self, content: bytes, tally: _Tally) -> httpx.Response:
        """Send one attempt and return a streaming response with a 2xx status."""
        client = self._client()
        http_request = httpx.Request(
            "POST",
            self._post_url,
            headers=self._post_headers,
            # an upstream that set a cookie (a sticky load balancer) gets it back
            cookies=client.cookies or None,
            content=content,
            extensions=self._post_timeout,
        )
        tally.attempts += 1
        try:
            response = await self._send(client, http_request)
        except httpx.UnsupportedProtocol as exc:
            raise UserError(f"model {self.card.name!r}: bad base_url {self.base_url!r}") from exc
        except httpx.HTTPError as exc:
            if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                tally.bytes_sent += request_size(http_request)  # it left before failing
                tally.body_sent += len(content)
            raise _AttemptFailed(self._translate(exc)) from exc
        tally.bytes_sent += request_size(http_request)
        tally.body_sent += len(content)
        if response.status_code < 300:
            return response
        try:
            body = (await response.aread()).decode("utf-8", "replace")
        except httpx.HTTPError as exc:
            body = f"<body unreadable: {exc}>"
        finally:
            await response.aclose()
            tally.count_response(response)
        raise _AttemptFailed(self._status_error(response, body), _retry_after(response))

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        if self._direct is None:
            return await client.send(request, stream=True)
        response = await self._direct.handle_async_request(request)
        response.request = request
        if "set-cookie" in response.headers:
            client.cookies.extract_cookies(response)
        return response

    def _status_error(self, response: httpx.Response, body: str) -> UpstreamError:
        status = response.status_code
        message = f"{self.card.name}: HTTP {status} from {response.request.url}: {body[:300]}"
        if status == 429:
            return RateLimited(message, status=status, body=body)
        return UpstreamError(message, status=status, body=body)

    def _translate(self, exc: httpx.HTTPError, *, mid_stream: bool = False) -> ModelError:
        where = f"{self.card.name} ({self.base_url})"
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeout(f"{where}: {type(exc).__name__}: {exc}")
        if mid_stream:
            return BrokenStream(f"{where}: stream cut: {type(exc).__name__}: {exc}")
        return ModelUnavailable(f"{where}: {type(exc).__name__}: {exc}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = self.backoff_s * 2.0**attempt
        delay = base * (0.5 + 0.5 * self._rng.random())  # jitter: spread synchronized clients
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_retry_after_s)

    async def _backoff_or_raise(self, failed: _AttemptFailed, attempt: int) -> None:
        if not failed.error.retryable or attempt >= self.retries:
            raise failed.error from failed.__cause__
        await asyncio.sleep(self._delay(attempt, failed.retry_after))

    # ---- non-streaming -------------------------------------------------------------------

    async def _call(self, request: ChatRequest) -> RawResult:
        content = json.dumps(self._payload(request, stream=False)).encode()
        tally = _Tally()
        attempt = 0
        while True:
            try:
                data = await self._fetch_json(content, tally)
                break
            except _AttemptFailed as failed:
                await self._backoff_or_raise(failed, attempt)
                attempt += 1
        try:
            choices = [choice_of(c) for c in sorted(data["choices"], key=_index)]
            first = choices[0]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamError(
                f"{self.card.name}: malformed completion ({exc!r}): {str(data)[:300]}",
                status=200,
                body=str(data)[:2000],
            ) from exc
        raw = self._result(
            request,
            first.text,
            first.finish_reason,
            first.logprobs,
            data.get("usage"),
            tally,
            ttft_ms=None,
        )
        raw.tool_calls = first.tool_calls
        raw.token_logprobs = first.token_logprobs
        raw.choices = choices[1:]
        return raw

    async def _fetch_json(self, content: bytes, tally: _Tally) -> dict[str, Any]:
        client = self._client()
        if self._lean is not None and not client.cookies:  # a cookie to send: httpx sends it
            raw = await self._fetch_lean(self._lean, client, content, tally)
        else:
            response = await self._open(content, tally)
            try:
                raw = await response.aread()
            except httpx.HTTPError as exc:
                raise _AttemptFailed(self._translate(exc)) from exc
            finally:
                await response.aclose()
                tally.count_response(response)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            text = raw[:300].decode("utf-8", "replace")
            error = UpstreamError(f"{self.card.name}: response is not JSON: {text}", status=200)
            raise _AttemptFailed(error) from exc
        if not isinstance(data, dict) or "error" in data:
            error = UpstreamError(
                f"{self.card.name}: error in body: {str(data)[:300]}",
                status=200,
                body=str(data)[:2000],
            )
            raise _AttemptFailed(error)
        return data

    async def _fetch_lean(
        self, lean: Http1Pool, client: httpx.AsyncClient, content: bytes, tally: _Tally
    ) -> bytes:
        """One attempt through the lean client: the body of a 2xx answer, counted as `_open`
        and `_Tally.count_response` count httpx's."""
        head = lean.head(len(content))
        tally.attempts += 1
        try:
            reply = await lean.post(head, content)
        except httpx.HTTPError as exc:
            if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                tally.bytes_sent += len(head) + len(content)  # it left before failing
                tally.body_sent += len(content)
            raise _AttemptFailed(self._translate(exc)) from exc
        tally.bytes_sent += len(head) + len(content)
        tally.body_sent += len(content)
        tally.bytes_received += reply.head_bytes + len(reply.body)
        tally.body_received += len(reply.body)
        if reply.status < 300 and not any(k.lower() == b"set-cookie" for k, _ in reply.headers):
            return reply.body
        response = httpx.Response(
            reply.status, headers=reply.headers, content=reply.body, request=lean.request
        )
        client.cookies.extract_cookies(response)  # sent back by httpx from now on
        if reply.status < 300:
            return reply.body
        body = reply.body.decode("utf-8", "replace")
        raise _AttemptFailed(self._status_error(response, body), _retry_after(response))

    # ---- streaming -----------------------------------------------------------------------

    async def _stream_raw(
        self, request: ChatRequest
    ) -> AsyncIterator[str | StreamChunk | RawResult]:
        content = json.dumps(self._payload(request, stream=True)).encode()
        tally = _Tally()
        t0 = time.perf_counter()
        attempt = 0
        while True:
            state = StreamState()
            try:
                async with aclosing(self._stream_attempt(content, tally, state)) as deltas:
                    async for delta in deltas:
                        if state.ttft_ms is None:
                            state.ttft_ms = (time.perf_counter() - t0) * 1000
                        yield delta
                break
            except _AttemptFailed as failed:
                if state.ttft_ms is not None:  # the caller already has part of the answer
                    raise failed.error from failed.__cause__
                await self._backoff_or_raise(failed, attempt)
                attempt += 1
        raw = self._result(
            request,
            "".join(state.parts),
            state.finish or "stop",
            state.logprobs or None,
            state.usage,
            tally,
            ttft_ms=state.ttft_ms,
        )
        raw.tool_calls = state.first.tool_calls()
        raw.token_logprobs = state.first.entries or None
        raw.choices = state.choices()
        yield raw

    async def _stream_attempt(
        self, content: bytes, tally: _Tally, state: StreamState
    ) -> AsyncGenerator[str | StreamChunk, None]:
        response = await self._open(content, tally)
        try:
            async for line in response.aiter_lines():
                delta = state.feed(line)
                if state.error is not None:
                    raise _AttemptFailed(
                        UpstreamError(
                            f"{self.card.name}: error event in stream: {state.error[:300]}",
                            status=200,
                            body=state.error,
                        )
                    )
                if state.last_tool_calls or state.last_logprobs:
                    yield StreamChunk(delta, None, state.last_tool_calls, state.last_logprobs)
                elif delta:
                    yield delta
                if state.done:
                    break
        except httpx.HTTPError as exc:
            raise _AttemptFailed(self._translate(exc, mid_stream=True)) from exc
        finally:
            await response.aclose()
            tally.count_response(response)
        if not state.done and state.finish is None:
            raise _AttemptFailed(
                BrokenStream(f"{self.card.name}: stream ended without a finish reason or [DONE]")
            )

    # ---- shared --------------------------------------------------------------------------

    def _result(
        self,
        request: ChatRequest,
        text: str,
        finish: str,
        logprobs: list[float] | None,
        usage: Any,
        tally: _Tally,
        ttft_ms: float | None,
    ) -> RawResult:
        extra = tally.extra()
        tokens_in = tokens_out = None
        if isinstance(usage, dict):
            tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        details = usage_details(usage) if isinstance(usage, dict) else {}
        if not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
            tokens_in = estimate_tokens(request.text)
            tokens_out = estimate_tokens(text)
            extra["tokens_estimated"] = True
        return RawResult(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            finish_reason=finish,
            logprobs=logprobs,
            bytes_sent=tally.bytes_sent,
            bytes_received=tally.bytes_received,
            ttft_ms=ttft_ms,
            extra=extra,
            usage_details=details,
        )


def _proxy_env() -> bool:
    """Whether httpx's client would mount a proxy from the environment (trust_env)."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(k.lower() in names and v for k, v in os.environ.items())


def _index(choice: Any) -> int:
    return int(choice.get("index", 0)) if isinstance(choice, dict) else 0


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
