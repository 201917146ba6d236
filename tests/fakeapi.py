"""A fake OpenAI/Anthropic HTTP server with scriptable faults, for tests and benchmarks.

It is a real HTTP server on 127.0.0.1 (a free port) in a background thread, so the real
``openai`` and ``anthropic`` SDKs talk to it over real sockets. It speaks

* ``POST /v1/chat/completions`` -- OpenAI shape, with ``usage``;
* ``POST /v1/messages``         -- Anthropic shape, with ``usage``.

Usage::

    from tests.fakeapi import FakeAPI, fail_first, status

    with FakeAPI(responder=lambda msgs: '{"score": 4}',
                 policy=fail_first(status(429, retry_after=1))) as srv:
        cfg = APIConfig("openai", "gpt-4o-mini", base_url=srv.openai_url)
        ...
        srv.calls                 # every request: headers, body, times, attempt, fault
        srv.counts_by_prompt()    # {prompt_key: number of requests}
        srv.max_in_flight         # most requests the server was handling at once

What each request gets, first match wins:

1. ``plan``: a list of faults consumed in arrival order (one per request, any prompt);
2. ``policy(call) -> fault | None``: decides from the call (``call.attempt`` is how many
   earlier requests carried the same messages), e.g. ``fail_first(...)``, ``always(...)``,
   ``by_prompt({...})``;
3. otherwise a normal reply, whose text is ``responder(messages)``.

A fault is a ``Fault`` or a short string: ``"ok"``, ``"500"``, ``"429 retry-after=1"``,
``"429 retry-after-ms=300"``, ``"429 retry-after-date=2"`` (an HTTP date 2 s ahead),
``"sleep=2"`` (stall 2 s, then reply -- past a short client timeout), ``"malformed"``
(unparseable JSON with status 200), ``"missing"`` (valid JSON without the reply fields),
``"drop"`` (close the connection without answering); ``echo_key(code)`` is an error whose
message quotes the caller's key back (to test redaction). ``delay_s`` adds a fixed latency to
every request (benchmarks). The messages the responder sees are a list of
``{"role", "content"}`` with string contents; an Anthropic ``system`` comes first.

Also a pytest fixture, ``fake_api``: import it into a test module and it yields a running
``FakeAPI`` that the test configures by assigning ``plan``/``policy``/``responder``/``delay_s``.
"""
from __future__ import annotations

import email.utils
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Union

import pytest


@dataclass(frozen=True)
class Fault:
    """What the server does with one request instead of (or before) a normal reply."""

    name: str = "ok"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    sleep_s: float = 0.0          # stall before answering (a client with a shorter timeout gives up)
    malformed: bool = False       # status 200, body is not JSON
    missing: bool = False         # status 200, JSON without the reply fields
    withheld: bool = False        # status 200, a well-formed reply with no text (a content filter)
    drop: bool = False            # close the socket without any response
    retry_after_date_s: float | None = None  # Retry-After as an HTTP date this far ahead
    message: str | None = None    # error text; "{key}" becomes the key the request carried


FaultLike = Union[Fault, str]

OK = Fault()


def status(code: int, retry_after: float | None = None, retry_after_ms: float | None = None) -> Fault:
    """An error status, optionally with ``Retry-After`` (seconds) / ``retry-after-ms``."""
    headers = []
    if retry_after is not None:
        headers.append(("Retry-After", _num(retry_after)))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", _num(retry_after_ms)))
    return Fault(name=str(code), status=code, headers=tuple(headers))


def echo_key(code: int) -> Fault:
    """An error whose message quotes the caller's key back, as some real APIs do (partly)."""
    return Fault(name=f"{code} echo-key", status=code, message="bad key: {key}")


def sleep(seconds: float) -> Fault:
    return Fault(name=f"sleep={_num(seconds)}", sleep_s=seconds)


