"""Run every benchmark, each in its own process, then write the summary and the plot.

    python -m benchmarks [--quick] [--items eager,optimized]

Each item writes ``benchmarks/results/<item>.json``; a failing item is reported and the others still run
(the exit status is non-zero if any failed). ``make bench`` calls this; ``make bench QUICK=1`` is quick mode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ._harness import QUICK_ENV, ROOT
from .report import main as write_report

# Cheapest and most central first, so an interrupted run still leaves the key numbers.
ITEMS = (
    "import_time",
    "eager",
    "optimized",
    "loading",
    "int8",
    "build",
    "eager_all",
    "ops",
    "ops_roi",
    "detection",
    "video_io",
    "flow",
    "video",
    "peers",
    "deploy",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"short run (also set by {QUICK_ENV}=1)")
    parser.add_argument("--items", default=",".join(ITEMS), help=f"comma-separated subset of {', '.join(ITEMS)}")
    args = parser.parse_args(argv)
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    unknown = [i for i in items if i not in ITEMS]
    if unknown:
        parser.error(f"unknown items {unknown}; choose from {', '.join(ITEMS)}")
    quick = args.quick or os.environ.get(QUICK_ENV, "") not in ("", "0")
    failed = []
    for item in items:
        print(f"== {item}{' (quick)' if quick else ''}", flush=True)
        start = time.perf_counter()
        command = [sys.executable, "-m", f"benchmarks.{item}", *(["--quick"] if quick else [])]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(item)
        print(f"== {item}: {time.perf_counter() - start:.0f} s", flush=True)
    write_report()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
