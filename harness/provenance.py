"""What produced a result: package versions, the git commit, the host."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Iterable

RUN_PACKAGES = ("harness", "torch", "transformers", "peft", "trl", "duckdb", "openai", "anthropic")
TRAIN_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate")


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each package, None where it is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_state(cwd: str | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the working tree, (None, None) outside git or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=cwd).stdout.strip() or None
        if commit is None:
            return None, None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5,
                                    cwd=cwd).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def run_provenance() -> dict[str, Any]:
    """Stored with every run: versions, git commit and dirtiness, and the host."""
    commit, dirty = git_state()
    host = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "pid": os.getpid()}
    return {"versions": package_versions(RUN_PACKAGES), "git_commit": commit, "git_dirty": dirty, "host": host}
