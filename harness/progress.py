"""Progress for work that takes more than a second: one bar, one look, everywhere.

Generation (per example), training (per optimizer step, with the loss and the validation
loss), judging (per judgment) and index building (per passage) all open a :func:`bar`::

    with bar("zero-shot: generating", total=len(prompts), unit="examples") as b:
        for ...:
            b.advance(1)

On a terminal it is a rich progress line with counts, rate, elapsed time and ETA, left on
screen when done (a record of what ran). Elsewhere (a log file, a CI job, a test capturing
output) it prints plain lines instead: one each time another tenth is done, at most every
few seconds, and always a last one with the totals. Bars go to standard error, so a command's
standard output stays what it promised (``--json``: nothing but JSON). ``configure`` switches
every bar off (``harness run --quiet``) or sends them to another console; a bar opened while
another is live joins the same display.
"""
from __future__ import annotations

import time
from typing import Any

_SETTINGS: dict[str, Any] = {"enabled": True, "console": None}
_LIVE: dict[str, Any] = {"progress": None, "users": 0}
PLAIN_EVERY_S = 5.0  # plain output: at most one line this often (and one per tenth done)


def configure(*, enabled: bool | None = None, console: Any = None) -> None:
    """Every bar on or off (``harness run --quiet``), and the console they draw on (default:
    a rich console on standard error)."""
    if enabled is not None:
        _SETTINGS["enabled"] = enabled
    if console is not None:
        _SETTINGS["console"] = console


def _console() -> Any:
    if _SETTINGS["console"] is None:
        from rich.console import Console

        _SETTINGS["console"] = Console(stderr=True)
    return _SETTINGS["console"]


def rate_text(done: float, seconds: float, unit: str) -> str:
    """``12.3 examples/s``, or ``4.1 s/step`` when slower than one a second."""
    if done <= 0 or seconds <= 0:
        return f"– {unit}/s"
    per_s = done / seconds
    return f"{per_s:.3g} {unit}/s" if per_s >= 1 else f"{seconds / done:.3g} s/{unit.rstrip('s') or unit}"


def clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–:––"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Bar:
    """One unit of work's progress; see the module docstring. ``info`` fields (``loss=0.41``)
    are shown after the counts, and updated by :meth:`advance` or :meth:`update`."""

    def __init__(self, label: str, total: int | None, *, unit: str = "items", enabled: bool = True):
        self.label, self.unit, self.total = label, unit, total
        self.enabled = enabled and _SETTINGS["enabled"]
        self.done = 0
        self.info: dict[str, str] = {}
        self._task: Any = None
        self._plain = False
        self._started = self._last_line = 0.0
        self._last_tenth = 0

    def __enter__(self) -> "Bar":
        self._started = self._last_line = time.perf_counter()
        if self.enabled and self.total:
            self._open()
        return self

    def set_total(self, total: int) -> None:
        """The total, once known (a judge knows how many judgments it makes after the cache lookup)."""
        self.total = total
        if self.enabled and total and self._task is None and not self._plain:
            self._open()

    def _open(self) -> None:
        console = _console()
        if not (console.is_terminal and not console.is_dumb_terminal):
            self._plain = True
            return
        if _LIVE["progress"] is None:
            _LIVE["progress"] = _make_progress(console)
            _LIVE["progress"].start()
        _LIVE["users"] += 1
        self._task = _LIVE["progress"].add_task(self.label, total=self.total, unit=self.unit, info="")

    def advance(self, n: int = 1, **info: Any) -> None:
        self.done += n
        self.update(**info)

    def update(self, **info: Any) -> None:
        self.info.update({k: _fmt(v) for k, v in info.items() if v is not None})
        if self._task is not None:
            _LIVE["progress"].update(self._task, completed=self.done, info=self._info_text())
        elif self._plain and self.total:
            self._maybe_line()

    def _info_text(self) -> str:
        return "  ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.info.items())

    def _maybe_line(self) -> None:
        tenth = int(10 * self.done / self.total) if self.total else 0
        now = time.perf_counter()
        if tenth > self._last_tenth and now - self._last_line >= PLAIN_EVERY_S and self.done < self.total:
            self._last_tenth, self._last_line = tenth, now
            self._print_line(final=False)

    def _print_line(self, final: bool) -> None:
        elapsed = time.perf_counter() - self._started
        left = (self.total - self.done) * elapsed / self.done if self.done and self.total else None
        when = f"{clock(elapsed)} elapsed" if final else f"{clock(elapsed)} elapsed, ETA {clock(left)}"
        parts = [f"{self.label} {self.done}/{self.total} {self.unit}", rate_text(self.done, elapsed, self.unit),
                 when] + ([self._info_text()] if self.info else [])
        _console().print(", ".join(parts), highlight=False, markup=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            progress = _LIVE["progress"]
            progress.update(self._task, completed=self.done, info=self._info_text())
            _LIVE["users"] -= 1
            if _LIVE["users"] == 0:
                progress.stop()
                _LIVE["progress"] = None
        elif self._plain and self.done:
            self._print_line(final=True)


def bar(label: str, total: int | None, *, unit: str = "items", enabled: bool = True) -> Bar:
    """A progress bar for ``total`` units of ``label``'s work (a no-op when ``enabled`` is false,
    when :func:`configure` switched bars off, or for nothing to do)."""
    return Bar(label, total, unit=unit, enabled=enabled)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _make_progress(console: Any) -> Any:
    """One line a bar: label, bar, done/total unit, rate, elapsed, ETA, info; never wrapped (a
    narrow terminal cuts the label short instead)."""
    from rich.progress import (BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Column
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            per = rate_text(task.completed, task.elapsed or 0.0, task.fields.get("unit", "items"))
            return Text(per.replace(f" {task.fields.get('unit', 'items')}/s", "/s"), style="progress.data.speed")

    def fixed(**kw: Any) -> Column:
        return Column(no_wrap=True, **kw)

    return Progress(TextColumn("{task.description}", table_column=fixed(overflow="ellipsis", min_width=12)),
                    BarColumn(bar_width=20), TextColumn("{task.completed}/{task.total} {task.fields[unit]}",
                                                        table_column=fixed()),
                    Rate(table_column=fixed()), TimeElapsedColumn(table_column=fixed()),
                    TextColumn("ETA", table_column=fixed()), TimeRemainingColumn(table_column=fixed()),
                    TextColumn("{task.fields[info]}", table_column=fixed()), console=console, transient=False)
