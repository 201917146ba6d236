"""Plans and executes a run: data → candidates → predictions → scores → verdicts.

This is where the pure core meets the backends and the store. Everything expensive is
keyed by content and looked up before it is done: predictions by (model+adapter hash,
prompt, decoding), adapters by (base model, method, hyperparameters, training data),
judgments by (judge, rubric hash, criterion, input, output, order). Results are written
as they arrive, in short transactions, so a killed run loses at most one batch and a rerun
redoes nothing already stored.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.cache import content_key, prediction_key
from harness.data.formats import Example
from harness.errors import HarnessError, InputError, Problem
from harness.goals import Candidate, Criterion, Goal
from harness.prompts import build_prompt, choose_shots

TRAIN_METHOD = {"lora": "lora", "qlora": "qlora", "prefix": "prefix", "prompt_tuning": "prompt", "full": "full"}
CLASSIFICATION_METRICS = ("accuracy", "f1_macro")
GENERATION_METRICS = ("rougeL", "bleu", "chrf")
LABEL_METRICS = {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"}
FLUSH_EVERY = 8
_API_OPTIONS = {"provider", "base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_base_s",
                "backoff_max_s", "prices", "shots", "system", "style"}
# Options each candidate kind takes besides name/kind/model (training kinds: TrainParams checks them).
CANDIDATE_OPTIONS: dict[str, set[str]] = {"prompt": {"style", "shots", "system", "sweep_of"},
                                          "api": _API_OPTIONS | {"sweep_of"}, "file": {"path"}}


# --------------------------------------------------------------------------- plan


@dataclass
class Step:
    candidate: str
    kind: str
    action: str        # train | generate | score | judge
    todo: int          # units of work not yet stored
    cached: int        # units already stored
    est_cost_usd: float = 0.0
    note: str = ""


@dataclass
class Outputs:
    """One candidate's outputs on the test split, in test order."""

    candidate: str
    texts: list[str]
    generated: int = 0
    reused: int = 0
    cost_usd: float = 0.0
    gen_seconds: float = 0.0
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    goal: str
    verdicts: dict[str, list[Any]]
    meets: dict[str, bool]
    best: str | None
    aggregates: dict[str, dict[str, dict[str, Any]]]
    counts: dict[str, int]
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if any(self.meets.values()) else 1


def is_classification(goal: Goal, examples: Sequence[Example]) -> bool:
    if goal.task != "auto":
        return goal.task == "classification"
    if any(e.format == "label" for e in examples):
        return True
    refs = {e.reference.strip() for e in examples}
    return 0 < len(refs) <= 20 and len(refs) < len(examples) / 4 and all(len(r.split()) <= 3 for r in refs)


def label_set(examples: Sequence[Example]) -> list[str]:
    return sorted({(e.label or e.reference).strip() for e in examples})


def metric_names(goal: Goal, classification: bool) -> list[str]:
    """Every metric the run reports: the criteria's, the goal's named metrics, task defaults."""
    names: list[str] = []
    for c in goal.success:
        names.append(c.metric)
    names.extend(m.name for m in goal.metrics)
    names.extend(CLASSIFICATION_METRICS if classification else GENERATION_METRICS)
    if goal.judge:
        names.extend(f"judge.{r}" for r in goal.judge.rubrics)
    return list(dict.fromkeys(names))


