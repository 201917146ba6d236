"""Checks of a goal that need the registries and the rubric files, all before any work.

:func:`harness.goals.load_goal` checks the file's shape; this checks what it names: candidate
kinds and their options, metrics, rubrics of the judge and the panel, the judge itself, and the
devices and precisions asked for (:mod:`harness.backends.device`). Every problem is collected
(not just the first) with the goal file's line and field. :func:`preflight` adds what needs the
split data: an adapter still to train that cannot train here, and a model trained on this
goal's test examples (:mod:`harness.train.seen`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, InputError, Problem
from harness.goals import Goal
from harness.metric_names import parse_metric_name
from harness.runner.context import rubrics_dir_for

if TYPE_CHECKING:
    from harness.runner.context import Run


def validate_goal(goal: Goal, rubrics_dir: str | Path = "rubrics") -> None:
    """Raise InputError listing every problem of ``goal``'s names and options."""
    rubrics = rubrics_dir_for(goal, rubrics_dir)
    problems = (_metric_problems(goal, rubrics) + _args_problems(goal) + _candidate_problems(goal)
                + _judge_problems(goal, rubrics)
                + _panel_problems(goal, rubrics) + _placement_problems(goal) + _engine_problems(goal))
    if problems:
        raise InputError(problems)


def preflight(run: "Run") -> None:
    """Raise InputError for what each kind finds wrong once the data is split (a qlora adapter
    still to train on a machine without CUDA), at the candidate's line, before the run is booked."""
    from harness.kinds import kind_of

    index = {c.name: i for i, c in enumerate(run.goal.candidates)}
    problems = [_option_problem(run.goal, index[cand.name], p)
                for cand in run.candidates for p in kind_of(cand).preflight(run, cand)]
    problems += _seen_test_problems(run, index)
    if problems:
        raise InputError(problems)


def _seen_test_problems(run: "Run", index: dict[str, int]) -> list[Problem]:
    """A local model the harness trained (a ``full`` fine-tune, a merged export: its
    ``harness_seen.json``, :mod:`harness.train.seen`) that saw some of this goal's test examples
    in training or validation — its own or its base's: its scores would be recall of their
    answers, not skill. Refused at the ``model:`` line that names it; a model whose record is
    damaged, or that the harness trained before it kept one, is said to be unchecked."""
    from harness.train.seen import UNREADABLE, read_seen

    found: dict[tuple, Problem] = {}
    checked: dict[Path, tuple[Any, list]] = {}  # model folder -> (what it saw, the test examples among them)
    for cand in run.candidates:
        spec, loc = _model_named(run, cand, index)
        folder = _model_folder(spec)
        if folder is None:
            continue
        if folder not in checked:  # candidates share models: read and compare once, say once
            seen = read_seen(folder)
            unknown = _unchecked(seen, folder)
            if unknown:
                run.say(f"[yellow]model {spec!r} was trained by the harness, but what it saw is {unknown}: it "
                        f"cannot be checked against this goal's test set[/]")
            checked[folder] = (seen, [] if seen is None or seen is UNREADABLE else seen.found(run.prepared.test))
        seen, hit = checked[folder]
        if hit:
            lines = ", ".join(str(ex.line) for ex in sorted(hit, key=lambda e: e.line)[:5]) + (
                ", ..." if len(hit) > 5 else "")
            found[loc] = _problem(run.goal, loc, (
                f"model {spec!r} ({seen.trained_by}) was trained on {len(hit)} of this goal's "
                f"{len(run.prepared.test)} test examples ({run.goal.data.path} lines {lines}, by content): its scores "
                f"would be recall of their answers, not skill. Evaluate it on data it was not trained on, or "
                f"leave this candidate out"))
    return list(found.values())


def _unchecked(seen: Any, folder: Path) -> str | None:
    """Why a harness-trained model cannot be checked against the test set, or None."""
    from harness.train.seen import UNREADABLE
    from harness.train.sft import METADATA_FILE

    if seen is UNREADABLE:
        return "damaged"
    if seen is None:
        return "not recorded (trained before that was kept)" if (folder / METADATA_FILE).is_file() else None
    return "not recorded for its base" if seen.base_unchecked else None


