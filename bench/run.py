"""Run every benchmark side by side with its alternative and print one JSON line each.

    python bench/run.py                 # all of them (about 10-15 minutes on 2 cores)
    python bench/run.py --only judge    # one (names: stats, dedup, judge, leaderboard, rerun, generate, train)

Each bench module exposes ``run() -> list[dict]``; every dict carries at least
``bench``, ``ratio``, ``target`` and ``higher_is_better``. Ratios, medians over repeats,
never one absolute time: machines here are noisy.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# Cheap ones first so a partial run still says something.
BENCHES = ["validity", "stats", "dedup", "judge", "leaderboard", "rerun", "generate", "train"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    failed = 0
    for name in args.only or BENCHES:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench_{name}")
            rows = mod.run()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            failed += 1
            traceback.print_exc(file=sys.stderr)
            print(json.dumps({"bench": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        for row in rows:
            row.setdefault("bench_seconds", round(time.perf_counter() - t0, 1))
            print(json.dumps(row), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
