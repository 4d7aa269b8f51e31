"""Eager inference at batch 1 for every classification builder, ours vs the reference, at 224x224.

224 for all (models with a fixed input size use theirs) keeps the table comparable and the run short; the
representatives are measured at their native resolutions by ``benchmarks.eager``. All models share one process
here (a fresh one each would add minutes); both sides of a ratio run interleaved in the same state.
Run: ``python -m benchmarks.eager_all [--quick] [--only ...]``.
"""

from __future__ import annotations

from dataclasses import replace

from ._harness import Report, parse_settings, selected
from .eager import compare_eager, show_rows, summarise
from .targets import TASKS, all_targets

SIZE = TASKS["classification"].default_size


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    # ~80 models: short measurements keep `make bench` short (the eager targets are judged by benchmarks.eager).
    if settings.quick:
        settings = replace(settings, warmup=1, min_time=0.0)
    else:
        settings = replace(settings, repeats=7, min_time=0.2)
    report = Report("eager_all", settings)
    for target in selected(report, all_targets(), args):
        rows = compare_eager(target, (1,), settings, size=SIZE)
        show_rows(rows)
        report.rows += rows
    report.summary = summarise(report.rows, with_targets=False)
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