def _model_named(run: "Run", cand, index: dict[str, int]) -> tuple[str | None, tuple]:
    """The local model a candidate runs on and where the goal names it: its own ``model:``, the
    one of the candidate whose adapter it answers with (``adapter_of``), else the goal's."""
    from harness.kinds import kind_of

    kind = kind_of(cand)
    if not kind.local_model:
        return None, ()
    spec = kind.model_of(run.goal, cand)
    for name in [cand.name, *kind.needs(cand)]:
        other = run.goal.candidate(name)
        if other.model and other.model == spec:
            return spec, ("candidates", index[name], "model")
    return spec, ("model",)


def _model_folder(spec: str | None) -> Path | None:
    """The folder a model spec loads from, where that is known without converting or fetching
    anything (the default model is never one the harness trained)."""
    from harness.backends.modelhub import DEFAULT_ALIASES, resolve_model

    if not spec or spec.strip().lower() in DEFAULT_ALIASES or spec.endswith(".gguf"):
        return None
    try:
        return resolve_model(spec).path
    except HarnessError:
        return None


def _problem(goal: Goal, loc: tuple, message: str) -> Problem:
    """At ``loc``'s line; a candidate a sweep made is found at the entry it came from, and named."""
    from harness.yamlfile import field_name

    if len(loc) >= 2 and loc[0] == "candidates" and isinstance(loc[1], int) and loc[1] < len(goal.candidates):
        cand = goal.candidates[loc[1]]
        if cand.sweep_of:
            message = f"{cand.name} (swept from {cand.sweep_of!r}): {message}"
        loc = ("candidates", goal.entry_of(loc[1]), *loc[2:])
    return Problem(goal.source or "<goal>", goal.line_of(*loc), field_name(loc), message)


def _metric_problems(goal: Goal, rubrics: Path) -> list[Problem]:
    from harness.judge.rubric import load_rubric
    from harness.metrics import METRICS, resolve_metric

    problems = []
    named = {m.name for m in goal.metrics}
    for i, m in enumerate(goal.metrics):
        try:
            resolve_metric(m.metric)
        except HarnessError as exc:
            problems.append(_problem(goal, ("metrics", i, "metric"), str(exc)))
    for i, c in enumerate(goal.success):
        loc = ("success", i, "metric")
        if c.metric in named:
            continue
        try:
            name = parse_metric_name(c.metric)
        except HarnessError as exc:
            problems.append(_problem(goal, loc, str(exc)))
            continue
        if name.rated:
            try:
                rubric = load_rubric(str(name.rubric), rubrics)
                if name.criterion:
                    rubric.criterion(name.criterion)
            except HarnessError as exc:
                problems.append(_problem(goal, loc, str(exc)))
            section = "judge" if name.source == "judge" else "human"
            if getattr(goal, section) is None:
                what = "naming the judge model" if section == "judge" else "for the panel"
                problems.append(_problem(goal, loc, f"{c.metric} needs a `{section}:` section {what}"))
        elif ":" not in c.metric and c.metric not in METRICS:
            try:
                METRICS.get(c.metric)
            except HarnessError as exc:
                problems.append(_problem(goal, loc, str(exc)))
    return problems + _scale_problems(goal)


def _scale_problems(goal: Goal) -> list[Problem]:
    """An absolute threshold outside its metric's scale (``at_most: 5`` on a 0–1 share, meant as
    5%) is no goal: the metric cannot miss it, or cannot meet it. Metrics register their scale
    (``scale=(0, 1)``); a verdict also refuses to pass one it cannot miss (``verdict``)."""
    from harness.metrics import METRICS
    from harness.verdict import percent_hint

    problems = []
    specs = {m.name: m.metric for m in goal.metrics}
    for i, c in enumerate(goal.success):
        base = specs.get(c.metric, c.metric)
        if c.relative_op or base not in METRICS or not METRICS.meta(base).get("scale"):
            continue
        lo, hi = METRICS.meta(base)["scale"]
        if not lo <= c.threshold <= hi:
            problems.append(_problem(goal, ("success", i, c.op), (
                f"{c.metric} lies between {lo:g} and {hi:g}; {c.threshold:g} is outside it"
                f"{percent_hint(c.threshold, hi)}")))
    return problems