def validate_goal(goal: Goal, rubrics_dir: str | Path = "rubrics") -> None:
    """Checks that need the registries (metric names, rubrics, training methods): all at once."""
    from harness.judge.rubric import load_rubric
    from harness.metrics import METRICS, resolve_metric

    problems: list[Problem] = []
    file = goal.source or "<goal>"
    named = {m.name for m in goal.metrics}
    for i, m in enumerate(goal.metrics):
        try:
            resolve_metric(m.metric)
        except HarnessError as exc:
            problems.append(Problem(file, None, f"metrics[{i}].metric", str(exc)))
    for i, c in enumerate(goal.success):
        name = c.metric
        if name in named:
            continue
        if name.startswith(("judge.", "human.")):
            rubric = name.split(".")[1] if name.count(".") >= 1 else ""
            try:
                rb = load_rubric(rubric, _rubrics_dir(goal, rubrics_dir))
                if name.count(".") >= 2:
                    rb.criterion(name.split(".", 2)[2])
            except HarnessError as exc:
                problems.append(Problem(file, None, f"success[{i}].metric", str(exc)))
            if name.startswith("judge.") and not goal.judge:
                problems.append(Problem(file, None, f"success[{i}].metric",
                                        f"{name} needs a `judge:` section naming the judge model"))
            if name.startswith("human.") and not goal.human:
                problems.append(Problem(file, None, f"success[{i}].metric",
                                        f"{name} needs a `human:` section for the panel"))
            continue
        if name not in METRICS and ":" not in name:
            try:
                METRICS.get(name)
            except HarnessError as exc:
                problems.append(Problem(file, None, f"success[{i}].metric", str(exc)))
    from harness.registry import did_you_mean

    for i, cand in enumerate(goal.candidates):
        allowed = CANDIDATE_OPTIONS.get(cand.kind)
        for key in cand.options:
            if allowed is not None and key not in allowed:
                problems.append(Problem(file, goal.line_of("candidates", i, key), f"candidates[{i}].{key}",
                                        f"unknown option {key!r} for a {cand.kind} candidate"
                                        f"{did_you_mean(key, allowed)}; allowed: {', '.join(sorted(allowed - {'sweep_of'}))}"))
        if cand.kind in TRAIN_METHOD:
            try:
                train_params(cand)
            except InputError as exc:
                problems.extend(Problem(file, goal.line_of("candidates", i, *(p.field or "").split(".")[:1]),
                                        f"candidates[{i}].{p.field}", p.message) for p in exc.problems)
        if cand.kind == "api" and not cand.options.get("provider"):
            problems.append(Problem(file, None, f"candidates[{i}].provider",
                                    "api candidates need provider: openai | anthropic | openai-compatible"))
        if cand.kind == "file" and not cand.options.get("path"):
            problems.append(Problem(file, None, f"candidates[{i}].path", "file candidates need a path to outputs JSONL"))
    if problems:
        raise InputError(problems)


def _rubrics_dir(goal: Goal, default: str | Path) -> Path:
    d = Path(default)
    if d.exists() or not goal.root:
        return d
    alt = Path(goal.root).parent / "rubrics"
    return alt if alt.exists() else d


# --------------------------------------------------------------------------- context


class Run:
    """State of one ``harness run``: the goal, the store, the prepared data, loaded models."""

    def __init__(self, goal: Goal, store: Any, *, prepared: Any, run_id: str | None = None,
                 progress: bool = True, console: Any = None, work_dir: str | Path = ".harness",
                 rubrics_dir: str | Path = "rubrics"):
        self.goal = goal
        self.store = store
        self.prepared = prepared
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.progress = progress
        self.console = console
        self.work_dir = Path(work_dir)
        self.rubrics_dir = _rubrics_dir(goal, rubrics_dir)
        self._models: dict[tuple[str, str | None], Any] = {}
        self.counts = {"generated": 0, "reused": 0, "judged": 0, "judgments_reused": 0, "trained": 0,
                       "adapters_reused": 0}
        self.classification = is_classification(goal, prepared.examples)
        self.labels = label_set(prepared.train + prepared.test) if self.classification else []

    def say(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg, highlight=False)

    # ------------------------------------------------------------------ models

    def local_model(self, spec: str | None, adapter: str | None = None):
        key = (spec or "default", adapter)
        if key not in self._models:
            from harness.backends.local import LocalModel

            # Keep at most the base and one adapter model in memory.
            if len(self._models) >= 2:
                for k in list(self._models):
                    if k[1] is not None:
                        del self._models[k]
            self._models[key] = LocalModel(spec, adapter=adapter)
        return self._models[key]

    def decoding(self):
        from harness.backends.local import DecodingParams

        d = self.goal.decoding
        return DecodingParams(max_new_tokens=d.max_new_tokens, temperature=d.temperature, top_p=d.top_p,
                              repetition_penalty=d.repetition_penalty, seed=d.seed)

    # ------------------------------------------------------------------ prompts

    def prompts_for(self, cand: Candidate) -> list[list[dict[str, str]]]:
        opts = cand.options
        style = cand.style if cand.kind == "prompt" else ("few-shot" if int(opts.get("shots", 0) or 0) else
                                                           ("system" if opts.get("system") else "zero-shot"))
        system = opts.get("system") if isinstance(opts.get("system"), str) else self.goal.system_prompt
        shots = choose_shots(self.prepared.train, int(opts.get("shots", 5 if style == "few-shot" else 0) or 0),
                             seed=self.goal.data.split.seed) if style == "few-shot" else []
        return [build_prompt(ex, style, system=system, shots=shots) for ex in self.prepared.test]


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


