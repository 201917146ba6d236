"""``kind: rag``: retrieve passages from the goal's documents, then answer with them in the prompt.

The top ``k`` passages, with their ids, go before the question in the last user turn
(:func:`harness.prompts.with_passages`), so a prediction's cache key covers them. A local model
answers (the goal's, or the adapter a training candidate of the goal trains: ``adapter_of:
lora``), or an API model (``provider:`` and the rest of the api kind's options), whose prompts,
documents included, are scrubbed of PII when the goal asks for it. The index is built once per
documents, chunking and retriever (:mod:`harness.retrieval`); the retrieved passage ids are
stored with each prediction and reach the ``retrieval_recall@k`` metric.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from harness.errors import HarnessError, InputError, ModelNotAvailableError, Problem
from harness.kinds import CandidateKind, CandidatePlan, kind_of
from harness.kinds.api import ApiKind, ApiOptions
from harness.prompts import PromptOptions, with_passages
from harness.retrieval import DEFAULT_CHUNK_CHARS, Chunk, Document, Index

if TYPE_CHECKING:
    from harness.goals import Candidate, Goal
    from harness.runner.context import Outputs, Run

# Options only an API model takes (besides `provider`, which chooses one).
API_ONLY = tuple(f for f in ApiOptions.model_fields if f not in PromptOptions.model_fields and f != "provider")


class RagOptions(ApiOptions):
    """How a RAG candidate retrieves, and (through the prompt and api options) how it answers."""

    provider: Literal["openai", "anthropic", "openai-compatible"] | None = Field(  # type: ignore[assignment]
        None, description="An API model answers (openai, anthropic, openai-compatible; then `model:` is its id); "
                          "default: a local model.")
    documents: str = Field(description='A folder of .md/.txt files, or a JSONL of {"id", "text"} '
                                       "(relative paths as for data.path).")
    k: int = Field(3, ge=1, description="Passages retrieved for each test input, placed before its question.")
    retriever: Literal["bm25", "dense"] = Field(
        "bm25", description="bm25 (bm25s) or dense (the shipped all-MiniLM-L6-v2 embeddings).")
    chunk_chars: int = Field(DEFAULT_CHUNK_CHARS, ge=50, description="Most characters in one passage; passages "
                                                                     "follow headings, then paragraphs.")
    adapter_of: str | None = Field(
        None, description="A training candidate of the goal (lora, ...): answer with its adapter on its base model.")


class RagKind(CandidateKind):
    name: ClassVar[str] = "rag"
    description: ClassVar[str] = "Retrieve passages from documents, then answer with them in the prompt."
    Options = RagOptions

    def check(self, cand: "Candidate", goal: "Goal", options: RagOptions) -> list[Problem]:
        from harness.retrieval import load_documents

        problems = []
        try:
            load_documents(documents_path(goal, options))
        except InputError as exc:
            problems += [Problem("", None, "documents", str(p)) for p in exc.problems]
        if options.retriever == "dense":
            from harness.metrics.semantic import embedding_model_dir

            try:
                embedding_model_dir()
            except ModelNotAvailableError as exc:
                problems.append(Problem("", None, "retriever", str(exc)))
        if options.provider:
            if options.adapter_of:
                problems.append(Problem("", None, "adapter_of", "an API model runs no adapter: drop adapter_of "
                                                                "or provider"))
            return problems + ApiKind().check(cand, goal, options)
        stray = sorted(options.model_fields_set & set(API_ONLY))
        problems += [Problem("", None, f, f"{f!r} is an API model's option: set provider (openai, anthropic or "
                                          "openai-compatible), or remove it") for f in stray]
        if options.adapter_of:
            problems += _adapter_problems(goal, cand, options.adapter_of)
        return problems

    def model_of(self, goal: "Goal", cand: "Candidate") -> str | None:
        if cand.options.get("provider"):
            return ApiKind().model_of(goal, cand)
        name = cand.options.get("adapter_of")
        other = next((c for c in goal.candidates if c.name == name), None) if name else None
        return (other.model if other else cand.model) or goal.model

    # ------------------------------------------------------------------ plan and produce

    def preflight(self, run: "Run", cand: "Candidate") -> list[Problem]:
        """The adapter this candidate answers with must be trainable here, if not trained yet."""
        name = self.options(cand).adapter_of
        if not name:
            return []
        other = run.goal.candidate(name)
        return kind_of(other).preflight(run, other)

    def needs(self, cand: "Candidate") -> list[str]:
        """The training candidate whose adapter this one answers with."""
        name = cand.options.get("adapter_of")
        return [name] if isinstance(name, str) and name else []

    def artifacts(self, run: "Run", cand: "Candidate") -> list[Path]:
        """The artifact of the training candidate this one answers with (``adapter_of``)."""
        others = [run.goal.candidate(name) for name in self.needs(cand)]
        return [f for other in others for f in kind_of(other).artifacts(run, other)]

    def engine_adapter(self, run: "Run", cand: "Candidate") -> "tuple[Path, int] | None":
        """The adapter of the training candidate this one answers with (``adapter_of``)."""
        name = self.options(cand).adapter_of
        if not name:
            return None
        other = run.goal.candidate(name)
        return kind_of(other).engine_adapter(run, other)

    def plan(self, run: "Run", cand: "Candidate") -> CandidatePlan:
        from harness.runner.context import Step

        options = self.options(cand)
        docs, index, hits = self._retrieve(run, cand, options, build=False)
        note = f"{options.retriever}, {len(docs)} documents" + (f", {len(index.chunks)} passages" if index else "")
        leaked = self.document_leakage(run, cand)
        if leaked:
            note += f"; they hold {leaked['examples']} test example(s) (data.leakage: {leaked['policy']})"
        steps = [Step(cand.name, cand.kind, "index", int(index is None), int(index is not None), note=note)]
        if hits is None:
            n = len(run.prepared.test)
            return CandidatePlan(steps + [Step(cand.name, cand.kind, "generate", n, 0, note="after retrieval")])
        prompts = self._prompts(run, options, hits)
        if options.provider:
            api = ApiKind()
            part = api.plan(run, cand, api.requests(run, cand, options, prompts))
        else:
            part = self._local_plan(run, cand, options, prompts)
        return CandidatePlan(steps + part.steps, part.keys, part.stored)

    def produce(self, run: "Run", cand: "Candidate") -> "Outputs":
        from harness.kinds.train import ensure_artifact
        from harness.runner.generation import generate_local

        options = self.options(cand)
        _, index, hits = self._retrieve(run, cand, options, build=True)
        assert index is not None and hits is not None  # built on demand
        run.counts["indexes_built" if index.built else "indexes_reused"] += 1
        run.say(f"  {cand.name}: {'built' if index.built else 'reusing'} the {options.retriever} index of "
                f"{len(index.chunks)} passages ({index.folder})")
        prompts = self._prompts(run, options, hits)
        ids = [[c.id for c in row] for row in hits]
        if options.provider:
            api = ApiKind()
            return api.produce(run, cand, api.requests(run, cand, options, prompts), passages=ids)
        model, adapter, trained = self._local_model(run, options)
        info: dict[str, Any] = {}
        if trained is not None:
            meta = ensure_artifact(run, *trained)
            info = {"adapter_path": meta["adapter_path"], "adapter_hash": meta["adapter_hash"]}
        out = generate_local(run, cand, prompts, adapter=adapter, model=model, passages=ids)
        out.train = info
        return out

    def _retrieve(self, run: "Run", cand: "Candidate", options: RagOptions, *, build: bool
                  ) -> tuple[list[Document], Index | None, list[list[Chunk]] | None]:
        """(documents, their index or None if not built, the passages of each test input or None
        if unknown without building). ``build=False`` writes nothing: a cached index answers, or
        for BM25 an index in memory (cheap); dense retrieval is known once it ran."""
        from harness.retrieval import chunk_documents, load_documents, nearest, open_index

        docs = load_documents(documents_path(run.goal, options))
        index = open_index(run.work_dir, docs, chunk_chars=options.chunk_chars, retriever=options.retriever,
                           build=build, device=run.placement_of(cand).device, progress=run.progress)
        # data.leakage: drop — a passage holding a test example is not retrieved for that example:
        # ask for as many more as the most any example has, then leave them out.
        leaks = _leaks(run, options) if run.goal.data.leakage == "drop" else {}
        queries, k = [ex.input_text for ex in run.prepared.test], options.k + max(map(len, leaks.values()), default=0)
        if index is not None:
            hits = index.search(queries, k) if build else index.lookup(queries, k)
            if hits is None and options.retriever == "bm25":
                hits = index.compute(queries, k)
        elif options.retriever != "bm25":
            return docs, None, None
        else:
            chunks = chunk_documents(docs, options.chunk_chars)
            hits = [[chunks[i] for i in row] for row in nearest([c.text for c in chunks], queries, k)]
        if hits is not None and leaks:
            hits = [[c for c in row if c.id not in leaks.get(e, ())][:options.k] for e, row in enumerate(hits)]
        return docs, index, hits

    def document_leakage(self, run: "Run", cand: "Candidate") -> dict[str, Any] | None:
        """How many test examples its documents hold (turns and answer), in how many passages, and
        what was done: those passages are not retrieved for the examples they hold
        (``data.leakage: drop``), or are (``flag``: scores may be inflated)."""
        leaks = _leaks(run, self.options(cand))
        if not leaks:
            return None
        return {"examples": len(leaks), "passages": len(set().union(*leaks.values())),
                "policy": run.goal.data.leakage}

    def _prompts(self, run: "Run", options: RagOptions, hits: list[list[Chunk]]) -> list[list[dict[str, str]]]:
        prompts = run.prompts(options, options.resolved_style())
        return [with_passages(p, [(c.id, c.text) for c in row]) for p, row in zip(prompts, hits)]

    def _local_model(self, run: "Run", options: RagOptions) -> tuple[str | None, str | None, tuple | None]:
        """(model, adapter, (training candidate, its artifact) or None) the local model answers with."""
        from harness.kinds.train import artifact_of

        if not options.adapter_of:
            return None, None, None  # the candidate's model (or the goal's), see generate_local
        other = run.goal.candidate(options.adapter_of)
        kind = kind_of(other)
        art = artifact_of(run, other)
        model, adapter = kind._model_and_adapter(run, other, art)  # how the training kind itself generates
        return model, adapter, (other, art)

    def _local_plan(self, run: "Run", cand: "Candidate", options: RagOptions,
                    prompts: list[list[dict[str, str]]]) -> CandidatePlan:
        from harness.runner.context import Step
        from harness.runner.generation import generation_plan, local_prediction_keys

        model, adapter, trained = self._local_model(run, options)
        if trained is not None and not trained[1].finished:
            n = len(run.prepared.test)
            return CandidatePlan([Step(cand.name, cand.kind, "generate", n, 0,
                                       note=f"after {options.adapter_of} trains")])
        _, keys = local_prediction_keys(run, cand, prompts, adapter, model=model)
        return generation_plan(run, cand, keys)


def _leaks(run: "Run", options: RagOptions) -> dict[int, set[str]]:
    """{test example index: ids of the passages that hold it} (:func:`passages_containing`),
    found once a run for each documents folder and chunking."""
    from harness.data.split import passages_containing
    from harness.retrieval import chunk_documents, load_documents

    key = ("documents in the test set", options.documents, options.chunk_chars)
    if key not in run.memo:
        chunks = chunk_documents(load_documents(documents_path(run.goal, options)), options.chunk_chars)
        found = passages_containing(run.prepared.test, [(c.doc, c.text) for c in chunks],
                                    run.goal.data.near_duplicate_threshold)
        run.memo[key] = {e: {chunks[j].id for j in js} for e, js in found.items()}
    return run.memo[key]


def documents_path(goal: "Goal", options: RagOptions) -> Path:
    from harness.goals import resolve_data_path

    return resolve_data_path(options.documents, goal.root)


def _adapter_problems(goal: "Goal", cand: "Candidate", name: str) -> list[Problem]:
    """``adapter_of`` must name another candidate of the goal, one that trains."""
    from harness.registry import did_you_mean

    names = [c.name for c in goal.candidates]
    other = next((c for c in goal.candidates if c.name == name), None)
    if name == cand.name:
        return [Problem("", None, "adapter_of", "a candidate cannot run its own adapter")]
    if other is None:
        swept = [c.name for c in goal.candidates if c.sweep_of == name]
        hint = f"; {name!r} is a sweep, name one of {', '.join(swept)}" if swept else did_you_mean(name, names)
        return [Problem("", None, "adapter_of", f"unknown candidate {name!r}{hint}")]
    try:
        trains = kind_of(other).trains
    except HarnessError:
        return []  # its own kind's problem is reported on it
    if not trains:
        return [Problem("", None, "adapter_of", f"candidate {name!r} (kind {other.kind}) trains nothing; name a "
                                                f"training candidate (lora, qlora, prefix, prompt_tuning, full)")]
    return []
