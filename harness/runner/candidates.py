"""Candidates to outputs: local generation, adapter training, API models, output files."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.cache import content_key, prediction_key
from harness.data.formats import Example
from harness.errors import HarnessError, InputError, Problem
from harness.goals import Candidate
from harness.runner.context import FLUSH_EVERY, TRAIN_METHOD, Outputs, Run


# --------------------------------------------------------------------------- candidates


def _flusher(run: Run, cand: str, model_id: str, keys: list[str], examples: Sequence[Example]):
    """Collect (index, row) results and write them to the store every few results."""
    buf: list[tuple[int, dict[str, Any]]] = []

    def add(i: int, row: dict[str, Any]) -> None:
        buf.append((i, row))
        if len(buf) >= FLUSH_EVERY:
            flush()

    def flush() -> None:
        if not buf:
            return
        rows = [dict(r, cache_key=keys[i], model_id=model_id) for i, r in buf]
        links = [(run.run_id, cand, examples[i].id, keys[i]) for i, _ in buf]
        run.store.put_predictions(rows, links)
        buf.clear()

    return add, flush


def local_prediction_keys(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]],
                          adapter: str | Path | None = None) -> tuple[str, list[str]]:
    """(model id, one cache key per prompt) of a local candidate, from file hashes only."""
    from harness.backends.local import local_model_id

    model_id = local_model_id(cand.model or run.goal.model, adapter)
    decoding = run.decoding().to_dict()
    return model_id, [prediction_key(model_id, p, decoding) for p in prompts]


def generate_local(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]],
                   adapter: str | None = None) -> Outputs:
    spec = cand.model or run.goal.model
    params = run.decoding()
    model_id, keys = local_prediction_keys(run, cand, prompts, adapter)  # the model loads only if work is left

    def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
        model = run.local_model(spec, adapter)
        model.generate([prompts[i] for i in todo], params, progress=run.progress,
                       on_result=lambda j, g: on_result(todo[j], {
                           "output": g.text, "prompt_tokens": g.prompt_tokens, "output_tokens": g.output_tokens,
                           "latency_s": g.latency_s, "cost_usd": 0.0, "attempts": 1}))

    return _generate_cached(run, cand, prompts, keys, model_id, produce)


def _generate_cached(run: Run, cand: Candidate, prompts, keys: list[str], model_id: str,
                     produce: Callable[[list[int], Callable[[int, dict], None]], Any]) -> Outputs:
    test = run.prepared.test
    stored = run.store.get_predictions(keys)
    todo = [i for i, k in enumerate(keys) if k not in stored]
    # Link the reused predictions to this run first (cheap, one transaction).
    reused_links = [(run.run_id, cand.name, test[i].id, keys[i]) for i, k in enumerate(keys) if k in stored]
    if reused_links:
        run.store.put_predictions([], reused_links)
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    if todo:
        run.say(f"  {cand.name}: generating {len(todo)} of {len(keys)} ({len(keys) - len(todo)} stored)")
        add, flush = _flusher(run, cand.name, model_id, keys, test)

        def on_result(i: int, row: dict[str, Any]) -> None:
            results[i] = row
            add(i, row)

        try:
            produce(todo, on_result)
        finally:
            flush()
    elif keys:
        run.say(f"  {cand.name}: all {len(keys)} predictions stored, nothing to generate")
    gen_seconds = time.perf_counter() - t0
    texts, cost = [], 0.0
    for i, k in enumerate(keys):
        row = results.get(i) or stored.get(k)
        if row is None:
            raise HarnessError(f"candidate {cand.name!r}: no output for test example {test[i].id}")
        texts.append(row["output"] or "")
        cost += float(row.get("cost_usd") or 0.0)
    run.counts["generated"] += len(todo)
    run.counts["reused"] += len(keys) - len(todo)
    return Outputs(cand.name, texts, len(todo), len(keys) - len(todo), cost, gen_seconds)


def train_params(cand: Candidate):
    from pydantic import ValidationError

    from harness.train.methods import TrainParams
    from harness.yamlfile import validation_problems

    opts = {k: v for k, v in cand.options.items() if k not in ("sweep_of", "shots", "style", "system")}
    try:
        return TrainParams(method=TRAIN_METHOD[cand.kind], **opts)
    except ValidationError as exc:  # name the candidate and the option, with did-you-mean
        raise InputError(validation_problems(exc, TrainParams, f"candidate {cand.name}", {})) from None


def adapter_dir(run: Run, cand: Candidate, params: Any, base_hash: str) -> Path:
    from harness.train.sft import TRAINER_VERSION

    key = content_key("adapter/v1", TRAINER_VERSION, base_hash, params.model_dump(),
                      sorted(e.id for e in run.prepared.train), sorted(e.id for e in run.prepared.validation))
    return run.work_dir / "adapters" / run.goal.goal / f"{cand.name}-{key[:12]}"


def planned_adapter(run: Run, cand: Candidate, params: Any = None) -> tuple[Any, Any, Path]:
    """(training parameters, resolved base model, the adapter's folder) of a training
    candidate; the folder holds a finished adapter when ``harness_adapter.json`` is there."""
    from harness.backends.modelhub import model_hash, resolve_model

    params = params or train_params(cand)
    base = resolve_model(cand.model or run.goal.model)
    return params, base, adapter_dir(run, cand, params, model_hash(base.path))


def train_candidate(run: Run, cand: Candidate) -> dict[str, Any]:
    """Train (or reuse) the candidate's adapter; returns what the store keeps about it."""
    from harness.train.methods import peft_config_for

    params = train_params(cand)
    peft_config_for(params)  # qlora without CUDA stops here, before anything is loaded
    _, base, out = planned_adapter(run, cand, params)
    meta_file = out / "harness_adapter.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        run.counts["adapters_reused"] += 1
        run.say(f"  {cand.name}: adapter already trained ({out}), reusing it")
        curves = meta.get("curves") or []
    else:
        from harness.train.sft import train_candidate as train

        run.say(f"  {cand.name}: training {params.method} on {len(run.prepared.train)} examples")
        points: list[tuple[int, str, float]] = []

        def on_curve(step: int, split: str, loss: float) -> None:
            points.append((step, split, loss))

        result = train(str(base.path), run.prepared.train, run.prepared.validation, params, out,
                       on_curve=on_curve, progress=run.progress,
                       meta={"test_hash": run.prepared.test_hash, "goal": run.goal.goal, "candidate": cand.name})
        run.counts["trained"] += 1
        meta = json.loads(meta_file.read_text())
        curves = [list(p) for p in (result.curves or points)]
        meta["curves"] = curves
        meta_file.write_text(json.dumps(meta, indent=2, default=str))
    run.store.put_curve(run.run_id, cand.name, [tuple(p) for p in curves])
    return {
        "adapter_path": str(out), "adapter_hash": meta.get("adapter_hash"),
        "train_seconds": meta.get("train_seconds"), "tokens_seen": meta.get("tokens_seen"),
        "overfitting": meta.get("overfitting"), "best_step": meta.get("best_step"),
        "stopped_early": meta.get("stopped_early"),
    }


def api_requests(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]]) -> tuple[Any, list, str, list[str]]:
    """(client config, messages as sent, model id, cache keys) of an API candidate."""
    from harness.backends.api import APIConfig

    opts = dict(cand.options)
    provider = opts.pop("provider")
    model = cand.model or opts.pop("model_id", None)
    if not model:
        raise InputError(Problem(run.goal.source, None, f"candidates.{cand.name}.model", "api candidates need a model"))
    prices = run.goal.prices.get(model) or opts.get("prices")
    cfg_fields = {k: opts[k] for k in ("base_url", "api_key_env", "concurrency", "timeout_s", "max_retries",
                                       "backoff_base_s", "backoff_max_s") if k in opts}
    cfg = APIConfig(provider=provider, model=model, prices=prices, **cfg_fields)
    d = run.goal.decoding
    scrub = None
    if run.goal.data.scrub_pii:
        from harness.data.pii import scrub_text

        scrub = lambda text: scrub_text(text)[0]  # noqa: E731
    # The key covers the prompt as sent (after scrubbing) and the decoding.
    sent = [[{**m, "content": scrub(m["content"]) if scrub else m["content"]} for m in p] for p in prompts]
    decoding = {"max_tokens": d.max_new_tokens, "temperature": d.temperature, "top_p": d.top_p}
    model_id = f"api:{provider}:{model}:{cfg.base_url or ''}"
    return cfg, sent, model_id, [prediction_key(model_id, p, decoding) for p in sent]