def _args_problems(goal: Goal) -> list[Problem]:
    """A metric name is scored once per candidate, with one set of arguments (``scoring.metric_args``
    merges them): criteria on the same name whose ``args`` differ from each other, or contradict
    the name's ``metrics:`` entry, would be decided on someone else's arguments. Each variant needs
    a name of its own. (A criterion without ``args`` takes the name's.)"""
    problems = []
    spec_args = {m.name: dict(m.args) for m in goal.metrics}
    first: dict[str, tuple[int, dict]] = {}
    for i, c in enumerate(goal.success):
        if not c.args:
            continue
        given = dict(c.args)
        spec = spec_args.get(c.metric, {})
        clash = sorted(k for k in set(given) & set(spec) if given[k] != spec[k])
        j, earlier = first.setdefault(c.metric, (i, given))
        if clash:
            why = f"these args ({', '.join(clash)}) differ from its `metrics:` entry's"
        elif earlier != given:
            why = f"its args differ from criterion {j + 1}'s ({earlier})"
        else:
            continue
        problems.append(_problem(goal, ("success", i, "args"), (
            f"{c.metric!r} is scored once per candidate, but {why}; give each variant its own name under "
            f"`metrics:` (name: ..., metric: {c.metric.split(':')[0]}, args: ...) and use that name in the criterion")))
    return problems


def _candidate_problems(goal: Goal) -> list[Problem]:
    from harness.kinds import kind_of

    problems = []
    for i, cand in enumerate(goal.candidates):
        try:
            kind = kind_of(cand.kind)
        except HarnessError as exc:
            problems.append(_problem(goal, ("candidates", i, "kind"), str(exc)))
            continue
        try:
            options = kind.options(cand)
        except InputError as exc:
            problems.extend(_option_problem(goal, i, p) for p in exc.problems)
            continue
        problems.extend(_option_problem(goal, i, p) for p in kind.check(cand, goal, options))
    return problems


def _option_problem(goal: Goal, i: int, p: Problem) -> Problem:
    """A kind's problem about one option, located at that option's line in the goal file."""
    key = (p.field or "").split(".")[0].split("[")[0]
    loc = ("candidates", i, key) if key else ("candidates", i)
    nested = ("candidates", i, *(p.field or "").split("."))  # an option's own key, e.g. train.launcher
    written = ("candidates", goal.entry_of(i), *nested[2:])
    if "[" not in (p.field or "") and len(nested) > len(loc) and goal.line_of(*written) is not None:
        loc = nested
    return _problem(goal, loc, p.message)


