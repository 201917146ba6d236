"""Generation shared by the kinds: cache keys, looking up what is stored, generating the rest.

Predictions are keyed by (model + adapter content hash, the exact prompt, decoding), looked up
before anything is loaded, and written in small batches as they arrive, so a killed run loses
at most a batch and a rerun generates nothing already stored.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from harness.cache import prediction_key
from harness.errors import HarnessError
from harness.kinds import CandidatePlan
from harness.runner.context import FLUSH_EVERY, Outputs, Run, Step
from harness.runner.engine import engine_of, vllm_produce, why_not_vllm

if TYPE_CHECKING:
    from harness.goals import Candidate

Produce = Callable[[list[int], Callable[[int, dict], None]], Any]


def local_prediction_keys(run: Run, cand: "Candidate", prompts: list[list[dict[str, str]]],
                          adapter: str | Path | None = None, *, model: str | None = None) -> tuple[str, list[str]]:
    """(model id, one cache key per prompt) of a local candidate, from file hashes only. The id
    names the precision the candidate runs in unless float32 on a full-precision base (then it is
    the id predictions were always stored under)."""
    from harness.backends.local import adapter_quantization, local_model_id, precision_tag

    placement = run.placement_of(cand)
    precision = precision_tag(placement, adapter_quantization(placement, adapter))
    model_id = local_model_id(model or cand.model or run.goal.model, adapter, precision)
    decoding = run.decoding().to_dict()
    return model_id, remember_messages([prediction_key(model_id, p, decoding) for p in prompts], prompts)


# The conversation each prediction key was made from, kept until its prediction is stored (with it,
# so a rater sees what the model was sent). Keys are content keys of the prompt itself: one key
# names one conversation, whichever run or candidate computed it.
_MESSAGES: dict[str, list[dict[str, str]]] = {}


def remember_messages(keys: list[str], prompts: Sequence[list[dict[str, str]]]) -> list[str]:
    """Note the conversation behind each key (stored with its prediction); returns ``keys``."""
    _MESSAGES.update(zip(keys, prompts))
    return keys


def generation_plan(run: Run, cand: "Candidate", keys: list[str]) -> CandidatePlan:
    """The plan's generate step for these keys: how many are stored, how many are left."""
    stored = run.store.get_predictions(keys)
    todo = sum(k not in stored for k in keys)
    note = "engine: vllm" if todo and engine_of(run, cand) == "vllm" else ""
    return CandidatePlan([Step(cand.name, cand.kind, "generate", todo, len(keys) - todo, note=note)], keys, stored)


def generate_local(run: Run, cand: "Candidate", prompts: list[list[dict[str, str]]],
                   adapter: str | None = None, *, model: str | None = None,
                   passages: list[list[str]] | None = None) -> Outputs:
    """Outputs of a local model (``model``, default the candidate's or goal's, + ``adapter``);
    ``passages``: the ids of the passages each prompt holds, stored with its prediction."""
    from harness.backends.local import adapter_quantization

    spec = model or cand.model or run.goal.model
    params, placement = run.decoding(), run.placement_of(cand)
    model_id, keys = local_prediction_keys(run, cand, prompts, adapter, model=spec)

    def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
        local = run.local_model(spec, adapter, placement)  # loads only when work is left
        local.generate([prompts[i] for i in todo], params, progress=run.progress,
                       batch_size=run.generation_batch_size(cand), label=f"{cand.name}: generating",
                       on_result=lambda j, g: on_result(todo[j], {
                           "output": g.text, "prompt_tokens": g.prompt_tokens, "output_tokens": g.output_tokens,
                           "latency_s": g.latency_s, "cost_usd": 0.0, "attempts": 1}))

    engine = _engine(run, cand, spec, adapter, placement)
    if engine == "vllm":
        produce = vllm_produce(run, spec, adapter, prompts, params)
    out = generate_cached(run, cand, keys, model_id, produce, passages=passages)
    quantization = adapter_quantization(placement, adapter)
    if quantization == "none":
        run.say(f"  {cand.name}: [yellow]the adapter was trained on a 4-bit base; here the base is not 4-bit[/] "
                f"(4-bit needs a CUDA GPU and bitsandbytes)")
    out.runtime = {"device": placement.device, "dtype": placement.dtype, "quantization": quantization,
                   "engine": engine}
    return out