def generate_local(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]],
                   adapter: str | None = None) -> Outputs:
    from harness.backends.local import local_model_id

    spec = cand.model or run.goal.model
    params = run.decoding()
    decoding = params.to_dict()
    model_id = local_model_id(spec, adapter)  # hashes only: the model loads only if work is left
    keys = [prediction_key(model_id, p, decoding) for p in prompts]

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
    key = content_key("adapter/v1", base_hash, params.model_dump(), sorted(e.id for e in run.prepared.train),
                      sorted(e.id for e in run.prepared.validation))
    return run.work_dir / "adapters" / run.goal.goal / f"{cand.name}-{key[:12]}"


def train_candidate(run: Run, cand: Candidate) -> dict[str, Any]:
    """Train (or reuse) the candidate's adapter; returns what the store keeps about it."""
    from harness.backends.modelhub import model_hash, resolve_model
    from harness.train.methods import peft_config_for

    params = train_params(cand)
    peft_config_for(params)  # qlora without CUDA stops here, before anything is loaded
    base = resolve_model(cand.model or run.goal.model)
    base_hash = model_hash(base.path)
    out = adapter_dir(run, cand, params, base_hash)
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


def generate_api(run: Run, cand: Candidate, prompts: list[list[dict[str, str]]]) -> Outputs:
    from harness.backends.api import APIConfig, ChatRequest, chat_many

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
    keys = [prediction_key(model_id, p, decoding) for p in sent]

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


# --------------------------------------------------------------------------- scoring


def metric_args(run: Run, name: str) -> tuple[str, dict[str, Any]]:
    """The registered metric and its arguments behind a metric name used in the goal."""
    spec = run.goal.metric_spec(name)
    base, args = (spec.metric, dict(spec.args)) if spec else (name, {})
    for c in run.goal.success:
        if c.metric == name and c.args:
            args = {**c.args, **args}
    if base in LABEL_METRICS and run.labels and "labels" not in args:
        args["labels"] = run.labels
    return base, args


def score_candidate(run: Run, outputs: Outputs, names: list[str]) -> dict[str, Any]:
    from harness.metrics import compute_metric

    results = {}
    for name in names:
        if name.startswith(("judge.", "human.")):
            continue
        base, args = metric_args(run, name)
        res = compute_metric(base, outputs.texts, run.prepared.test, **args)
        res.name = name
        res.extra["ids"] = [ex.id for ex in run.prepared.test]  # pairing is checked by example
        results[name] = res
    return results


