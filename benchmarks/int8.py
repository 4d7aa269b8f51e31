"""Int8 (fbgemm/x86) vs float32 ResNet-50, ours and the reference's, timed interleaved in one process.

Each side's int8 model is built by its own ``quantize=True`` path (fuse, calibrate, convert); ours then
takes the reference's quantized state_dict, so both run the same int8 weights and scales. The float models
share weights the same way. (``benchmarks/quantized_speed.py`` times ours alone with more options.)
Run: ``python -m benchmarks.int8 [--quick]``.
"""

from __future__ import annotations

from typing import Any

import torch

# Outputs are compared the way optimize_for_inference checks its own: one definition for both.
from visionzoo.inference import _max_difference as max_difference

from ._harness import Report, median, paired_ratio, parse_settings, print_row, skip, time_interleaved
from .targets import Target, build_pair

FLOAT = Target("resnet50")
INT8 = Target("quantized_resnet50", task="quantization", config={"quantize": True})
BATCH_SIZES = (1, 8)


def main(argv: list[str] | None = None) -> Report:
    settings, _ = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("int8", settings)
    reason = INT8.missing() or FLOAT.missing()
    if reason:
        skip(report, reason)
        report.write()
        return report
    floats, int8s = build_pair(FLOAT), build_pair(INT8)
    if int8s.note:
        report.notes.append(f"int8: {int8s.note}")
    models = {
        "ours_float": floats.ours,
        "reference_float": floats.reference,
        "ours_int8": int8s.ours,
        "reference_int8": int8s.reference,
    }
    for batch in BATCH_SIZES:
        (x,) = FLOAT.inputs(batch)
        with torch.inference_mode():
            int8_difference = max_difference(int8s.ours(x), int8s.reference(x))
            times = time_interleaved({name: (lambda m=m, x=x: m(x)) for name, m in models.items()}, settings)
        t = {name: median(values) for name, values in times.items()}
        row: dict[str, Any] = {
            "batch": batch,
            "size": x.shape[-1],
            **{f"{name}_s": value for name, value in t.items()},
            "ratio_int8_ours_over_reference": paired_ratio(times, "ours_int8", "reference_int8"),
            "ratio_float_ours_over_reference": paired_ratio(times, "ours_float", "reference_float"),
            "int8_speedup_ours": paired_ratio(times, "ours_float", "ours_int8"),
            "int8_speedup_reference": paired_ratio(times, "reference_float", "reference_int8"),
            "int8_max_output_difference": int8_difference if int8s.synced else None,
            "engine": torch.backends.quantized.engine,
        }
        print_row(row)
        report.rows.append(row)
    report.summary = {
        "int8_ratio_ours_over_reference": {r["batch"]: r["ratio_int8_ours_over_reference"] for r in report.rows},
        "int8_speedup_ours": {r["batch"]: r["int8_speedup_ours"] for r in report.rows},
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
