"""Metrics: reference metrics, rule checks and semantic metrics behind one registry.

Every metric is ``fn(outputs, examples, **args) -> MetricResult``. A result carries
per-example *sufficient statistics* (``stats``, shape ``(n, k)``) and an ``aggregate``
that maps summed statistics ``(..., k)`` to the metric value ``(...)``. So
``aggregate(stats.sum(0)) == value`` and a bootstrap is ``aggregate(counts @ stats)``
for a ``(B, n)`` matrix of resample counts: exact for corpus-level metrics (BLEU, chrF,
F1) as well as for means, and one matrix product for all resamples.

Registry metadata: ``higher_is_better``, ``kind`` ("reference" | "check" | "semantic" |
"custom"), ``needs_model`` (needs a generation/judge model; the small local embedding
model of the semantic metrics is flagged separately as ``needs_embeddings``).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from harness.errors import HarnessError, InputError, Problem
from harness.registry import Registry, import_object

METRICS = Registry("metric")


def mean_aggregate(sums: np.ndarray) -> np.ndarray:
    """Columns (sum of values, count of values) -> mean; NaN where the count is 0."""
    sums = np.asarray(sums, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[..., 0] / sums[..., 1]


@dataclass
class MetricResult:
    """A scored metric with what a bootstrap needs to resample it exactly.

    ``per_example`` is for display (``None`` where not meaningful); ``stats``/``aggregate``
    are what statistics use; ``extra`` holds details such as per-label F1,
    ``unparseable_rate`` or check ``reasons``.
    """

    name: str
    value: float
    per_example: list[float | None]
    stats: np.ndarray
    aggregate: Callable[[np.ndarray], np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool = True

    @property
    def n(self) -> int:
        return int(self.stats.shape[0])

    def recompute(self) -> float:
        """The value from the statistics alone (equals ``value``)."""
        return float(self.aggregate(self.stats.sum(axis=0)))


def from_values(name: str, values: Sequence[float | bool | None], extra: dict[str, Any] | None = None,
                higher_is_better: bool = True) -> MetricResult:
    """A mean-type result from per-example values; ``None`` values are left out of the mean."""
    per: list[float | None] = []
    stats = np.zeros((len(values), 2), dtype=float)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            per.append(None)
            continue
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise HarnessError(f"metric {name!r}: value {v!r} for example {i} is not a number") from None
        per.append(fv)
        stats[i] = (fv, 1.0)
    info = {"n": len(values)}
    if per and all(v in (0.0, 1.0) for v in per if v is not None):
        info["binary"] = True
    info.update(extra or {})
    value = float(mean_aggregate(stats.sum(axis=0))) if len(values) else float("nan")
    return MetricResult(name, value, per, stats, mean_aggregate, info, higher_is_better)


def _is_per_example_fn(fn: Callable) -> bool:
    """A user callable scores one example at a time when it says so or its first
    parameter is named ``output`` (singular); otherwise it gets the whole lists."""
    if getattr(fn, "harness_per_example", False):
        return True
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "output"


def wrap_user_metric(fn: Callable, name: str) -> Callable[..., MetricResult]:
    """Adapt a user's callable to the metric signature.

    Accepted shapes:
    * ``fn(outputs, examples, **args) -> MetricResult`` - used as is;
    * ``fn(outputs, examples, **args) -> list[float | bool | None]`` - one value per
      example, averaged (``None`` left out);
    * ``fn(output, example, **args) -> float | bool | None`` - called per example (the
      first parameter must be named ``output``, or set ``fn.harness_per_example = True``).
    """
    per_example = _is_per_example_fn(fn)

    def metric(outputs: list[str], examples: list, **args: Any) -> MetricResult:
        if per_example:
            values = [fn(o, e, **args) for o, e in zip(outputs, examples)]
        else:
            values = fn(outputs, examples, **args)
        if isinstance(values, MetricResult):
            return values
        if isinstance(values, (int, float, bool, np.number)) or values is None:
            raise HarnessError(
                f"user metric {name!r} returned a single number for the batch; return one value "
                "per example, a MetricResult, or take (output, example) to be called per example")
        values = list(values)
        if len(values) != len(outputs):
            raise HarnessError(f"user metric {name!r} returned {len(values)} values for {len(outputs)} outputs")
        return from_values(name, values)

    metric.__signature__ = _args_signature(fn)  # type: ignore[attr-defined]
    metric.__name__ = name
    return metric


def _args_signature(fn: Callable) -> inspect.Signature:
    """The user callable's signature (for argument checking), whatever its shape."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return inspect.Signature([inspect.Parameter("args", inspect.Parameter.VAR_KEYWORD)])


def resolve_metric(name: str) -> tuple[Callable[..., MetricResult], dict[str, Any]]:
    """A registered metric name, or ``"pkg.module:callable"`` for a user metric.

    Returns the metric function and its metadata.
    """
    if name in METRICS:
        return METRICS.get(name), dict(METRICS.meta(name))
    if ":" in name:
        fn = import_object(name)
        if not callable(fn):
            raise HarnessError(f"{name!r} is not callable")
        meta = {"higher_is_better": getattr(fn, "higher_is_better", True), "kind": "custom",
                "needs_model": False}
        return wrap_user_metric(fn, name), meta
    METRICS.get(name)  # raises with "did you mean"
    raise AssertionError("unreachable")


def _check_args(fn: Callable, name: str, args: dict[str, Any]) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in list(params.items())[2:]
                if v.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    problems = [Problem("<goal>", None, f"{name}.{key}",
                        f"unknown argument {key!r} for metric {name!r}; accepted: {', '.join(accepted) or 'none'}")
                for key in args if key not in accepted]
    missing = [p for p, v in list(params.items())[2:]
               if v.default is inspect.Parameter.empty and p not in args
               and v.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    problems += [Problem("<goal>", None, f"{name}.{p}", f"metric {name!r} needs argument {p!r}") for p in missing]
    if problems:
        raise InputError(problems)


def compute_metric(name_or_spec: str, outputs: Sequence[str], examples: Sequence, **args: Any) -> MetricResult:
    """Score ``outputs`` against ``examples`` with a registered or user metric.

    ``args`` are the goal's metric arguments; ``name`` among them is the display name
    (e.g. ``{metric: regex, pattern: "...", name: has_ticket_id}``).
    """
    display = args.pop("name", None) or name_or_spec
    if len(outputs) != len(examples):
        raise HarnessError(f"metric {display!r}: {len(outputs)} outputs for {len(examples)} examples")
    if not outputs:
        raise HarnessError(f"metric {display!r}: no outputs to score")
    fn, meta = resolve_metric(name_or_spec)
    _check_args(fn, name_or_spec, args)
    result = fn(list(outputs), list(examples), **args)
    if not isinstance(result, MetricResult):
        raise HarnessError(f"metric {display!r} did not return a MetricResult")
    result.name = display
    result.higher_is_better = bool(meta.get("higher_is_better", result.higher_is_better))
    result.extra.setdefault("n", len(outputs))
    return result


# Registration happens on import of the metric modules (kept last: they import METRICS).
from harness.metrics import checks as _checks  # noqa: E402,F401
from harness.metrics import reference as _reference  # noqa: E402,F401
from harness.metrics import semantic as _semantic  # noqa: E402,F401
from harness.metrics.reference import extract_label  # noqa: E402
from harness.metrics.checks import CheckResult  # noqa: E402

__all__ = ["METRICS", "MetricResult", "CheckResult", "compute_metric", "extract_label", "from_values",
           "mean_aggregate", "resolve_metric", "wrap_user_metric"]
