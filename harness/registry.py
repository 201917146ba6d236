"""One registry pattern for everything users extend.

A registry maps a name to a factory plus metadata the UI and the planner read without
calling it (direction, aggregation, whether it needs a model). Entries may be lazy
``"module:attr"`` strings; third parties add entries through the entry-point group
``harness.<kind>``. Unknown names get a "did you mean" suggestion.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from harness.errors import HarnessError


@dataclass
class Entry:
    name: str
    target: Callable[..., Any] | str
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        if isinstance(self.target, str):
            self.target = import_object(self.target)
        return self.target


def import_object(spec: str) -> Any:
    """Import ``"package.module:attr"`` (or ``package.module.attr``)."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
    else:
        module, _, attr = spec.rpartition(".")
    if not module or not attr:
        raise HarnessError(f"{spec!r} is not an importable 'module:attr' name")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise HarnessError(f"cannot import {module!r} for {spec!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise HarnessError(f"{module!r} has no attribute {part!r} (from {spec!r})") from exc
    return obj


def did_you_mean(name: str, options: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._loaded_entry_points = False

    def register(self, name: str | None = None, **meta: Any) -> Callable[[Callable], Callable]:
        """Decorator: ``@metrics.register("rougeL", higher_is_better=True)``."""

        def wrap(fn: Callable) -> Callable:
            self.add(name or fn.__name__, fn, **meta)
            return fn

        return wrap

    def add(self, name: str, target: Callable | str, **meta: Any) -> None:
        if name in self._entries:
            raise HarnessError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, meta)

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=f"harness.{self.kind}"):
            if ep.name not in self._entries:
                self._entries[ep.name] = Entry(ep.name, ep.value, {})

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def entry(self, name: str) -> Entry:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise HarnessError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, set(self._entries))}; "
                f"known: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).load()

    def meta(self, name: str) -> dict[str, Any]:
        return self.entry(name).meta
