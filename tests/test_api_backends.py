"""The API backends with the real openai/anthropic SDKs against a fault-injecting local server."""
from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback

import pytest

from harness.backends import pricing
from harness.backends.api import (
    APIConfig,
    ChatRequest,
    backoff_s,
    chat_many,
    estimate_cost,
    retry_after_s,
)
from harness.errors import HarnessError, InputError
from tests.fakeapi import FakeAPI, always, by_prompt, echo_key, fake_api  # noqa: F401 (fixture)

KEY = "sk-test-QZX9-distinctive-7731"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def cfg_for(provider: str, srv: FakeAPI, **kw) -> APIConfig:
    url = srv.anthropic_url if provider == "anthropic" else srv.openai_url
    model = "claude-3-5-haiku" if provider == "anthropic" else "gpt-4o-mini"
    base = dict(concurrency=4, timeout_s=2.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05)
    return APIConfig(provider, kw.pop("model", model), base_url=url, **{**base, **kw})


def req(tag: str, system: str | None = None) -> ChatRequest:
    msgs = [{"role": "system", "content": system}] if system else []
    return ChatRequest(key=f"k-{tag}", messages=msgs + [{"role": "user", "content": f"question <{tag}>"}])


def sent_key(call) -> str:
    return call.headers.get("x-api-key") or call.headers.get("authorization", "").removeprefix("Bearer ")


def gap_after(calls, i: int) -> float:
    """Server-side time from the end of attempt i to the start of attempt i+1."""
    return calls[i + 1].t_start - calls[i].t_end


# The script: per prompt, the faults its first attempts get (then normal replies).
SCRIPT = {
    "<r429>": ["429 retry-after=1"],
    "<r429ms>": ["429 retry-after-ms=300"],
    "<r500>": ["500", "503"],
    "<slow>": ["sleep=3"],              # past the 0.5 s client timeout
    "<bad-json>": ["malformed"],
    "<no-fields>": ["missing", "missing"],
    "<drop>": ["drop"],
    "<mixed>": ["502", "malformed", "429"],
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_faulty_batch_completes_within_retry_budget(provider):
    tags = list(s.strip("<>") for s in SCRIPT) + [f"ok{i}" for i in range(6)]
    seen = []
    with FakeAPI(policy=by_prompt(SCRIPT), responder=lambda m: "reply to " + m[-1]["content"]) as srv:
        cfg = cfg_for(provider, srv, timeout_s=0.5)
        results = chat_many(cfg, [req(t) for t in tags], on_result=seen.append)

    # every result present exactly once, in request order, and via on_result exactly once
    assert [r.key for r in results] == [f"k-{t}" for t in tags]
    assert sorted(r.key for r in seen) == sorted(r.key for r in results)
    for r, t in zip(results, tags):
        assert r.error is None, r
        assert r.text == f"reply to question <{t}>"
        assert r.input_tokens > 0 and r.output_tokens > 0

    # the server saw exactly 1 + (scripted faults) requests per prompt, never beyond the budget
    for t in tags:
        calls = srv.calls_for(f"<{t}>")
        assert len(calls) == 1 + len(SCRIPT.get(f"<{t}>", [])) <= 1 + cfg.max_retries
        assert [c.fault for c in calls][-1] == "ok"
        assert results[tags.index(t)].attempts == len(calls)

    # Retry-After honoured (seconds and milliseconds)
    assert gap_after(srv.calls_for("<r429>"), 0) >= 1.0
    assert gap_after(srv.calls_for("<r429ms>"), 0) >= 0.3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_http_date_is_honoured(provider):
    with FakeAPI(plan=["429 retry-after-date=2"]) as srv:
        [r] = chat_many(cfg_for(provider, srv), [req("d")])
    assert r.error is None and r.attempts == 2
    # an HTTP date has 1 s resolution: the wait is between 1 and 2 s
    assert gap_after(srv.calls, 0) >= 1.0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["500", "malformed", "429"])
