"""Rubrics: one YAML file drives both the LLM judge and the human rating panel.

A rubric names one or more criteria; each criterion describes every level of a 1-5 scale.
``Rubric.hash`` is a hash of the canonical content (not the file's bytes: comments and
layout do not matter), so a judgment can be tied to the exact rubric version that made it.

Metric names in goal files refer to rubrics: ``judge.tone`` is the mean over the rubric's
criteria, ``judge.tone.formal`` one criterion (see :func:`parse_judge_metric`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from harness.errors import HarnessError, InputError, Problem
from harness.registry import did_you_mean

SCALE: tuple[int, ...] = (1, 2, 3, 4, 5)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class Criterion(BaseModel):
    """One thing to judge, with a description of every level of the 1-5 scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short identifier, used in metric names: judge.<rubric>.<name>.")
    description: str = Field(description="What this criterion measures, in a sentence or two.")
    scale: dict[int, str] = Field(description="Every level 1..5 mapped to what an answer at that level looks like.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use letters, digits, '_' or '-' (no dots or spaces)")
        return v

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

    name: str = Field(description="Rubric name; must match the file name (tone.yaml → tone).")
    description: str = Field(description="What the rubric is for; shown to judges and raters.")
    version: str | None = Field(default=None, description="Free-form version note; the hash is the real version.")
    criteria: list[Criterion] = Field(description="One or more criteria, each scored 1-5.")

    _source: str = PrivateAttr(default="")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("use letters, digits, '_' or '-' (no dots or spaces)")
        return v

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
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]

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
    """Resolve a rubric name (looked up in ``rubrics_dir``) or a path to a file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or len(p.parts) > 1:
        if not p.is_file():
            raise InputError(Problem(str(p), None, None, "rubric file not found"))
        return p
    for suffix in (".yaml", ".yml"):
        cand = Path(rubrics_dir) / f"{name_or_path}{suffix}"
        if cand.is_file():
            return cand
    known = list_rubrics(rubrics_dir)
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
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(Problem(file, line, None, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")) from None
    if not isinstance(data, dict):
        raise InputError(Problem(file, 1, None, "a rubric must be a mapping with name, description and criteria"))
    try:
        rubric = Rubric.model_validate(data)
    except ValidationError as exc:
        raise InputError([_problem(err, node, file) for err in exc.errors()]) from None
    if expected_name is not None and rubric.name != expected_name:
        raise InputError(Problem(file, _line_for(node, ("name",)), "name",
                                 f"name {rubric.name!r} must match the file name {expected_name!r}"))
    rubric._source = file
    return rubric


def _problem(err: dict[str, Any], node: yaml.Node | None, file: str) -> Problem:
    loc = tuple(err["loc"])
    field = _field_name(loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        msg = f"unknown key {loc[-1]!r}{did_you_mean(str(loc[-1]), allowed)}; allowed: {', '.join(sorted(allowed))}"
    elif err["type"] == "missing":
        msg = f"missing required key {loc[-1]!r}"
    return Problem(file, _line_for(node, loc), field or None, msg)


def _allowed_keys(parent: tuple) -> list[str]:
    if len(parent) == 2 and parent[0] == "criteria":
        return list(Criterion.model_fields)
    return list(Rubric.model_fields)


def _field_name(loc: tuple) -> str:
    """``('criteria', 0, 'scale', 3)`` → ``criteria[0].scale.3``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] == "criteria":
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_for(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk the composed YAML node tree along a pydantic error location; 1-based line."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if str(key.value) == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_judge_metric(metric: str) -> tuple[str, str | None]:
    """``judge.tone`` → ``("tone", None)``; ``judge.tone.formal`` → ``("tone", "formal")``."""
    parts = metric.split(".")
    if len(parts) not in (2, 3) or parts[0] != "judge" or not all(parts[1:]):
        raise HarnessError(f"{metric!r} is not a judge metric; use judge.<rubric> or judge.<rubric>.<criterion>")
    return parts[1], (parts[2] if len(parts) == 3 else None)


def is_judge_metric(metric: str) -> bool:
    return metric.startswith("judge.")
