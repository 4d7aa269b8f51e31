"""Import time of ``visionzoo.models`` on top of ``import torch``, in fresh processes (median of 5).

Target: at most 0.3 s on top of torch, however many families are registered. The reference's
``torchvision.models`` is measured the same way for comparison.
Run: ``python -m benchmarks.import_time [--quick]``.
"""

from __future__ import annotations

from ._harness import Report, median, parse_settings, print_row, run_fresh

RUNS = 5
TARGET_S = 0.3

_PROBE = """
import json, sys, time
start = time.perf_counter()
import torch
after_torch = time.perf_counter()
import {module}
after_module = time.perf_counter()
print(json.dumps({{"torch_s": after_torch - start, "module_s": after_module - after_torch,
                   "dynamo_imported": "torch._dynamo" in sys.modules}}))
"""

_COUNT = "import json, visionzoo.models as m; print(json.dumps({'models': len(m.list_models())}))"


def main(argv: list[str] | None = None) -> Report:
    settings, _ = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("import_time", settings)
    samples: dict[str, list[dict]] = {"visionzoo.models": [], "torchvision.models": []}
    for _ in range(RUNS):  # interleaved, so both see the same machine load
        for module in samples:
            samples[module].append(run_fresh(_PROBE.format(module=module)))
    for module, runs in samples.items():
        row = {
            "module": module,
            "on_top_of_torch_s": median([r["module_s"] for r in runs]),
            "import_torch_s": median([r["torch_s"] for r in runs]),
            "imports_torch_dynamo": any(r["dynamo_imported"] for r in runs),
            "all_s": [r["module_s"] for r in runs],
        }
        print_row(row)
        report.rows.append(row)
    ours = report.rows[0]["on_top_of_torch_s"]
    report.summary = {
        "ours_on_top_of_torch_s": ours,
        "reference_on_top_of_torch_s": report.rows[1]["on_top_of_torch_s"],
        "target_s": TARGET_S,
        "registered_models": run_fresh(_COUNT)["models"],
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
