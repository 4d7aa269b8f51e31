"""Building without weights (random initialisation), ours vs the reference, for every classification builder.

Target: none slower (ratio <= 1.05, the noise band of this machine). Full mode takes 11 paired measurements
of each model (7 above 50M parameters); quick mode measures the models above 50M parameters once per side
without a warm-up, the others three times after one.
Run: ``python -m benchmarks.build [--quick] [--only ...]``.
"""

from __future__ import annotations

import gc
from dataclasses import replace

from ._harness import Report, median, paired_ratio, parse_settings, print_row, selected, time_interleaved
from .targets import all_targets

_LARGE = 50_000_000


def _num_params(target: object) -> int:
    from visionzoo.models import get_model_weights

    try:
        return int(get_model_weights(target.name).DEFAULT.meta.get("num_params", 0))  # type: ignore[attr-defined]
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    # Full mode repeats a build of a small model within one measurement (0.2 s), steadying 10-50 ms figures, and
    # takes 11 paired measurements of it (7 of a large model, whose single build already lasts 0.2-10 s): with 5,
    # a few of the 80 builders came out 1.06-1.12 in every full run, a different few each time, while each of
    # them measured 1.00-1.02 on its own.
    settings = replace(settings, warmup=1, min_time=0.0 if settings.quick else 0.2, repeats=3 if settings.quick else 11)
    report = Report("build", settings)
    for target in selected(report, all_targets(), args):
        params = _num_params(target)
        # The first build of a family pays one-off costs (imports, kernel set-up): a warm-up build absorbs them,
        # except for large models in quick mode, where one build per side is all the time allows.
        here = settings
        if params > _LARGE:
            here = replace(settings, repeats=1, warmup=0) if settings.quick else replace(settings, repeats=7)
        # Each model is dropped as soon as it is built (freeing is timed too, alike on both sides).
        builds = {side: (lambda side=side, target=target: target.build(side)) for side in ("ours", "reference")}
        times = time_interleaved(builds, here)
        gc.collect()
        ours, reference = median(times["ours"]), median(times["reference"])
        row = {
            "model": target.name,
            "params": params,
            "ours_s": ours,
            "reference_s": reference,
            "ratio": paired_ratio(times, "ours", "reference"),
            "repeats": here.repeats,
        }
        print_row(row)
        report.rows.append(row)
    ratios = [r["ratio"] for r in report.rows]
    report.summary = {
        "median_ratio": median(ratios) if ratios else None,
        "max_ratio": max(ratios) if ratios else None,
        "slower_than_1.05": [r["model"] for r in report.rows if r["ratio"] > 1.05],
        "target_max_ratio": 1.05,
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
