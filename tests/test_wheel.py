"""``pip install .`` users get the app: the wheel carries ``app.py``, ``leaderboards/`` and the
default ``rubrics/`` (copied into ``harness/_data/`` at build time), and ``harness app`` started
from a folder outside the checkout serves the leaderboard of a real store.

The wheel is built offline from a copy of the source (the checkout is left untouched) and
installed into a fresh venv that borrows this venv's packages through a ``.pth`` line (no
download, and this venv's own ``harness`` stays as it is).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, copy_project

pytestmark = pytest.mark.slow
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "app.py", "harness", "leaderboards", "rubrics")


def _clean_env() -> dict[str, str]:
    """No hint of the checkout or of a store: what the installed package finds, it finds itself."""
    drop = ("PYTHONPATH", "HARNESS_DB", "HARNESS_GOALS", "HARNESS_RUBRICS", "HARNESS_LEADERBOARDS", "HARNESS_APP_MODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return dict(env, HF_HUB_OFFLINE="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
                STREAMLIT_SERVER_FILE_WATCHER_TYPE="none")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel, the fresh venv's python, its ``harness`` script)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
        else:
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(base / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((base / "dist").glob("harness-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # This venv's packages (torch, streamlit, pip...) for the dependencies; a path line in a
    # .pth does not run the .pth files there, so this venv's editable harness is not seen.
    Path(purelib, "_deps.pth").write_text(next(p for p in sys.path if p.endswith("site-packages")) + "\n")
    inst = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert inst.returncode == 0, inst.stderr
    return wheel, python, venv / "bin" / "harness"


def test_the_wheel_carries_the_app_its_leaderboards_and_the_default_rubrics(installed, tmp_path):
    wheel, python, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("app.py", "leaderboards", "rubrics"):
        files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / top).rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts) if (ROOT / top).is_dir() else [top]
        assert files and {f"harness/_data/{f}" for f in files} <= names
    probe = ("import harness, harness.resources as r; from harness.judge.rubric import load_rubric; "
             "print(harness.__file__); print(*[r.shipped(n) for n in r.SHIPPED]); print(load_rubric('tone').name)")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    where, shipped, rubric = out.stdout.splitlines()
    venv = python.parent.parent
    assert Path(where).is_relative_to(venv) and rubric == "tone"  # a default rubric, found with no rubrics/ here
    assert all(Path(p).is_relative_to(venv) and Path(p).exists() for p in shipped.split())


@pytest.mark.browser
def test_harness_app_from_the_wheel_serves_the_leaderboard_outside_the_checkout(installed, tiny_run_project, tmp_path):
    from harness.netutil import free_port
    from tests.test_browser import _needs_a_browser, _wait_healthy, chromium_page

    _needs_a_browser()
    from playwright.sync_api import expect

    _, _, harness = installed
    info = copy_project(tiny_run_project, tmp_path / "proj")
    outside = tmp_path / "outside"  # no app.py, leaderboards/ or rubrics/ here
    outside.mkdir()
    port = free_port()
    proc = subprocess.Popen([str(harness), "app", "--port", str(port), "--db", str(info["db"])], cwd=outside,
                            env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # harness app starts streamlit as its child: stop both
    url = f"http://localhost:{port}"
    try:
        _wait_healthy(url, proc)
        with chromium_page() as page:
            page.goto(f"{url}/?page=Leaderboard&goal={info['goal']}")
            expect(page.get_by_text(f"Leaderboard · {info['goal']}")).to_be_visible()
            grid = page.locator("[data-testid='stDataFrame']").first
            expect(grid).to_be_visible()  # a leaderboard view from the shipped definitions
            assert page.get_by_text("No leaderboard definitions").count() == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