def _judge_problems(goal: Goal, rubrics: Path) -> list[Problem]:
    if goal.judge is None:
        return []
    from harness.judge.judge import make_judge

    problems = _rubric_problems(goal, "judge", goal.judge.rubrics, rubrics)
    opts = {k: v for k, v in (goal.judge.model_extra or {}).items() if k != "baseline"}
    try:
        make_judge(goal.judge.model, **opts)
    except (HarnessError, TypeError) as exc:  # TypeError: an option the judge's factory does not take
        message = str(exc) if isinstance(exc, HarnessError) else f"judge {goal.judge.model!r}: {exc}"
        # An option the message names (before its list of known ones) is reported at its own line.
        named = message.split("known:")[0].replace(goal.judge.model, "")
        blamed = [k for k in opts if re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", named)]
        problems += [_problem(goal, ("judge", k), message) for k in blamed] or \
            [_problem(goal, ("judge", "model"), message)]
    return problems


def _placement_problems(goal: Goal) -> list[Problem]:
    """Every device / dtype the goal, its candidates and a local judge ask for that this machine
    cannot run (no CUDA, cuda:N past the count, float16 on the CPU...), at the line that set it."""
    from harness.backends.device import placement_problems

    problems, seen = [], set()

    def check(section: tuple, device: str | None, dtype: str | None) -> None:
        device, dtype = device or goal.device, dtype or goal.dtype
        for field, message in placement_problems(device, dtype):
            set_here = getattr(_at(goal, section), field, None) is not None
            loc = (*section, field) if set_here else (field,)  # the line that chose the value
            if (loc, message) not in seen:
                seen.add((loc, message))
                problems.append(_problem(goal, loc, message))

    check((), goal.device, goal.dtype)
    for i, cand in enumerate(goal.candidates):
        if cand.device is not None or cand.dtype is not None:
            check(("candidates", i), cand.device, cand.dtype)
    if goal.judge is not None and goal.judge.model.startswith("local:"):
        check(("judge",), goal.judge.device, goal.judge.dtype)
    elif goal.judge is not None and (goal.judge.device or goal.judge.dtype):
        field = "device" if goal.judge.device else "dtype"
        problems.append(_problem(goal, ("judge", field), f"{field} applies to a local judge only "
                                                         f"(judge {goal.judge.model!r} runs elsewhere)"))
    return problems


def _engine_problems(goal: Goal) -> list[Problem]:
    """``engine: vllm`` needs the vllm command (or ``engine_url``), and applies to candidates on the
    goal's base model (:mod:`harness.runner.engine`); ``engine_url`` is an http(s) address."""
    from harness.backends.vllm import MISSING, OUTPUT_FLAGS, find_vllm
    from harness.kinds import kind_of

    problems = []
    if goal.engine_url is not None and not goal.engine_url.startswith(("http://", "https://")):
        problems.append(_problem(goal, ("engine_url",), f"engine_url must be an http(s) address, got {goal.engine_url!r}"))
    asked = [("engine",)] if goal.engine == "vllm" else []
    for i, cand in enumerate(goal.candidates):
        if cand.engine != "vllm":
            continue
        asked.append(("candidates", i, "engine"))
        local = cand.kind in _known_kinds() and kind_of(cand).local_model
        if not local or (cand.model and cand.model != goal.model):
            problems.append(_problem(goal, ("candidates", i, "engine"),
                                     "engine: vllm serves the goal's base model and its LoRA adapters; this candidate "
                                     + ("runs no local model" if not local else "names another model")))
    if asked and goal.engine_url is None and find_vllm() is None:
        problems.append(_problem(goal, asked[0], MISSING))
    for key in ("engine_url", "engine_args"):
        if getattr(goal, key) and not asked:
            problems.append(_problem(goal, (key,), f"{key} applies to engine: vllm, which no part of this goal uses"))
    for i, arg in enumerate(goal.engine_args):
        if (flag := str(arg).split("=", 1)[0]) in OUTPUT_FLAGS:
            problems.append(_problem(goal, ("engine_args", i), f"{flag} is the harness's to set (it changes the "
                                                               "outputs stored under the candidates' keys)"))
    return problems


def _known_kinds() -> set[str]:
    from harness.kinds import kind_names

    return set(kind_names())


def _at(goal: Goal, section: tuple) -> object:
    """The goal part a location names: the goal itself, ``("candidates", i)`` or ``("judge",)``."""
    if not section:
        return goal
    return goal.candidates[section[1]] if section[0] == "candidates" else goal.judge


def _panel_problems(goal: Goal, rubrics: Path) -> list[Problem]:
    if goal.human is None:
        return []
    return _rubric_problems(goal, "human", goal.human.rubrics, rubrics)


def _rubric_problems(goal: Goal, section: str, names: list[str], rubrics: Path) -> list[Problem]:
    """A problem per rubric of ``section`` (judge / human) that does not load."""
    from harness.judge.rubric import load_rubric

    problems = []
    for j, name in enumerate(names):
        try:
            load_rubric(name, rubrics)
        except HarnessError as exc:
            problems.append(_problem(goal, (section, "rubrics", j), str(exc)))
    return problems
