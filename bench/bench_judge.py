"""Judge throughput: ``chat_many`` with bounded concurrency vs a plain sequential loop.

200 pointwise judge-style requests go to the local fake API server (tests/fakeapi.py)
with 200 ms injected latency per call. The sequential baseline is what a user would write:
a loop over the synchronous ``openai.OpenAI`` client. To keep the bench short it is timed
on a subset and scaled linearly (each call costs the same fixed latency), which the output
states. Reruns making zero repeated calls is the runner's cache, not measured here.

    python bench/bench_judge.py   # prints one JSON line
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.backends.api import APIConfig, ChatRequest, chat_many  # noqa: E402
from tests.fakeapi import FakeAPI  # noqa: E402

N_REQUESTS = 200
N_SEQUENTIAL = 25
CONCURRENCY = 32
LATENCY_S = 0.2
KEY_ENV = "HARNESS_BENCH_FAKE_KEY"  # a fake key for the fake server; no real key is read
RUBRIC = "You are a strict grader. Score the reply's tone from 1 to 5. Answer as JSON: {\"score\": n}."


def judge_messages(i: int) -> list[dict]:
    return [
        {"role": "system", "content": RUBRIC},
        {"role": "user", "content": f"<reply id={i}>Thanks for waiting; your refund #{i} is on its way.</reply>"},
    ]


def responder(messages: list[dict]) -> str:
    return json.dumps({"score": 1 + len(messages[-1]["content"]) % 5})


def run() -> list[dict]:
    os.environ.setdefault(KEY_ENV, "sk-bench-fake")
    import openai

    with FakeAPI(responder=responder, delay_s=LATENCY_S) as srv:
        cfg = APIConfig("openai", "gpt-4o-mini", base_url=srv.openai_url, api_key_env=KEY_ENV,
                        concurrency=CONCURRENCY, timeout_s=10.0)
        requests = [ChatRequest(f"j{i}", judge_messages(i), max_tokens=16) for i in range(N_REQUESTS)]
        t0 = time.perf_counter()
        results = chat_many(cfg, requests)
        harness_s = time.perf_counter() - t0
        ok = sum(1 for r in results if r.error is None and "score" in json.loads(r.text or "{}"))
        harness_calls = len(srv.calls)

        client = openai.OpenAI(api_key=os.environ[KEY_ENV], base_url=srv.openai_url)
        t0 = time.perf_counter()
        for i in range(N_SEQUENTIAL):
            client.chat.completions.create(model=cfg.model, messages=judge_messages(i), max_tokens=16, temperature=0)
        seq_measured_s = time.perf_counter() - t0
        client.close()

    seq_s = seq_measured_s * N_REQUESTS / N_SEQUENTIAL
    return [{
        "bench": "judge_throughput",
        "ratio": round(seq_s / harness_s, 2),
        "target": 10,
        "higher_is_better": True,
        "n_requests": N_REQUESTS,
        "latency_ms": int(LATENCY_S * 1000),
        "concurrency": CONCURRENCY,
        "harness_s": round(harness_s, 3),
        "harness_ok": ok,
        "harness_server_calls": harness_calls,
        "sequential_s": round(seq_s, 3),
        "sequential_measured_calls": N_SEQUENTIAL,
        "sequential_measured_s": round(seq_measured_s, 3),
        "note": f"sequential time measured on {N_SEQUENTIAL} calls and scaled to {N_REQUESTS}; "
                "zero repeated calls on rerun comes from the runner's cache (not measured here)",
    }]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