def judge_candidates(run: Run, outputs: dict[str, Outputs]) -> dict[str, dict[str, Any]]:
    """``judge.<rubric>`` (and per criterion) MetricResults per candidate, judgments cached."""
    from harness.judge.judge import (JudgeItem, Judgment, make_judge, metric_scores, pair_values,
                                     position_bias_rate, run_pairwise, run_pointwise, win_rate)
    from harness.judge.rubric import load_rubric
    from harness.metrics import from_values

    spec = run.goal.judge
    if spec is None or not spec.rubrics:
        return {}
    opts = dict(spec.model_extra or {})
    baseline = opts.pop("baseline", None) or "reference"  # pairwise: compared with this candidate
    if spec.model.startswith("local:"):
        from harness.backends.local import local_model_id

        local_spec = spec.model.split(":", 1)[1] or "default"
        model_spec = None if local_spec == "default" else local_spec
        judge = make_judge(spec.model, model=_LazyModel(lambda: run.local_model(model_spec)), **opts)
        # Cache judgments by the judge model's content, not just its name; the model itself
        # loads only when a judgment is not stored yet.
        judge.spec = f"{spec.model}#{local_model_id(model_spec)[:16]}"
    else:
        if run.goal.data.scrub_pii:
            from harness.data.pii import scrub_text

            opts.setdefault("scrub", lambda text: scrub_text(text)[0])
        judge = make_judge(spec.model, **opts)
    test = run.prepared.test
    out: dict[str, dict[str, Any]] = {}
    for rubric_name in spec.rubrics:
        rubric = load_rubric(rubric_name, run.rubrics_dir)
        cached = {r["cache_key"]: _judgment_from_row(Judgment, r) for r in run.store.query(
            "SELECT * FROM judgments WHERE judge = ? AND rubric_hash = ?", [judge.spec, rubric.hash])}
        names = [f"judge.{rubric.name}"] + [f"judge.{rubric.name}.{c}" for c in rubric.criterion_names]
        for cname, outs in outputs.items():
            if spec.mode == "pairwise" and cname == baseline:
                continue  # the baseline is what the others are compared with
            new: list[Any] = []

            def on_result(j, new=new) -> None:
                new.append(j)
                if len(new) >= FLUSH_EVERY:
                    _store_judgments(run, new)
                    new.clear()

            if spec.mode == "pairwise":
                others = ([ex.reference for ex in test] if baseline == "reference" else outputs[baseline].texts)
                items = [JudgeItem(ex.id, ex.input_text, o, ex.reference, other)
                         for ex, o, other in zip(test, outs.texts, others)]
                pairs, judgments = run_pairwise(judge, rubric, items, cached=cached, on_result=on_result)
            else:
                items = [JudgeItem(ex.id, ex.input_text, o, ex.reference) for ex, o in zip(test, outs.texts)]
                pairs, judgments = [], run_pointwise(judge, rubric, items, cached=cached, on_result=on_result)
            _store_judgments(run, new)
            fresh = {j.key for j in judgments} - set(cached)
            run.counts["judged"] += len(fresh)
            run.counts["judgments_reused"] += len(judgments) - len(fresh)
            for j in judgments:
                cached.setdefault(j.key, j)
            run.store.put_judgments([], [(run.run_id, cname, j.example_id, rubric.name, j.criterion, j.order or "-",
                                          j.key) for j in judgments])
            ids = [ex.id for ex in test]
            for metric in names:
                if spec.mode == "pairwise":
                    crit = metric.split(".", 2)[2] if metric.count(".") >= 2 else None
                    chosen = [p for p in pairs if crit is None or p.criterion == crit]
                    per = pair_values(chosen)
                    extra = {"ids": ids, "baseline": baseline, "position_bias_rate": position_bias_rate(chosen),
                             "win_rate": win_rate(chosen)}
                else:
                    per, extra = metric_scores(metric, judgments), {"ids": ids}
                out.setdefault(cname, {})[metric] = from_values(metric, [per.get(i) for i in ids], extra=extra)
    return out


class _LazyModel:
    """Stands in for a LocalModel until a judgment actually needs it."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load

    def next_token_probs(self, *args: Any, **kwargs: Any) -> Any:
        return self._load().next_token_probs(*args, **kwargs)


def _judgment_from_row(cls: Any, row: dict[str, Any]) -> Any:
    return cls(key=row["cache_key"], judge=row["judge"], rubric=row["rubric"], rubric_hash=row["rubric_hash"],
               criterion=row["criterion"], mode=row["mode"], order=row["order"], score=row["score"],
               winner=row["winner"], rationale=row["rationale"] or "", raw=row["raw"] or "",
               attempts=row["attempts"] or 0, error=row["error"])


def _store_judgments(run: Run, judgments: Sequence[Any]) -> None:
    if judgments:
        run.store.put_judgments([{**j.to_dict(), "cache_key": j.key} for j in judgments])


def human_results(run: Run, names: Sequence[str], candidates: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """``human.<rubric>[.<criterion>]`` MetricResults from the panel's ratings, once enough exist."""
    wanted = [n for n in names if n.startswith("human.")]
    if not wanted or run.goal.human is None:
        return {}, {}
    from harness.metrics import from_values
    from harness.panel import PanelItem, human_scores, parse_human_metric, rating_counts

    ratings = run.store.ratings(run.goal.goal)
    items = [PanelItem.from_row(r) for r in run.store.panel_items(run.goal.goal)]
    need = run.goal.human.min_ratings
    out: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        rubric, criterion = parse_human_metric(name)
        scores = human_scores(ratings, items, rubric, criterion)
        counts = rating_counts(ratings, items, rubric, criterion)  # the app's rule too
        for cand in candidates:
            per, n = scores.get(cand, {}), counts.get(cand, 0)
            if n < need or len(per) < 2:
                missing[f"{cand}/{name}"] = f"{n} of {need} human ratings so far; {max(need - n, 0)} more needed"
                continue
            ids = sorted(per)
            out.setdefault(cand, {})[name] = from_values(name, [per[i] for i in ids], extra={"ids": ids})
    return out, missing


# --------------------------------------------------------------------------- verdicts


