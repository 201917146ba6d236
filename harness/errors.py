"""Errors the harness raises for bad input: each names where the problem is."""
from __future__ import annotations

from dataclasses import dataclass


class HarnessError(Exception):
    """Base class: an error the CLI reports without a traceback (exit code 2)."""


@dataclass
class Problem:
    """One problem in one input file, located as precisely as we can."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"


class InputError(HarnessError):
    """Bad user input; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(file="<input>", line=None, field=None, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SealedTestSetError(HarnessError):
    """The test split no longer matches the sealed one."""


class GPURequiredError(HarnessError):
    """A path that needs CUDA was asked for on a machine without it."""


class ModelNotAvailableError(HarnessError):
    """A model is not on this machine; nothing is downloaded at run time."""
