"""Candidate kinds: one module per kind, one registry.

A kind is what a goal's ``kind:`` names (``prompt``, ``lora``, ``api``, ``file``, ...). Each
lives in one module of this package and owns, for its candidates:

* ``options`` — its options model (pydantic, ``extra="forbid"``, help text on every field),
  parsed from the candidate's keys besides ``name``, ``kind``, ``model`` and ``sweep_of``;
* ``check`` — validation beyond the options' own (files present, providers known), run by
  ``validate_goal`` before any work;
* ``preflight`` — what can only be checked once the data is split (an adapter still to train
  whose method cannot run on this machine), before the run is booked;
* ``plan`` — what a run would do and what is already stored (``--dry-run``), from file hashes
  and stored rows only: no model is loaded, nothing is written;
* ``produce`` — the candidate's outputs on the sealed test set (training first, if it trains).

The runner, the dry run, ``export`` and the CLI dispatch through :func:`kind_of` and never
test a kind's name. Third parties add kinds through the entry-point group
``harness.candidate_kind`` (a :class:`CandidateKind` subclass or instance), and training
methods through ``harness.training_method``: every training method is a kind of the same name.
Modelled on inspect_ai's providers (one factory per provider, lazy imports) and torchtune's
recipes (small phases).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError, InputError, Problem
from harness.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from pathlib import Path

    from harness.goals import Candidate, Goal
    from harness.runner.context import Outputs, Run, Step

KINDS = Registry("candidate_kind")
# Built-in kinds, imported on first use (a kind module may import torch or an SDK lazily).
KINDS.add("prompt", "harness.kinds.prompt:PromptKind", description="Prompting baseline on the local base model.")
KINDS.add("api", "harness.kinds.api:ApiKind", description="A hosted model (OpenAI, Anthropic, OpenAI-compatible).")
KINDS.add("file", "harness.kinds.file:FileKind", description="Outputs someone already has, from a JSONL file.")
KINDS.add("rag", "harness.kinds.rag:RagKind", description="Retrieve passages from documents, then answer with them.")
# Training kinds: the kind name differs from the method name only for prompt tuning
# (``prompt`` is the prompting baseline's kind).
TRAIN_KIND_METHODS = {"lora": "lora", "qlora": "qlora", "prefix": "prefix", "prompt_tuning": "prompt", "full": "full"}
for _kind, _method in TRAIN_KIND_METHODS.items():
    KINDS.add(_kind, f"harness.kinds.train:{_kind}", description=f"Train a {_method} adapter, then generate.")


class CandidateKind:
    """What every kind provides; subclasses override what differs.

    ``Options`` is the kind's options model. ``local_model``: the candidate runs on a local base
    model (``model:`` defaults to the goal's). ``trains``: it produces an artifact (adapter or
    model folder) that ``harness export`` can write out.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]]
    local_model: ClassVar[bool] = True
    trains: ClassVar[bool] = False

    def options(self, cand: "Candidate") -> Any:
        """The candidate's options, validated; InputError naming each bad option."""
        return parse_options(self.Options, cand.options, cand.name)

    def check(self, cand: "Candidate", goal: "Goal", options: Any) -> list[Problem]:
        """Problems that need more than the options model (files, providers); none by default."""
        return []

    def preflight(self, run: "Run", cand: "Candidate") -> list[Problem]:
        """Problems found once the data is split, before the run is booked (an artifact that
        cannot be trained on this machine); none by default."""
        return []

    def document_leakage(self, run: "Run", cand: "Candidate") -> dict[str, Any] | None:
        """Test examples found in what the candidate reads at answer time (a RAG candidate's
        documents): ``{"examples", "passages", "policy"}``, or None; none by default."""
        return None

    def needs(self, cand: "Candidate") -> list[str]:
        """Candidates whose artifact this one uses (produced first when candidates run in
        parallel, :mod:`harness.runner.executor`); none by default."""
        return []

    def artifacts(self, run: "Run", cand: "Candidate") -> "list[Path]":
        """The artifact folders (adapters, model folders) this candidate trains or uses, trained or
        not yet: what a worker on another machine needs beside the data; none by default."""
        return []

    def engine_adapter(self, run: "Run", cand: "Candidate") -> "tuple[Path, int] | None":
        """(folder, rank) of the LoRA adapter this candidate generates with, trained or not yet,
        for an engine that serves adapters beside one base model (vLLM starts with every trained
        one and sizes its LoRA slots by the largest rank); None by default."""
        return None

    def model_of(self, goal: "Goal", cand: "Candidate") -> str | None:
        """The model the store records for the candidate."""
        return cand.model or (goal.model if self.local_model else None)

    def plan(self, run: "Run", cand: "Candidate") -> "CandidatePlan":
        raise NotImplementedError

    def produce(self, run: "Run", cand: "Candidate") -> "Outputs":
        raise NotImplementedError


class CandidatePlan:
    """A kind's part of the plan: its steps, and the prediction keys and stored predictions
    the judge's part of the plan counts from (None when outputs are not known yet)."""

    def __init__(self, steps: list["Step"], keys: list[str] | None = None,
                 stored: dict[str, dict[str, Any]] | None = None):
        self.steps = steps
        self.keys = keys
        self.stored = stored or {}

    @property
    def outputs_known(self) -> bool:
        return self.keys is not None and all(k in self.stored for k in self.keys)


_INSTANCES: dict[str, CandidateKind] = {}


def kind_names() -> list[str]:
    """Every kind a goal may name: the registered kinds and every training method."""
    from harness.train.methods import METHODS

    return sorted(set(KINDS.names()) | (set(METHODS.names()) - set(TRAIN_KIND_METHODS.values())))


def kind_of(kind: "str | Candidate") -> CandidateKind:
    """The kind object for a kind name (or a candidate); HarnessError with did-you-mean."""
    name = kind if isinstance(kind, str) else kind.kind
    if name in _INSTANCES:
        return _INSTANCES[name]
    if name in KINDS:
        obj = KINDS.get(name)
        found = obj() if isinstance(obj, type) else obj
    else:
        from harness.train.methods import METHODS

        if name in METHODS and name not in TRAIN_KIND_METHODS.values():
            from harness.kinds.train import TrainKind

            found = TrainKind(name, name)  # a third-party training method is a kind of its name
        else:
            raise HarnessError(f"unknown candidate kind {name!r}{did_you_mean(name, kind_names())}; "
                               f"known: {', '.join(kind_names())}")
    if not isinstance(found, CandidateKind):
        raise HarnessError(f"candidate kind {name!r} is registered as {found!r}, not a CandidateKind")
    _INSTANCES[name] = found
    return found


def parse_options(model: type[BaseModel], options: dict[str, Any], candidate: str) -> Any:
    """``model`` validated from ``options``; each problem names the option (field) it is about."""
    from harness.yamlfile import validation_problems

    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, model, f"candidate {candidate}", {})) from None


__all__ = ["KINDS", "TRAIN_KIND_METHODS", "CandidateKind", "CandidatePlan", "kind_names", "kind_of", "parse_options"]