def parse_fault(spec: FaultLike) -> Fault:
    """Turn ``"429 retry-after=1"`` and friends into a ``Fault``."""
    if isinstance(spec, Fault):
        return spec
    words = spec.strip().lower().split()
    if not words:
        raise ValueError("empty fault spec")
    head, opts = words[0], dict(w.split("=", 1) for w in words[1:])
    if head == "ok":
        return OK
    if head == "malformed":
        return Fault(name="malformed", malformed=True)
    if head == "missing":
        return Fault(name="missing", missing=True)
    if head == "withheld":
        return Fault(name="withheld", withheld=True)
    if head == "drop":
        return Fault(name="drop", drop=True)
    if head.startswith("sleep="):
        return sleep(float(head.split("=", 1)[1]))
    if head.isdigit():
        base = status(
            int(head),
            retry_after=float(opts["retry-after"]) if "retry-after" in opts else None,
            retry_after_ms=float(opts["retry-after-ms"]) if "retry-after-ms" in opts else None,
        )
        date_s = float(opts["retry-after-date"]) if "retry-after-date" in opts else None
        return Fault(name=spec.strip(), status=base.status, headers=base.headers, retry_after_date_s=date_s)
    raise ValueError(f"unknown fault spec {spec!r}")


# --- policies: Call -> fault or None --------------------------------------------------

def always(fault: FaultLike) -> Callable[["Call"], Fault]:
    f = parse_fault(fault)
    return lambda call: f


def fail_first(fault: FaultLike, times: int = 1) -> Callable[["Call"], Fault | None]:
    """The first ``times`` attempts of every distinct prompt get ``fault``."""
    f = parse_fault(fault)
    return lambda call: f if call.attempt < times else None


def by_prompt(script: dict[str, list[FaultLike]]) -> Callable[["Call"], Fault | None]:
    """For a prompt containing a key, attempt *i* gets ``script[key][i]`` (then normal replies)."""
    parsed = {k: [parse_fault(f) for f in v] for k, v in script.items()}

    def policy(call: "Call") -> Fault | None:
        for needle, faults in parsed.items():
            if needle in call.prompt and call.attempt < len(faults):
                return faults[call.attempt]
        return None

    return policy


@dataclass
class Call:
    """One request the server received."""

    path: str
    headers: dict[str, str]        # lower-cased names
    body: Any                      # parsed JSON (None if it was not JSON)
    messages: list[dict]           # normalised {"role", "content": str}
    prompt: str                    # canonical JSON of ``messages``: the identity of a prompt
    attempt: int                   # earlier requests with the same prompt
    t_start: float                 # time.monotonic() when the request was read
    t_end: float = 0.0             # when the response was written (or dropped)
    fault: str = "ok"


def default_responder(messages: list[dict]) -> str:
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return f"echo: {last}"


