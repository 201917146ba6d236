"""Which engine generates a local candidate's outputs: transformers in this process (the
default) or vLLM (``engine: vllm``, :mod:`harness.backends.vllm`).

Both write under the same cache keys (model + adapter hash and precision, prompt, decoding):
the engine is not part of a key, so a rerun on either engine reuses what the other stored. A
candidate vLLM cannot serve beside the goal's base model (another base model, a full model
folder, prefix or prompt tuning, a qlora adapter, a dtype other than the server's) is generated
by transformers; the run says so, and a candidate that asked for vllm itself is refused by
``validate_goal`` where that is known before any work.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from harness.backends.device import Placement
    from harness.backends.local import DecodingParams
    from harness.backends.vllm import Adapter, VllmEngine
    from harness.goals import Candidate
    from harness.runner.context import Run
    from harness.runner.generation import Produce


def engine_of(run: "Run", cand: "Candidate") -> str:
    return cand.engine or run.goal.engine


def vllm_adapter(folder: str | Path) -> "Adapter | None":
    """The adapter as vLLM serves it (named by its folder and its content hash), or None when vLLM
    cannot serve it here: not a LoRA, or trained on a 4-bit base (harness_adapter.json)."""
    from harness.backends.modelhub import adapter_hash
    from harness.backends.vllm import Adapter, adapter_rank
    from harness.train.methods import METHODS

    folder = Path(folder).resolve()
    rank = adapter_rank(folder)
    if rank is None:
        return None
    try:
        method = json.loads((folder / "harness_adapter.json").read_text(encoding="utf-8")).get("method")
    except (OSError, ValueError, AttributeError):
        method = None
    if method in METHODS and METHODS.meta(method).get("quantize"):
        return None
    # Named by content too: a server that lives longer than one training of this folder (engine_url,
    # or an adapter trained again after a damaged metadata file) never answers with older weights.
    return Adapter(f"{folder.name}-{adapter_hash(folder)[:8]}", folder, rank)


def why_not_vllm(run: "Run", cand: "Candidate", spec: str | None, adapter: str | Path | None,
                 placement: "Placement") -> str | None:
    """Why vLLM cannot generate this candidate's outputs beside the goal's base model (None: it can)."""
    from harness.backends.modelhub import resolve_model

    if resolve_model(spec).path != resolve_model(run.goal.model).path:
        return f"its model ({spec}) is not the goal's base model, which the one vLLM server serves"
    if placement != run.placement():
        return f"it runs in {placement.dtype} on {placement.device}, the server in {run.placement().dtype}"
    if adapter is not None and vllm_adapter(adapter) is None:
        return "vLLM serves LoRA adapters on a full-precision base only (not prefix/prompt tuning or qlora)"
    return None


def make_vllm_engine(run: "Run") -> "VllmEngine":
    """The run's engine: the goal's base model in the goal's dtype, every LoRA adapter of the
    run's candidates already trained in the command line, LoRA slots sized for all of them."""
    from harness.backends.modelhub import resolve_model
    from harness.backends.vllm import VllmEngine
    from harness.kinds import kind_of

    planned = [a for c in run.candidates if (a := kind_of(c).engine_adapter(run, c)) is not None]

    def known() -> list["Adapter"]:
        ready = {a.name: a for folder, _ in planned if folder.is_dir() and (a := vllm_adapter(folder))}
        return list(ready.values())

    return VllmEngine(resolve_model(run.goal.model).path, dtype=run.placement().dtype, url=run.goal.engine_url,
                      extra_args=run.goal.engine_args, log_dir=run.work_dir / "logs", known=known,
                      ranks=[r for _, r in planned], seed=run.goal.decoding.seed, say=run.say)


def transformers_produce(run: "Run", cand: "Candidate", spec: str | None, adapter: str | Path | None,
                         placement: "Placement", prompts: list[list[dict[str, str]]],
                         params: "DecodingParams") -> "Produce":
    """What ``generate_cached`` calls to generate the prompts left to do in this process (the
    model loads only when work is left)."""

    def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
        local = run.local_model(spec, adapter, placement)
        local.generate([prompts[i] for i in todo], params, progress=run.progress,
                       batch_size=run.generation_batch_size(cand), label=f"{cand.name}: generating",
                       on_result=lambda j, g: on_result(todo[j], {
                           "output": g.text, "prompt_tokens": g.prompt_tokens, "output_tokens": g.output_tokens,
                           "latency_s": g.latency_s, "cost_usd": 0.0, "attempts": 1, "error": g.error}))

    return produce


def vllm_produce(run: "Run", spec: str | None, adapter: str | Path | None, prompts: list[list[dict[str, str]]],
                 params: "DecodingParams") -> "Produce":
    """What ``generate_cached`` calls to generate the prompts left to do through vLLM."""
    from harness.backends.local import PromptCodec

    def produce(todo: list[int], on_result: Callable[[int, dict], None]) -> None:
        codec = PromptCodec(spec)
        ids = codec.encode([prompts[i] for i in todo], params.max_new_tokens)
        sampling = {"max_tokens": params.max_new_tokens, "temperature": params.temperature, "top_p": params.top_p,
                    "repetition_penalty": params.repetition_penalty, "seed": params.seed,
                    "stop_token_ids": codec.eos_ids, "skip_special_tokens": True}
        served = vllm_adapter(adapter) if adapter is not None else None
        run.vllm().generate(ids, served, sampling, lambda r: codec.reply(r.get("token_ids"), r.get("text") or ""),
                            lambda j, row: on_result(todo[j], row))

    return produce
