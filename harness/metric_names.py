"""Metric names as goals write them: the one parser.

* ``judge.<rubric>`` / ``judge.<rubric>.<criterion>``: the LLM judge on a rubric (its mean over
  the rubric's criteria, or one criterion);
* ``human.<rubric>`` / ``human.<rubric>.<criterion>``: the human panel, the same way;
* anything else: a registered metric (``accuracy``), a goal's named metric (``one_word``) or a
  ``module:callable`` of the user's.

>>> parse_metric_name("judge.tone.formal")
MetricName(text='judge.tone.formal', source='judge', rubric='tone', criterion='formal')
>>> parse_metric_name("accuracy").source
'metric'
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

RATED_SOURCES = ("judge", "human")


@dataclass(frozen=True)
class MetricName:
    text: str
    source: str                 # "judge" | "human" | "metric"
    rubric: str | None = None
    criterion: str | None = None

    @property
    def rated(self) -> bool:
        """Scored on a rubric (by the judge or by humans), not computed from the outputs."""
        return self.source in RATED_SOURCES

    def with_source(self, source: str) -> "MetricName":
        """The same rubric (and criterion) scored by ``source``: judge.tone ↔ human.tone."""
        text = ".".join(p for p in (source, self.rubric, self.criterion) if p)
        return MetricName(text, source, self.rubric, self.criterion)


def parse_metric_name(name: str) -> MetricName:
    """Split a metric name; a malformed ``judge.``/``human.`` name is a HarnessError."""
    head = name.split(".", 1)[0]
    if head not in RATED_SOURCES or "." not in name:
        return MetricName(name, "metric")
    parts = name.split(".")
    if len(parts) not in (2, 3) or not all(parts[1:]):
        raise HarnessError(f"{name!r} is not a {head} metric: write {head}.<rubric> or {head}.<rubric>.<criterion>")
    return MetricName(name, head, parts[1], parts[2] if len(parts) == 3 else None)


def is_judge_metric(name: str) -> bool:
    return name.startswith("judge.")


def is_human_metric(name: str) -> bool:
    return name.startswith("human.")
