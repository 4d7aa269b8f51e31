"""Shared machinery of the benchmarks: settings, interleaved timing, fresh subprocesses, result files.

Every benchmark compares visionzoo ("ours") with the reference in one process, alternating which side runs
first in each repeat so that drifting machine load hits both alike, and reports the median time of each
side and the median over repeats of the paired ratio ours / reference (below 1 means we are faster).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("VISIONZOO_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
QUICK_ENV = "VISIONZOO_BENCH_QUICK"

# glibc malloc kept from handing memory back to the system (mmap threshold at its maximum, no trimming). Under
# the defaults an eager model pays page faults for much of its activation memory on every call, and how many
# depends on the order of earlier allocations and frees rather than on the model's arithmetic.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}

# ONNX Runtime's thread pool spins after a call returns: on 2 cores it slowed the side timed next by 7-20%
# (mobilenet_v3_large at batch 8), and 50 ms of idleness first removed that.
ORT_SPIN_SETTLE_S = 0.1


@dataclass(frozen=True)
class Settings:
    """How hard to measure. Quick mode keeps ``make bench`` short; the full mode is for published numbers.

    repeats: measurements per side (the median is reported); warmup: untimed calls per side first;
    min_time: each measurement repeats the call until it lasts at least this long (seconds), which keeps
    timer resolution and scheduler noise small for fast models; pause: seconds of idleness before each
    measurement, for benchmarks with a side that leaves threads spinning after its call returns, which
    would compete with the next side (ONNX Runtime's pool: ``ORT_SPIN_SETTLE_S``).
    """

    quick: bool
    repeats: int
    warmup: int
    min_time: float
    fresh_repeats: int  # measurements in fresh subprocesses (loading, import time)
    pause: float = 0.0

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, repeats=7, warmup=1, min_time=0.05, fresh_repeats=1)
        return cls(quick=False, repeats=15, warmup=2, min_time=0.5, fresh_repeats=3)


def parse_settings(description: str, argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Command-line options every benchmark script shares: ``--quick`` (or ``VISIONZOO_BENCH_QUICK=1``), ``--only``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=f"short run (also set by {QUICK_ENV}=1)")
    parser.add_argument("--only", default="", help="comma-separated model names to restrict the run to")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get(QUICK_ENV, "") not in ("", "0")
    return Settings.make(quick), args


def selected(report: Report, targets: Sequence[Any], args: argparse.Namespace) -> Iterator[Any]:
    """The targets that ``--only`` names (all of them without it) and both sides provide, in order; those a
    side lacks are noted in ``report`` as skipped."""
    chosen = {n.strip() for n in args.only.split(",") if n.strip()}
    for target in targets:
        if chosen and target.name not in chosen:
            continue
        reason = target.missing()
        if reason:
            skip(report, reason)
            continue
        yield target


# ----------------------------------------------------------------------------------------------- timing


def _calls_per_measurement(fn: Callable[[], Any], min_time: float) -> int:
    if min_time <= 0:
        return 1
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(min_time / max(once, 1e-6)))


def time_interleaved(fns: dict[str, Callable[[], Any]], settings: Settings) -> dict[str, list[float]]:
    """Seconds per call of each function, ``settings.repeats`` times, alternating the order of the sides.

    The functions warm up first; each measurement repeats its call enough times to last ``min_time``, after
    ``pause`` seconds of idleness (another side's spinning threads settle). As in
    ``timeit``, Python's cyclic garbage collector is off while a measurement runs and collects in between:
    otherwise a full collection, triggered by whatever either side allocated, lands in one side's measurement
    at random (neither side's models hold reference cycles, so everything they drop is still freed, and timed,
    at once).
    """
    counts = {}
    for name, fn in fns.items():
        for _ in range(settings.warmup):
            fn()
        counts[name] = _calls_per_measurement(fn, settings.min_time)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for repeat in range(settings.repeats):
        for name in order if repeat % 2 == 0 else reversed(order):
            fn, count = fns[name], counts[name]
            time.sleep(settings.pause)
            with _collector_paused():
                start = time.perf_counter()
                for _ in range(count):
                    fn()
                times[name].append((time.perf_counter() - start) / count)
    return times


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Collect garbage now, then keep Python's cyclic garbage collector off until the block ends."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(ours: float, reference: float) -> float:
    return ours / reference if reference > 0 else float("nan")


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over repeats of ``numerator / denominator`` measured back to back in the same repeat.

    Each pair shares the machine's load of that moment, so on a busy machine this is far steadier than the
    ratio of the two medians (which a load spike during one side's measurements skews).
    """
    return median([a / b for a, b in zip(times[numerator], times[denominator])])


# ----------------------------------------------------------------------------------------------- processes


def run_fresh(code: str, env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run ``code`` in a new Python process (same interpreter) and return the JSON it prints on its last line."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def in_fresh_process(function: Callable[..., Any], *args: Any, env: dict[str, str] | None = None) -> Any:
    """Call the module-level ``function(*args)`` in a new Python process and return its JSON-able result.

    Each model is measured in a process of its own so that what ran before cannot change what is measured:
    glibc's malloc raises its mmap threshold to the largest block freed so far, and the reference's eager
    mobilenet_v3_large at batch 8 took 96 ms in a fresh process but 42 ms after resnet50 had run in the same
    one (its larger activations had raised the threshold and the trim threshold with it).
    """
    module = function.__module__
    if module == "__main__":  # run as ``python -m benchmarks.x``: the child imports it by its real name
        module = sys.modules["__main__"].__spec__.name
    blob = base64.b64encode(pickle.dumps((module, function.__qualname__, args))).decode("ascii")
    code = (
        "import base64, importlib, json, pickle\n"
        f"module, name, args = pickle.loads(base64.b64decode({blob!r}))\n"
        "print(json.dumps(getattr(importlib.import_module(module), name)(*args)))\n"
    )
    return run_fresh(code, env=env)


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (None where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _proc_status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Start a new high-water mark of resident memory (Linux; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """Highest resident set size of this process (since ``reset_peak_rss``).

    Reads ``VmHWM``, which belongs to the process's own address space; ``getrusage``'s ``ru_maxrss`` would
    also count the parent's memory at fork time, which a fresh subprocess must not inherit.
    """
    try:
        return _proc_status_kb("VmHWM") * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


# ----------------------------------------------------------------------------------------------- results


def source_revision() -> str | None:
    """The git commit of the code being measured, with ``+changes`` when the working tree differs from it;
    None outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if dirty else "")


def environment() -> dict[str, Any]:
    """What the numbers depend on: the code's revision, versions, threads, CPU count and how busy the machine
    was."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "revision": source_revision(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": load,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class Report:
    """One benchmark's results: rows of measurements, a summary against the targets, and notes (skipped
    models and why, caveats)."""

    item: str
    settings: Settings
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.item}.json"
        payload = {
            "item": self.item,
            "settings": asdict(self.settings),
            "environment": environment(),
            "summary": self.summary,
            "rows": self.rows,
            "notes": self.notes,
        }
        path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        return path


def skip(report: Report, reason: str) -> None:
    """Record (and show) a model left out of this run, with the reason."""
    report.notes.append(f"skipped {reason}")
    print(f"  skipped {reason}", flush=True)


def print_row(row: dict[str, Any]) -> None:
    """One line per measured row, so long runs show progress."""
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
    print("  " + " ".join(parts), flush=True)