def decide(run: Run, results: dict[str, dict[str, Any]], missing: dict[str, str],
           costs: dict[str, float] | None = None):
    """Verdicts per candidate (aligned with ``goal.success``), who meets the goal, and the best
    candidate (highest mean margin; ties go to the cheaper one)."""
    from harness.verdict import INCONCLUSIVE, Verdict, best_candidate, judge_criterion, meets_goal

    goal = run.goal
    verdicts: dict[str, list[Verdict]] = {}
    for cand in results:
        vs = []
        for c in goal.success:
            res = results[cand].get(c.metric)
            if res is None:
                why = missing.get(f"{cand}/{c.metric}", "no value")
                vs.append(Verdict(c.metric, INCONCLUSIVE, float("nan"), (float("nan"), float("nan")),
                                  float(c.threshold), c.baseline, None, why, c.op, c.relative_op))
                continue
            base = None
            if c.relative_op:
                base = results.get(c.baseline, {}).get(c.metric)
                if base is None:
                    vs.append(Verdict(c.metric, INCONCLUSIVE, float("nan"), (float("nan"), float("nan")),
                                      float(c.threshold), c.baseline, None,
                                      f"baseline {c.baseline!r} has no {c.metric} in this run", c.op, True))
                    continue
                if base.n != res.n or base.extra.get("ids") != res.extra.get("ids"):
                    vs.append(Verdict(c.metric, INCONCLUSIVE, float("nan"), (float("nan"), float("nan")),
                                      float(c.threshold), c.baseline, None,
                                      "candidate and baseline were scored on different examples", c.op, True))
                    continue
            amount = getattr(c, c.op)
            verdict = judge_criterion(c.metric, c.op, amount, res, base, c.baseline, goal.confidence, seed=0)
            if base is not None and _binary(res) and _binary(base):
                from harness.stats import mcnemar

                m = mcnemar([v == 1.0 for v in res.per_example], [v == 1.0 for v in base.per_example])
                verdict.detail += (f"; McNemar ({m.method}) p = {m.p_value:.3g} "
                                   f"({m.only_a} right only here, {m.only_b} only in {c.baseline})")
            vs.append(verdict)
        verdicts[cand] = vs
    meets = {cand: meets_goal(vs) for cand, vs in verdicts.items()}
    best = best_candidate(verdicts, costs or {})
    return verdicts, meets, best


def _binary(res: Any) -> bool:
    """Per-example 0/1 outcomes (accuracy, checks): McNemar applies to a paired comparison."""
    return bool(res.per_example) and all(v in (0.0, 1.0) for v in res.per_example)


# --------------------------------------------------------------------------- provenance


def provenance() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("harness", "torch", "transformers", "peft", "trl", "duckdb", "openai", "anthropic"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    host = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "pid": os.getpid()}
    return {"versions": versions, "git_commit": commit, "git_dirty": dirty, "host": host}


# --------------------------------------------------------------------------- the run


def plan(goal: Goal, store: Any, prepared: Any) -> list[Step]:
    """What a run would do, and what is already stored (no model is loaded)."""
    steps: list[Step] = []
    n = len(prepared.test)
    for cand in goal.candidates:
        if cand.kind in TRAIN_METHOD:
            steps.append(Step(cand.name, cand.kind, "train", 1, 0, note=f"{len(prepared.train)} train examples"))
        cost = 0.0
        if cand.kind == "api":
            try:
                from harness.backends.api import APIConfig
                from harness.backends.pricing import estimate_cost

                avg_in = sum(len(" ".join(m["content"] for m in ex.prompt).split()) for ex in prepared.test) / max(n, 1) * 1.4
                cfg = APIConfig(provider=cand.options.get("provider", "openai"), model=cand.model or "",
                                prices=goal.prices.get(cand.model or ""))
                cost = float(estimate_cost(cfg, n, avg_in, goal.decoding.max_new_tokens))
            except Exception:  # noqa: BLE001 - an estimate only
                cost = 0.0
        action = "read" if cand.kind == "file" else "generate"
        steps.append(Step(cand.name, cand.kind, action, n, 0, est_cost_usd=cost))
        steps.append(Step(cand.name, cand.kind, "score", n, 0))
        if goal.judge:
            steps.append(Step(cand.name, cand.kind, "judge", n * len(goal.judge.rubrics), 0,
                              note=goal.judge.model))
    return steps


