"""The one build step pyproject.toml cannot declare: the top-level ``app.py``, ``leaderboards/``
and ``rubrics/`` (their one source, where a checkout uses them) are copied into the built
package as ``harness/_data/``, so a wheel carries the app and its defaults
(``harness.resources.shipped`` looks them up). Everything else is in pyproject.toml."""
from __future__ import annotations

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = runpy.run_path(str(ROOT / "harness" / "resources.py"))["SHIPPED"]  # its one list
KEEP = ("*.py", "*.yaml", "*.yml", "*.sql")


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "harness" / "_data"
        for name in SHIPPED:
            src, dst = ROOT / name, target / name
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=lambda d, names: [n for n in names if (Path(d) / n).is_file()
                                                         and not any(Path(n).match(k) for k in KEEP)
                                                         or n == "__pycache__"])
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithShippedFiles})
