"""Rubrics: one YAML file drives both the LLM judge and the human rating panel.

A rubric names one or more criteria; each criterion describes every level of a 1-5 scale.
``Rubric.hash`` is a hash of the canonical content (not the file's bytes: comments and
layout do not matter), so a judgment can be tied to the exact rubric version that made it.

Metric names in goal files refer to rubrics: ``judge.tone`` is the mean over the rubric's
criteria, ``judge.tone.formal`` one criterion (see :mod:`harness.metric_names`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from harness.cache import json_digest
from harness.errors import HarnessError, InputError, Problem
from harness.registry import did_you_mean
from harness.yamlfile import line_for, parse_model, parse_yaml

SCALE: tuple[int, ...] = (1, 2, 3, 4, 5)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _check_name(v: str) -> str:
    """Rubric and criterion names end up in metric names (judge.<rubric>.<criterion>)."""
    if not NAME_RE.match(v):
        raise ValueError("use letters, digits, '_' or '-' (no dots or spaces)")
    return v


RubricName = Annotated[str, AfterValidator(_check_name)]


class Criterion(BaseModel):
    """One thing to judge, with a description of every level of the 1-5 scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RubricName = Field(description="Short identifier, used in metric names: judge.<rubric>.<name>.")
    description: str = Field(description="What this criterion measures, in a sentence or two.")
    scale: dict[int, str] = Field(description="Every level 1..5 mapped to what an answer at that level looks like.")

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is empty")
        return v.strip()

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: dict[int, str]) -> dict[int, str]:
        missing = [k for k in SCALE if k not in v]
        extra = sorted(k for k in v if k not in SCALE)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing level(s) {', '.join(map(str, missing))}")
            if extra:
                parts.append(f"unexpected level(s) {', '.join(map(str, extra))}")
            raise ValueError(f"every level 1-5 must be described: {'; '.join(parts)}")
        empty = [k for k in SCALE if not str(v[k]).strip()]
        if empty:
            raise ValueError(f"level(s) {', '.join(map(str, empty))} have no description")
        return {k: v[k].strip() for k in SCALE}


class Rubric(BaseModel):
    """A named set of criteria."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RubricName = Field(description="Rubric name; must match the file name (tone.yaml → tone).")
    description: str = Field(description="What the rubric is for; shown to judges and raters.")
    version: str | None = Field(default=None, description="Free-form version note; the hash is the real version.")
    criteria: list[Criterion] = Field(description="One or more criteria, each scored 1-5.")

    _source: str = PrivateAttr(default="")

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v: list[Criterion]) -> list[Criterion]:
        if not v:
            raise ValueError("at least one criterion is needed")
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate criterion name(s) {', '.join(dupes)}")
        return v

    @property
    def source(self) -> str:
        return self._source

    @property
    def hash(self) -> str:
        """Content hash of the canonical rubric (16 hex chars)."""
        return json_digest(self.model_dump(mode="json"), 16)

    @property
    def criterion_names(self) -> list[str]:
        return [c.name for c in self.criteria]

    def criterion(self, name: str) -> Criterion:
        for c in self.criteria:
            if c.name == name:
                return c
        raise HarnessError(
            f"rubric {self.name!r} has no criterion {name!r}{did_you_mean(name, self.criterion_names)}; "
            f"it has: {', '.join(self.criterion_names)}"
        )


# --- loading -------------------------------------------------------------------------------

def list_rubrics(rubrics_dir: str | Path = "rubrics") -> list[str]:
    """Names of the rubric files in a folder (``tone.yaml`` → ``tone``)."""
    d = Path(rubrics_dir)
    if not d.is_dir():
        return []
    return sorted({p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})


def rubric_path(name_or_path: str | Path, rubrics_dir: str | Path = "rubrics") -> Path:
    """Resolve a rubric name (looked up in ``rubrics_dir``, then among the rubrics harness ships)
    or a path to a file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or len(p.parts) > 1:
        if not p.is_file():
            raise InputError(Problem(str(p), None, None, "rubric file not found"))
        return p
    from harness.resources import shipped

    # The goal's rubrics folder first; a name it lacks may be one of the rubrics harness ships.
    for folder in (Path(rubrics_dir), shipped("rubrics")):
        for suffix in (".yaml", ".yml"):
            cand = folder / f"{name_or_path}{suffix}"
            if cand.is_file():
                return cand
    known = sorted(set(list_rubrics(rubrics_dir)) | set(list_rubrics(shipped("rubrics"))))
    raise HarnessError(
        f"no rubric {str(name_or_path)!r} in {str(rubrics_dir)!r}{did_you_mean(str(name_or_path), known)}; "
        f"known: {', '.join(known) or '(none)'}"
    )


def load_rubric(name_or_path: str | Path, rubrics_dir: str | Path = "rubrics") -> Rubric:
    """Load and validate a rubric; every problem is reported with file:line and field."""
    path = rubric_path(name_or_path, rubrics_dir)
    return parse_rubric(path.read_text(encoding="utf-8"), file=str(path), expected_name=path.stem)


def parse_rubric(text: str, file: str = "<rubric>", expected_name: str | None = None) -> Rubric:
    """Validate rubric YAML text. ``expected_name`` (the file stem) must equal ``name``."""
    data, lines = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise InputError(Problem(file, 1, None, "a rubric must be a mapping with name, description and criteria"))
    rubric: Rubric = parse_model(Rubric, data, file, lines)
    if expected_name is not None and rubric.name != expected_name:
        raise InputError(Problem(file, line_for(("name",), lines), "name",
                                 f"name {rubric.name!r} must match the file name {expected_name!r}"))
    rubric._source = file
    return rubric