def run_goal(goal: Goal, store: Any, *, only: Sequence[str] | None = None, reseal: bool = False,
             progress: bool = True, console: Any = None, work_dir: str | Path = ".harness",
             rubrics_dir: str | Path = "rubrics") -> RunResult:
    from harness import stats
    from harness.data.split import prepare

    t0 = time.perf_counter()
    validate_goal(goal, rubrics_dir)
    prepared = prepare(goal, store, reseal=reseal)
    if not prepared.test:
        raise InputError(Problem(goal.source, None, "data.split.test", "the test split is empty"))
    cands = list(goal.candidates)
    if only:
        unknown = [o for o in only if o not in {c.name for c in cands}]
        if unknown:
            raise HarnessError(f"--only: unknown candidate(s) {', '.join(unknown)}")
        # Baselines of relative criteria are needed to decide them.
        need = set(only) | {c.baseline for c in goal.success if c.baseline}
        if goal.judge is not None and goal.judge.mode == "pairwise":
            need.add((goal.judge.model_extra or {}).get("baseline"))
        cands = [c for c in cands if c.name in need]
    if not cands:
        raise InputError(Problem(goal.source, None, "candidates", "the goal names no candidates"))
    run = Run(goal, store, prepared=prepared, progress=progress, console=console, work_dir=work_dir,
              rubrics_dir=rubrics_dir)
    prov = provenance()
    store.mark_interrupted(goal.goal)
    store.start_run({"run_id": run.run_id, "goal": goal.goal, "goal_path": goal.source,
                     "config_hash": content_key(goal.model_dump(mode="json")), "data_hash": prepared.data_hash,
                     "test_hash": prepared.test_hash, "config": goal.model_dump(mode="json"), **prov})
    try:
        outputs: dict[str, Outputs] = {}
        for cand in cands:
            run.say(f"[bold]{cand.name}[/] ({cand.kind})")
            store.put_candidate(run.run_id, {"name": cand.name, "kind": cand.kind, "config": cand.model_dump(),
                                             "model": cand.model or (goal.model if cand.kind != "api" else None),
                                             "status": "running"})
            out = produce_outputs(run, cand)
            outputs[cand.name] = out
            store.update_candidate(run.run_id, cand.name, cost_usd=out.cost_usd, gen_seconds=out.gen_seconds,
                                   status="generated", **out.train)
        names = metric_names(goal, run.classification)
        results = {name: score_candidate(run, out, names) for name, out in outputs.items()}
        for cname, judged in judge_candidates(run, outputs).items():
            results[cname].update(judged)
        human, missing = human_results(run, names, list(outputs))
        for cname, hres in human.items():
            results[cname].update(hres)

        # Store per-example scores and aggregates with CIs.
        aggregates: dict[str, dict[str, dict[str, Any]]] = {}
        agg_rows = []
        for cname, mres in results.items():
            for metric, res in mres.items():
                ids = res.extra.get("ids") or [ex.id for ex in prepared.test]
                store.put_scores(run.run_id, cname, metric, list(zip(ids, res.per_example)))
                lo, hi = stats.bootstrap_ci(res, goal.confidence, seed=0) if res.n else (float("nan"),) * 2
                extra = {k: v for k, v in (res.extra or {}).items() if k not in ("reasons", "ids", "predictions")}
                row = {"candidate": cname, "metric": metric, "value": res.value, "ci_low": lo, "ci_high": hi,
                       "n": res.n, "extra": _jsonable(extra)}
                agg_rows.append(row)
                aggregates.setdefault(cname, {})[metric] = {"value": res.value, "ci": [lo, hi], "n": res.n}
        store.put_aggregates(run.run_id, agg_rows)
        verdicts, meets, best = decide(run, results, missing, {n: o.cost_usd for n, o in outputs.items()})
        store.put_verdicts(run.run_id, [
            {"candidate": cname, "idx": idx, "metric": v.metric, "status": v.status, "value": v.value,
             "ci_low": v.ci[0], "ci_high": v.ci[1], "threshold": v.threshold, "op": v.criterion,
             "baseline": v.baseline, "needed_n": v.needed_n, "detail": v.detail}
            for cname, vs in verdicts.items() for idx, v in enumerate(vs)])
        for cname, ok in meets.items():
            store.update_candidate(run.run_id, cname, meets_goal=ok, status="done")
        store.finish_run(run.run_id, "finished", any(meets.values()), best)
    except BaseException:
        store.finish_run(run.run_id, "failed")
        raise
    return RunResult(run.run_id, goal.goal, verdicts, meets, best, aggregates, dict(run.counts),
                     time.perf_counter() - t0)


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
