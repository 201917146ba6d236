"""``kind: prompt``: a prompting baseline on the local base model (zero-shot, system, few-shot)."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from harness.kinds import CandidateKind, CandidatePlan
from harness.prompts import PromptOptions

if TYPE_CHECKING:
    from harness.goals import Candidate
    from harness.runner.context import Outputs, Run


class PromptKind(CandidateKind):
    name: ClassVar[str] = "prompt"
    description: ClassVar[str] = "Prompting baseline on the local base model."
    Options = PromptOptions

    def plan(self, run: "Run", cand: "Candidate") -> CandidatePlan:
        from harness.runner.generation import generation_plan, local_prediction_keys

        _, keys = local_prediction_keys(run, cand, self._prompts(run, cand))
        return generation_plan(run, cand, keys)

    def produce(self, run: "Run", cand: "Candidate") -> "Outputs":
        from harness.runner.generation import generate_local

        return generate_local(run, cand, self._prompts(run, cand))

    def _prompts(self, run: "Run", cand: "Candidate") -> list[list[dict[str, str]]]:
        options = self.options(cand)
        # A baseline's name says its style too: `few-shot` and `system-…` need no options.
        return run.prompts(options, options.resolved_style(cand.name))