def test_always_failing_request_stops_after_exact_budget(provider, fault):
    with FakeAPI(policy=always(fault)) as srv:
        cfg = cfg_for(provider, srv, max_retries=2)
        [r] = chat_many(cfg, [req("doomed")])
    assert r.text is None and r.error
    assert r.attempts == 3 == len(srv.calls)
    assert r.cost_usd == 0.0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_withheld_reply_is_a_failure_not_an_empty_answer(provider):
    """A content filter (OpenAI: content null, finish_reason content_filter; Anthropic: no text
    block): a failed request, not retried, never the empty text that "mentions a competitor at
    most 5%" would pass on. A refusal is the model's answer and stays one."""
    with FakeAPI(policy=by_prompt({"<filtered>": ["withheld"]})) as srv:
        filtered, fine = chat_many(cfg_for(provider, srv), [req("filtered"), req("fine")])
    assert filtered.text is None and "no reply" in filtered.error and filtered.attempts == 1
    assert ("content_filter" if provider != "anthropic" else "stop_reason refusal") in filtered.error
    assert fine.error is None and fine.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_401_is_not_retried_and_names_the_variable(provider):
    with FakeAPI(policy=always(echo_key(401))) as srv:
        with pytest.raises(HarnessError) as info:
            chat_many(cfg_for(provider, srv, concurrency=1), [req("a")])
    assert len(srv.calls) == 1
    var = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
    assert var in str(info.value)
    text = str(info.value) + repr(info.value) + "".join(traceback.format_exception(info.value))
    assert KEY not in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_400_fails_that_request_only_without_retry(provider):
    with FakeAPI(policy=by_prompt({"<bad>": ["400"]})) as srv:
        results = chat_many(cfg_for(provider, srv), [req("bad"), req("good")])
    bad, good = results
    assert bad.error and "400" in bad.error and bad.attempts == 1
    assert len(srv.calls_for("<bad>")) == 1
    assert good.error is None and good.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_key_never_leaks_but_reaches_the_server(provider, caplog):
    caplog.set_level(logging.DEBUG)
    script = {"<echo>": [echo_key(500)] * 5, "<fine>": [echo_key(503)]}
    with FakeAPI(policy=by_prompt(script)) as srv:
        cfg = cfg_for(provider, srv, max_retries=2)
        results = chat_many(cfg, [req("echo"), req("fine")])
    assert all(sent_key(c) == KEY for c in srv.calls)   # the server did get it, in a header
    assert results[0].error and "***" in results[0].error  # its echo was redacted
    assert results[1].error is None
    for r in results:
        assert KEY not in repr(r)
    assert KEY not in repr(cfg)
    assert KEY not in caplog.text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_key_fails_before_any_request(provider, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with FakeAPI() as srv:
        with pytest.raises(HarnessError, match="ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"):
            chat_many(cfg_for(provider, srv), [req("a")])
        with pytest.raises(HarnessError, match="MY_KEY_VAR"):
            chat_many(cfg_for(provider, srv, api_key_env="MY_KEY_VAR"), [req("a")])
    assert srv.calls == []


def test_openai_compatible_needs_base_url_and_sends_empty_key():
    with pytest.raises(HarnessError, match="base_url"):
        chat_many(APIConfig("openai-compatible", "local-model"), [req("a")])
    with pytest.raises(HarnessError, match="did you mean 'openai'"):
        chat_many(APIConfig("opnai", "gpt-4o"), [req("a")])
    with FakeAPI() as srv:
        cfg = APIConfig("openai-compatible", "my-vllm-model", base_url=srv.openai_url, backoff_base_s=0.01)
        [r] = chat_many(cfg, [req("a")])
    assert r.error is None and r.text == "echo: question <a>"
    assert sent_key(srv.calls[0]) == "EMPTY"
    assert srv.calls[0].body["max_tokens"] == 256  # compatible servers get max_tokens
    assert r.priced is False and r.cost_usd == 0.0


def test_bad_messages_are_input_errors():
    with FakeAPI() as srv:
        bad = ChatRequest("x", [{"role": "robot", "content": "hi"}, {"role": "user", "content": 3}])
        with pytest.raises(InputError) as info:
            chat_many(cfg_for("openai", srv), [bad])
    fields = [p.field for p in info.value.problems]
    assert fields == ["messages[0].role", "messages[1].content"]
    assert srv.calls == []


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_scrub_runs_before_anything_leaves(provider):
    planted = "jane.doe@example.com"
    request = ChatRequest("s", [
        {"role": "system", "content": f"Escalate to {planted}."},
        {"role": "user", "content": f"Hi, I am {planted}, please help"},
    ])
    with FakeAPI() as srv:
        [r] = chat_many(cfg_for(provider, srv), [request], scrub=lambda s: EMAIL.sub("[EMAIL]", s))
    raw = repr(srv.calls[0].body)
    assert planted not in raw
    assert raw.count("[EMAIL]") == 2
    assert r.error is None
    assert request.messages[1]["content"].endswith("please help") and planted in request.messages[1]["content"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_concurrency_is_bounded(provider):
    with FakeAPI(delay_s=0.05) as srv:
        results = chat_many(cfg_for(provider, srv, concurrency=4), [req(f"c{i}") for i in range(24)])
    assert all(r.error is None for r in results)
    assert 2 <= srv.max_in_flight <= 4


def test_on_result_sees_results_as_they_arrive():
    order = []
    with FakeAPI(policy=by_prompt({"<late>": ["sleep=0.4"]})) as srv:
        cfg = cfg_for("openai", srv, timeout_s=3.0)
        results = chat_many(cfg, [req("late"), req("early")], on_result=lambda r: order.append(r.key))
    assert [r.key for r in results] == ["k-late", "k-early"]
    assert order == ["k-early", "k-late"]


def test_chat_many_works_inside_a_running_event_loop():
    async def caller():
        return chat_many(cfg_for("openai", srv), [req("loop")])

    with FakeAPI() as srv:
        [r] = asyncio.run(caller())
    assert r.text == "echo: question <loop>"


def test_cost_follows_usage_and_price_table():
    with FakeAPI() as srv:
        [r] = chat_many(cfg_for("openai", srv, model="gpt-4o-2024-08-06"), [req("p")])
        [o] = chat_many(cfg_for("openai", srv, prices={"input_per_mtok": 1e6, "output_per_mtok": 0}), [req("p")])
    in_price, out_price = pricing.PRICES["gpt-4o"]
    assert r.cost_usd == pytest.approx((r.input_tokens * in_price + r.output_tokens * out_price) / 1e6)
    assert r.priced and r.cost_usd > 0
    assert o.cost_usd == pytest.approx(o.input_tokens)  # $1 per input token under the override


def test_price_lookup_matches_only_snapshots():
    assert pricing.lookup("claude-3-5-haiku-20241022") == pricing.lookup("claude-3-5-haiku")
    assert pricing.lookup("gpt-4o-mini") != pricing.lookup("gpt-4o")
    assert pricing.lookup("gpt-4.1-nano-experimental") is None
    assert pricing.lookup("openai/gpt-4.1") == pricing.lookup("gpt-4.1")


def test_estimate_cost():
    est = estimate_cost(APIConfig("openai", "gpt-4o-mini"), 1000, 500, 100)
    inp, out = pricing.PRICES["gpt-4o-mini"]
    assert est.priced and float(est) == pytest.approx(1000 * (500 * inp + 100 * out) / 1e6)
    unknown = estimate_cost(APIConfig("openai", "mystery-model"), 10, 10, 10)
    assert not unknown.priced and unknown.usd == 0 and "mystery-model" in unknown.note


def test_retry_after_parsing():
    from email.utils import formatdate

    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "1", "retry-after-ms": "1500"}) == 1.5  # the longer wins
    ahead = retry_after_s({"retry-after": formatdate(time.time() + 5, usegmt=True)})
    assert 3.9 <= ahead <= 5.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_backoff_is_capped_full_jitter():
    cfg = APIConfig("openai", "gpt-4o", backoff_base_s=0.5, backoff_max_s=4.0)
    for i in range(8):
        samples = [backoff_s(cfg, i) for _ in range(200)]
        cap = min(4.0, 0.5 * 2**i)
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > 0.5 * cap  # spread over the range, not a constant


def test_fake_api_fixture_is_scriptable(fake_api):
    fake_api.responder = lambda msgs: '{"score": 5}'
    fake_api.plan = ["503"]
    cfg = cfg_for("anthropic", fake_api)
    [r] = chat_many(cfg, [req("fx", system="rubric")])
    assert r.text == '{"score": 5}' and r.attempts == 2
    assert [c.fault for c in fake_api.calls] == ["503", "ok"]
    assert fake_api.calls[0].messages[0] == {"role": "system", "content": "rubric"}


def test_api_module_imports_no_sdk_at_import_time():
    import subprocess
    import sys

    code = ("import sys, harness.backends.api, harness.backends.pricing; "
            "print(any(m in sys.modules for m in ('openai', 'anthropic', 'torch', 'duckdb')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