def generate_api(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]]) -> Outputs:
    from harness.backends.api import ChatRequest, chat_many

    cfg, sent, model_id, keys = api_requests(run, cand, prompts)
    d = run.goal.decoding

    def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
        reqs = [ChatRequest(key=str(i), messages=sent[i], max_tokens=d.max_new_tokens, temperature=d.temperature,
                            top_p=d.top_p if d.top_p < 1 else None) for i in todo]
        failures: list[str] = []

        def done(res) -> None:
            if res.error is not None:
                failures.append(res.error)
                return
            on_result(int(res.key), {"output": res.text, "prompt_tokens": res.input_tokens,
                                     "output_tokens": res.output_tokens, "latency_s": res.latency_s,
                                     "cost_usd": res.cost_usd, "attempts": res.attempts})

        chat_many(cfg, reqs, on_result=done)
        if failures:
            raise HarnessError(f"candidate {cand.name!r}: {len(failures)} request(s) failed after retries "
                               f"(stored results are kept; rerun to retry): {failures[0]}")

    return _generate_cached(run, cand, prompts, keys, model_id, produce)


def read_file_outputs(run: Run, cand: Candidate) -> Outputs:
    """``kind: file``: outputs someone already has, matched by example id or input text."""
    from harness.goals import resolve_data_path

    path = resolve_data_path(str(cand.options["path"]), run.goal.root)
    if not path.exists():
        raise InputError(Problem(run.goal.source, None, f"candidates.{cand.name}.path", f"{path} not found"))
    by_id, by_input = {}, {}
    for ex in run.prepared.examples:
        by_id[ex.id] = ex
        by_input.setdefault(ex.input_text.strip(), ex)
    found: dict[str, str] = {}
    problems: list[Problem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), lineno, None, f"malformed JSON: {exc.msg}"))
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("output"), str):
                problems.append(Problem(str(path), lineno, "output", "each row needs a string 'output'"))
                continue
            ex = by_id.get(str(rec.get("id", ""))) or by_input.get(str(rec.get("input", "")).strip())
            if ex is None:
                problems.append(Problem(str(path), lineno, "id" if "id" in rec else "input",
                                        "matches no example of the goal's data"))
                continue
            found[ex.id] = rec["output"]
    missing = [ex for ex in run.prepared.test if ex.id not in found]
    if missing:
        problems.extend(Problem(str(path), None, None, f"no output for test example {ex.id} "
                                                        f"(data line {ex.line}: {ex.input_text[:50]!r})")
                        for ex in missing[:20])
        if len(missing) > 20:
            problems.append(Problem(str(path), None, None, f"... and {len(missing) - 20} more test examples"))
    if problems:
        raise InputError(problems)
    texts = [found[ex.id] for ex in run.prepared.test]
    model_id = f"file:{content_key(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)}"
    keys = [content_key("file-output", model_id, ex.id, t) for ex, t in zip(run.prepared.test, texts)]
    run.store.put_predictions([{"cache_key": k, "model_id": model_id, "output": t, "cost_usd": 0.0}
                               for k, t in zip(keys, texts)],
                              [(run.run_id, cand.name, ex.id, k) for ex, k in zip(run.prepared.test, keys)])
    return Outputs(cand.name, texts, 0, len(texts))


def produce_outputs(run: Run, cand: Candidate) -> Outputs:
    if cand.kind == "file":
        return read_file_outputs(run, cand)
    prompts = run.prompts_for(cand)
    if cand.kind == "prompt":
        return generate_local(run, cand, prompts)
    if cand.kind == "api":
        return generate_api(run, cand, prompts)
    if cand.kind in TRAIN_METHOD:
        info = train_candidate(run, cand)
        out = generate_local(run, cand, prompts, adapter=info["adapter_path"])
        out.train = info
        return out
    raise HarnessError(f"unknown candidate kind {cand.kind!r}")
