"""Files that ship with harness: the app's entry script, the leaderboard definitions and the
default rubrics.

Their one source is the repository's top level (``app.py``, ``leaderboards/``, ``rubrics/``);
building a wheel copies them into the package as ``harness/_data/`` (``setup.py``'s build
step), so ``pip install .`` then ``harness app`` works outside the checkout. Looked up in the
package first, then in the checkout the package was imported from.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED = ("app.py", "leaderboards", "rubrics")


def shipped(name: str) -> Path:
    """The shipped file or folder ``name`` (one of :data:`SHIPPED`): the installed copy, else the
    checkout's; a path that may not exist when neither has it."""
    packaged = Path(str(files("harness").joinpath("_data", name)))
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / name
