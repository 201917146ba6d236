"""Chat with API models: OpenAI, Anthropic and OpenAI-compatible servers (vLLM, TGI, ...).

``chat_many`` / ``achat_many`` send a batch of ``ChatRequest`` with bounded concurrency and
return one ``ChatResult`` per request, in order. The SDKs' own retries are off; this module
retries so the budget is exact: at most ``1 + max_retries`` attempts per request, on 408,
409, 429, 5xx, timeouts, connection errors and malformed bodies, with capped exponential
backoff and full jitter, never sooner than the server's ``Retry-After`` /
``retry-after-ms``. A 429 with such a header pauses every request of the batch, since
rate limits are per account. 400 and other 4xx fail that request at once (``error`` set);
401, 403 and 404 stop the whole batch with a ``HarnessError``, since they would fail every
request alike.

Keys come only from environment variables; ``APIConfig`` holds the variable's *name*, and
the value is kept out of every result, message and log line.
"""
from __future__ import annotations

import asyncio
import email.utils
import importlib
import inspect
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from harness.backends import pricing
from harness.errors import HarnessError, InputError, Problem
from harness.registry import did_you_mean

log = logging.getLogger(__name__)

PROVIDERS = ("openai", "anthropic", "openai-compatible")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
NO_KEY = "EMPTY"  # what vLLM-style servers accept when they need no key
ROLES = ("system", "user", "assistant")
FATAL_STATUS = (401, 403, 404)


@dataclass
class ChatRequest:
    key: str                      # caller's id for this request (e.g. cache key); returned with the result
    messages: list[dict]          # [{"role": "system"|"user"|"assistant", "content": str}]
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    stop: list[str] | None = None


@dataclass
class ChatResult:
    key: str
    text: str | None
    input_tokens: int
    output_tokens: int
    latency_s: float              # the last attempt's time on the wire (backoff not included)
    cost_usd: float
    attempts: int
    error: str | None = None      # set when every retry failed; text is None then
    priced: bool = True           # False: no price known for the model, cost_usd is 0


@dataclass
class APIConfig:
    provider: str                 # "openai" | "anthropic" | "openai-compatible"
    model: str
    base_url: str | None = None   # required for openai-compatible; optional override for the others
    api_key_env: str | None = None  # env var NAME holding the key; defaults OPENAI_API_KEY / ANTHROPIC_API_KEY
    concurrency: int = 8
    timeout_s: float = 60.0       # per attempt, whole request
    max_retries: int = 4          # retries after the first attempt
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    prices: dict | None = None    # {"input_per_mtok": float, "output_per_mtok": float} overriding the table
    # The dataclass repr is safe: no field ever holds the key itself.


@dataclass(frozen=True)
class CostEstimate:
    """A dry-run cost; ``float(est)`` is the dollars."""

    usd: float
    priced: bool                  # False: the model has no known price, usd is 0
    n_requests: int
    input_tokens: int
    output_tokens: int
    note: str = ""

    def __float__(self) -> float:
        return self.usd


def estimate_cost(cfg: APIConfig, n_requests: int, avg_in_tokens: float, avg_out_tokens: float) -> CostEstimate:
    """The list-price cost of ``n_requests`` calls (retries not included)."""
    price = pricing.price_for(cfg.model, cfg.prices)
    n_in = int(round(n_requests * avg_in_tokens))
    n_out = int(round(n_requests * avg_out_tokens))
    note = "" if price else f"no price known for {cfg.model!r}; set prices: {{input_per_mtok, output_per_mtok}}"
    return CostEstimate(pricing.cost_usd(price, n_in, n_out), price is not None, n_requests, n_in, n_out, note)


# --- configuration and input checks -------------------------------------------------

def validate_config(cfg: APIConfig) -> None:
    where = f"api model {cfg.model!r}"
    if cfg.provider not in PROVIDERS:
        raise HarnessError(
            f"{where}: unknown provider {cfg.provider!r}{did_you_mean(cfg.provider, set(PROVIDERS))}; "
            f"known: {', '.join(PROVIDERS)}"
        )
    if cfg.provider == "openai-compatible" and not cfg.base_url:
        raise HarnessError(f"{where}: provider openai-compatible needs base_url (e.g. http://localhost:8000/v1)")
    if cfg.concurrency < 1 or cfg.max_retries < 0 or cfg.timeout_s <= 0:
        raise HarnessError(f"{where}: need concurrency >= 1, max_retries >= 0 and timeout_s > 0")
    if cfg.prices is not None:
        missing = {"input_per_mtok", "output_per_mtok"} - set(cfg.prices)
        if missing:
            raise HarnessError(f"{where}: prices lacks {', '.join(sorted(missing))}")