class FakeAPI:
    """The server. Start with ``with FakeAPI(...) as srv`` or ``start()`` / ``stop()``."""

    def __init__(
        self,
        responder: Callable[[list[dict]], str] = default_responder,
        plan: list[FaultLike] | None = None,
        policy: Callable[[Call], FaultLike | None] | None = None,
        delay_s: float = 0.0,
    ):
        self.responder = responder
        self.plan: list[FaultLike] = list(plan or [])
        self.policy = policy
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> "FakeAPI":
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", 0), handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers stalled in a "sleep" fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeAPI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """base_url for the OpenAI SDK (it appends ``/chat/completions``)."""
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        """base_url for the Anthropic SDK (it appends ``/v1/messages``)."""
        return self.url

    # -- inspection --
    def counts_by_prompt(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in list(self.calls):
            counts[c.prompt] = counts.get(c.prompt, 0) + 1
        return counts

    def calls_for(self, needle: str) -> list[Call]:
        """Requests whose prompt contains ``needle``, in arrival order."""
        return [c for c in list(self.calls) if needle in c.prompt]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.max_in_flight = self.in_flight

    # -- used by the handler --
    def _admit(self, call: Call) -> Fault:
        with self._lock:
            call.attempt = sum(1 for c in self.calls if c.prompt == call.prompt)
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.plan:
                return parse_fault(self.plan.pop(0))
        chosen = self.policy(call) if self.policy else None
        return parse_fault(chosen) if chosen is not None else OK

    def _leave(self, call: Call) -> None:
        with self._lock:
            self.in_flight -= 1
            call.t_end = time.monotonic()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def _normalise(path: str, body: Any) -> list[dict]:
    if not isinstance(body, dict):
        return []
    msgs = [{"role": m.get("role", "?"), "content": _text(m.get("content"))} for m in body.get("messages") or []]
    if path.endswith("/messages") and body.get("system"):
        msgs.insert(0, {"role": "system", "content": _text(body["system"])})
    return msgs


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open dozens of connections at once


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAPI
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        t0 = time.monotonic()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        path = self.path.split("?")[0]
        messages = _normalise(path, body)
        call = Call(
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            messages=messages,
            prompt=json.dumps(messages, sort_keys=True),
            attempt=0,
            t_start=t0,
        )
        fake = self.fake
        fault = fake._admit(call)
        call.fault = fault.name
        try:
            if path not in ("/v1/chat/completions", "/v1/messages"):
                self._finish(call, 404, {}, json.dumps({"error": {"message": f"no route {path}"}}).encode())
                return
            wait = fake.delay_s + fault.sleep_s
            if wait and fake._stopping.wait(wait):
                self.close_connection = True
                fake._leave(call)
                return
            if fault.drop:
                self.close_connection = True
                fake._leave(call)
                return
            anthropic = path == "/v1/messages"
            headers = dict(fault.headers)
            if fault.retry_after_date_s is not None:
                headers["Retry-After"] = email.utils.formatdate(time.time() + fault.retry_after_date_s, usegmt=True)
            if fault.status != 200:
                payload = _error_body(anthropic, fault.status, _message(fault, call))
            elif fault.malformed:
                payload = b'{"id": "x", "choices": [{"message": '
            elif fault.missing:
                payload = json.dumps({"id": "x", "object": "nothing here"}).encode()
            elif fault.withheld:
                payload = json.dumps(_withheld(anthropic, body)).encode()
            else:
                text = fake.responder(messages)
                payload = json.dumps(_reply(anthropic, body, messages, text)).encode()
            self._finish(call, fault.status, headers, payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do

    def _finish(self, call: Call, code: int, headers: dict[str, str], payload: bytes) -> None:
        out = [f"HTTP/1.1 {code} {_reason(code)}", "Content-Type: application/json",
               f"Content-Length: {len(payload)}"]
        out += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(out) + "\r\n\r\n").encode() + payload
        # Leave before writing: once the client has the reply it may send its next request,
        # and that one must not be counted as overlapping this one.
        self.fake._leave(call)
        self.wfile.write(data)
        self.wfile.flush()


def _reason(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _message(fault: Fault, call: Call) -> str:
    if fault.message is None:
        return f"fake error {fault.status}"
    key = call.headers.get("x-api-key") or call.headers.get("authorization", "").removeprefix("Bearer ")
    return fault.message.replace("{key}", key)


def _error_body(anthropic: bool, code: int, msg: str) -> bytes:
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error"}.get(code, "api_error")
    if anthropic:
        return json.dumps({"type": "error", "error": {"type": kind, "message": msg}}).encode()
    return json.dumps({"error": {"message": msg, "type": kind, "code": None}}).encode()


def _reply(anthropic: bool, body: dict, messages: list[dict], text: str) -> dict:
    n_in = sum(_tokens(m["content"]) for m in messages)
    n_out = _tokens(text)
    model = body.get("model", "fake")
    if anthropic:
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }


def _withheld(anthropic: bool, body: dict) -> dict:
    """A reply the provider withheld: OpenAI's content filter (content null, finish_reason
    content_filter), Anthropic's refusal stop (no content blocks)."""
    if anthropic:
        return {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": [], "stop_reason": "refusal", "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 0}}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}}


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    """A running ``FakeAPI``; configure it by assigning its attributes in the test."""
    with FakeAPI() as srv:
        yield srv