def _engine(run: Run, cand: "Candidate", spec: str | None, adapter: str | Path | None, placement: Any) -> str:
    """The engine that generates this candidate: the one asked for, or transformers (said) where
    vLLM cannot serve it (:func:`harness.runner.engine.why_not_vllm`)."""
    if engine_of(run, cand) != "vllm":
        return "transformers"
    reason = why_not_vllm(run, cand, spec, adapter, placement)
    if reason:
        run.say(f"  {cand.name}: generated by transformers, not vllm: {reason}")
        return "transformers"
    return "vllm"


def generate_cached(run: Run, cand: "Candidate", keys: list[str], model_id: str, produce: Produce, *,
                    passages: list[list[str]] | None = None) -> Outputs:
    """Reuse the stored predictions among ``keys``; ``produce`` the rest, storing as they come
    (with ``passages``, the retrieved passage ids of each, when the candidate retrieves). A row
    ``produce`` reports with ``error`` (a request that failed after its retries) is stored as a
    failure: linked to this run, counted and printed, marked in ``Outputs.failed``, never scored,
    and generated again by the next run."""
    test = run.prepared.test
    stored = run.store.get_predictions(keys)  # successes only: a stored failure is asked again
    todo = [i for i, k in enumerate(keys) if k not in stored]
    # Link the reused predictions to this run first (cheap, one transaction).
    reused_links = [(run.run_id, cand.name, test[i].id, keys[i]) for i, k in enumerate(keys) if k in stored]
    if reused_links:
        run.store.put_predictions([], reused_links)
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    if todo:
        run.say(f"  {cand.name}: generating {len(todo)} of {len(keys)} ({len(keys) - len(todo)} stored)")
        writer = _Writer(run, cand.name, model_id, keys, test, passages)

        def on_result(i: int, row: dict[str, Any]) -> None:
            results[i] = row
            writer.add(i, row)

        try:
            produce(todo, on_result)
        finally:
            writer.flush()
    elif keys:
        run.say(f"  {cand.name}: all {len(keys)} predictions stored, nothing to generate")
    gen_seconds = time.perf_counter() - t0
    for k in keys:
        _MESSAGES.pop(k, None)  # stored with their predictions, or already stored before
    out = _outputs(cand.name, keys, test, results, stored)
    out.generated, out.reused = len(todo) - len(out.failed), len(keys) - len(todo)  # failures: new ones only
    out.gen_seconds, out.retrieved = gen_seconds, passages
    run.counts["generated"] += out.generated
    run.counts["reused"] += out.reused
    if out.failed:
        run.counts["generations_failed"] += len(out.failed)
        first = out.failed[min(out.failed)]
        run.say(f"  [yellow]{cand.name}[/]: {len(out.failed)} of {len(keys)} generations failed (stored as "
                f"failures, left out of scoring, generated again next run); first: {first}")
    return out


def _outputs(name: str, keys: list[str], test: Sequence[Any], results: dict[int, dict[str, Any]],
             stored: dict[str, dict[str, Any]]) -> Outputs:
    """The candidate's texts in test order (empty where the generation failed, with the reason
    in ``failed``) and what they cost."""
    texts, cost, failed = [], 0.0, {}
    for i, k in enumerate(keys):
        row = results.get(i) or stored.get(k)
        if row is None:
            raise HarnessError(f"candidate {name!r}: no output for test example {test[i].id}")
        if row.get("error"):
            failed[i] = str(row["error"])
        texts.append("" if row.get("error") else row["output"] or "")
        cost += float(row.get("cost_usd") or 0.0)
    return Outputs(name, texts, cost_usd=cost, failed=failed)


class _Writer:
    """Collects (index, row) results and writes them to the store every few results."""

    def __init__(self, run: Run, cand: str, model_id: str, keys: list[str], examples: Sequence[Any],
                 passages: list[list[str]] | None = None):
        self.run, self.cand, self.model_id, self.keys, self.examples = run, cand, model_id, keys, examples
        self.passages = passages
        self.buf: list[tuple[int, dict[str, Any]]] = []

    def add(self, i: int, row: dict[str, Any]) -> None:
        self.buf.append((i, row))
        if len(self.buf) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        rows = [dict(r, cache_key=self.keys[i], model_id=self.model_id,
                     passages=self.passages[i] if self.passages is not None else None,
                     messages=r.get("messages") or _MESSAGES.pop(self.keys[i], None)) for i, r in self.buf]
        links = [(self.run.run_id, self.cand, self.examples[i].id, self.keys[i]) for i, _ in self.buf]
        self.run.store.put_predictions(rows, links)
        self.buf.clear()