def key_env_name(cfg: APIConfig) -> str | None:
    return cfg.api_key_env or DEFAULT_KEY_ENV.get(cfg.provider)


def resolve_key(cfg: APIConfig) -> str:
    """The key from the environment; a HarnessError naming the variable if it is unset."""
    name = key_env_name(cfg)
    if name is None:  # a compatible server that needs no key
        return NO_KEY
    value = os.environ.get(name, "").strip()
    if not value:
        raise HarnessError(f"{cfg.provider} model {cfg.model!r}: set the API key in the environment variable {name}")
    return value


def check_requests(requests: list[ChatRequest]) -> None:
    problems = []
    for i, req in enumerate(requests):
        where = f"request {req.key!r}"
        if not req.messages:
            problems.append(Problem(where, None, "messages", "no messages"))
        for j, m in enumerate(req.messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                problems.append(Problem(where, None, f"messages[{j}].role", f"must be one of {', '.join(ROLES)}"))
            elif not isinstance(m.get("content"), str):
                problems.append(Problem(where, None, f"messages[{j}].content", "must be a string"))
    if problems:
        raise InputError(problems)


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret and secret != NO_KEY else text


# --- retry policy -----------------------------------------------------------------

def backoff_s(cfg: APIConfig, retry_index: int) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**i)]."""
    return random.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * (2 ** retry_index)))


def retry_after_s(headers: Any) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, ``Retry-After`` seconds or HTTP date)."""
    if headers is None:
        return None
    waits = []
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            waits.append(float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            waits.append(float(ra))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(ra)
                waits.append(when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    waits = [max(0.0, w) for w in waits]
    return max(waits) if waits else None


class _Malformed(Exception):
    """The body parsed, or not, but does not hold a reply."""


class _Withheld(Exception):
    """A well-formed answer with no reply in it: a content filter stopped it, or the provider
    sent no text at all. Stored as a failed generation (not an empty answer, which a criterion
    such as "mentions a competitor at most 5%" would pass on); not retried, since the same
    request is withheld again, and asked again by the next run."""


@dataclass
class _Failure:
    message: str
    retry: bool
    status: int | None = None
    wait_s: float | None = None   # server-requested wait


def _classify(exc: BaseException, sdk: Any, cfg: APIConfig) -> _Failure:
    if isinstance(exc, sdk.APIStatusError):
        code = exc.status_code
        retry = code in (408, 409, 429) or code >= 500
        msg = f"HTTP {code}: {getattr(exc, 'message', '') or exc}"
        return _Failure(msg, retry, code, retry_after_s(getattr(exc.response, "headers", None)))
    if isinstance(exc, (asyncio.TimeoutError, sdk.APITimeoutError)):
        return _Failure(f"timeout after {cfg.timeout_s:g}s", True)
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return _Failure(f"connection error: {cause or exc}", True)
    if isinstance(exc, _Malformed):
        return _Failure(f"malformed response: {exc}", True)
    if isinstance(exc, _Withheld):
        return _Failure(f"no reply: {exc}", False)
    raise exc  # a bug, not a provider fault: let it surface


def _fatal(cfg: APIConfig, failure: _Failure, key: str) -> HarnessError:
    env = key_env_name(cfg) or f"(none; sent {NO_KEY!r})"
    target = cfg.base_url or f"the {cfg.provider} API"
    text = {
        401: f"{target} rejected the API key in ${env} (401 Unauthorized); check that variable",
        403: f"{target} refused model {cfg.model!r} for the key in ${env} (403 Forbidden)",
        404: f"{target} has no model {cfg.model!r} or no such endpoint (404 Not Found); check model and base_url",
    }[failure.status or 0]
    return HarnessError(redact(f"{cfg.provider}: {text}", key))


# --- one attempt per provider ---------------------------------------------------

@dataclass
class _Reply:
    text: str
    input_tokens: int
    output_tokens: int


def _scrubbed(messages: list[dict], scrub: Callable[[str], str] | None) -> list[dict]:
    if scrub is None:
        return [dict(m) for m in messages]
    return [{**m, "content": scrub(m["content"])} for m in messages]


async def _send_openai(client: Any, cfg: APIConfig, req: ChatRequest, messages: list[dict]) -> _Reply:
    params: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": req.temperature}
    # OpenAI's own API wants max_completion_tokens (reasoning models refuse max_tokens);
    # compatible servers generally know only max_tokens.
    params["max_completion_tokens" if cfg.provider == "openai" else "max_tokens"] = req.max_tokens
    if req.top_p is not None:
        params["top_p"] = req.top_p
    if req.stop:
        params["stop"] = list(req.stop)
    resp = await _parse(await client.chat.completions.with_raw_response.create(**params, timeout=cfg.timeout_s))
    choices = getattr(resp, "choices", None)
    if not choices or getattr(choices[0], "message", None) is None:
        raise _Malformed("no choices[0].message in the body")
    msg, finish = choices[0].message, getattr(choices[0], "finish_reason", None)
    refusal = getattr(msg, "refusal", None)
    if finish == "content_filter" and not refusal:  # cut short, or nothing: not the model's answer
        raise _Withheld("the provider's content filter stopped it (finish_reason content_filter)")
    if msg.content is None and not refusal:
        raise _Withheld(f"choices[0].message.content is null (finish_reason {finish})")
    text = msg.content if msg.content is not None else refusal  # a refusal is the model's answer
    if not isinstance(text, str):
        raise _Malformed("choices[0].message.content is not a string")
    usage = getattr(resp, "usage", None)
    return _Reply(text, _int(usage, "prompt_tokens"), _int(usage, "completion_tokens"))


async def _send_anthropic(client: Any, cfg: APIConfig, req: ChatRequest, messages: list[dict]) -> _Reply:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    params: dict[str, Any] = {"model": cfg.model, "messages": turns, "max_tokens": req.max_tokens}
    if system:
        params["system"] = system
    # Recent anthropic SDKs (and models) dropped sampling controls; send them only where
    # the installed SDK still takes them, rather than have every request refused.
    create = client.messages.create
    if _takes(create, "temperature"):
        params["temperature"] = req.temperature
    if req.top_p is not None and _takes(create, "top_p"):
        params["top_p"] = req.top_p
    if req.stop:
        params["stop_sequences"] = list(req.stop)
    resp = await _parse(await client.messages.with_raw_response.create(**params, timeout=cfg.timeout_s))
    blocks = getattr(resp, "content", None)
    if not isinstance(blocks, list):
        raise _Malformed("no content list in the body")
    texts = [b.text for b in blocks if getattr(b, "type", None) == "text" and isinstance(b.text, str)]
    if not texts:
        raise _Withheld(f"no text block in the reply (stop_reason {getattr(resp, 'stop_reason', None)})")
    usage = getattr(resp, "usage", None)
    return _Reply("".join(texts), _int(usage, "input_tokens"), _int(usage, "output_tokens"))


def _takes(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True


async def _parse(raw: Any) -> Any:
    """Parse a raw SDK response; any failure here is a malformed body, which is retried."""
    try:
        parsed = raw.parse()
        return await parsed if inspect.isawaitable(parsed) else parsed
    except Exception as exc:  # JSON, validation or body-read errors: all mean "no usable reply"
        raise _Malformed(f"{type(exc).__name__}: {exc}") from None


def _int(obj: Any, name: str) -> int:
    value = getattr(obj, name, None) if obj is not None else None
    return int(value) if isinstance(value, (int, float)) else 0


def _import_sdk(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise HarnessError(f"API models of this provider need the {name} package: pip install {name}") from None


def _client(cfg: APIConfig, key: str) -> tuple[Any, Any, Callable[..., Awaitable[_Reply]]]:
    if cfg.provider == "anthropic":
        sdk = _import_sdk("anthropic")
        kwargs = {"base_url": cfg.base_url} if cfg.base_url else {}
        client = sdk.AsyncAnthropic(api_key=key, max_retries=0, timeout=cfg.timeout_s, **kwargs)
        return sdk, client, _send_anthropic
    sdk = _import_sdk("openai")
    kwargs = {"base_url": cfg.base_url} if cfg.base_url else {}
    client = sdk.AsyncOpenAI(api_key=key, max_retries=0, timeout=cfg.timeout_s, **kwargs)
    return sdk, client, _send_openai


# --- the batch --------------------------------------------------------------------

@dataclass
class _Pause:
    """A shared "not before" time, set by a 429 that says how long to wait."""

    until: float = 0.0

    async def wait(self) -> None:
        delay = self.until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class _Batch:
    cfg: APIConfig
    key: str
    sdk: Any
    client: Any
    send: Callable[..., Awaitable[_Reply]]
    price: pricing.Price | None
    sem: asyncio.Semaphore
    pause: _Pause = field(default_factory=_Pause)


async def _chat_one(b: _Batch, req: ChatRequest, scrub: Callable[[str], str] | None) -> ChatResult:
    cfg = b.cfg
    messages = _scrubbed(req.messages, scrub)
    attempts, latency, error = 0, 0.0, "no attempt made"
    for attempt in range(1 + cfg.max_retries):
        await b.pause.wait()
        attempts = attempt + 1
        async with b.sem:  # held only while on the wire, not while backing off
            t0 = time.monotonic()
            try:
                reply = await asyncio.wait_for(b.send(b.client, cfg, req, messages), cfg.timeout_s)
            except Exception as exc:  # classified below; unknown kinds re-raise there
                latency = time.monotonic() - t0
                failure = _classify(exc, b.sdk, cfg)
            else:
                latency = time.monotonic() - t0
                cost = pricing.cost_usd(b.price, reply.input_tokens, reply.output_tokens)
                return ChatResult(req.key, reply.text, reply.input_tokens, reply.output_tokens,
                                  latency, cost, attempts, None, b.price is not None)
        if failure.status in FATAL_STATUS:
            raise _fatal(cfg, failure, b.key)
        error = redact(failure.message, b.key)
        if not failure.retry or attempt == cfg.max_retries:
            break
        wait = backoff_s(cfg, attempt)
        if failure.wait_s is not None:
            wait = max(wait, failure.wait_s)
            if failure.status == 429:
                b.pause.until = max(b.pause.until, time.monotonic() + failure.wait_s)
        log.info("%s: attempt %d failed (%s); retrying in %.2fs", req.key, attempts, error, wait)
        await asyncio.sleep(wait)
    log.warning("%s: gave up after %d attempt(s): %s", req.key, attempts, error)
    return ChatResult(req.key, None, 0, 0, latency, 0.0, attempts, error, b.price is not None)


async def achat_many(
    cfg: APIConfig,
    requests: list[ChatRequest],
    on_result: Callable[[ChatResult], None] | None = None,
    scrub: Callable[[str], str] | None = None,
) -> list[ChatResult]:
    """One result per request, in order; ``on_result`` sees each as it arrives.

    ``scrub`` is applied to every message's content before it is sent.
    """
    validate_config(cfg)
    check_requests(requests)
    key = resolve_key(cfg)  # before any request: a missing key fails fast
    if not requests:
        return []
    sdk, client, send = _client(cfg, key)
    batch = _Batch(cfg, key, sdk, client, send, pricing.price_for(cfg.model, cfg.prices),
                   asyncio.Semaphore(cfg.concurrency))

    async def one(req: ChatRequest) -> ChatResult:
        result = await _chat_one(batch, req, scrub)
        if on_result is not None:
            on_result(result)
        return result

    tasks = [asyncio.create_task(one(r)) for r in requests]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:  # first failure in request order: a fatal status or on_result raising
            if t in done and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    return [t.result() for t in tasks]


def chat_many(
    cfg: APIConfig,
    requests: list[ChatRequest],
    on_result: Callable[[ChatResult], None] | None = None,
    scrub: Callable[[str], str] | None = None,
) -> list[ChatResult]:
    """Synchronous ``achat_many``. Inside a running event loop it runs in a worker thread
    (``on_result`` is then called from that thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(achat_many(cfg, requests, on_result, scrub))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, achat_many(cfg, requests, on_result, scrub)).result()
