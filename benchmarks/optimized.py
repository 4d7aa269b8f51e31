"""Optimised inference at batch 8: ``optimize_for_inference`` against the reference's eager model.

For each representative: the reference eager, ours eager, ours optimised without compiling (conv-bn folding
and channels-last) and ours compiled (Inductor with freezing), timed interleaved in one process. Compilation
starts from an empty Inductor cache, so ``compile_s`` is a cold compile; then a fresh process optimises the
same model again with that cache (``second_process_compile_s``), which is what reusing compiled artefacts
saves.

Targets (speed-up over the reference's eager): >= 1.8x resnet50, >= 3.0x mobilenet_v3_large, > 1 for every
representative. Quick mode compiles only those two targets.
Run: ``python -m benchmarks.optimized [--quick] [--only resnet50,...]``.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from typing import Any

import torch

from visionzoo.models import optimize_for_inference

from ._harness import (
    Report,
    Settings,
    median,
    only,
    paired_ratio,
    parse_settings,
    print_row,
    run_fresh,
    skip,
    time_interleaved,
)
from .targets import REPRESENTATIVES, Target, build_pair, max_difference

BATCH = 8
TARGET_SPEEDUP = {"resnet50": 1.8, "mobilenet_v3_large": 3.0}
QUICK_COMPILED = tuple(TARGET_SPEEDUP)

_SECOND_PROCESS = """
import json, time, torch
from torch._dynamo.utils import counters
from benchmarks.targets import Target
from visionzoo.models import optimize_for_inference
target = Target({name!r})
model = target.build("ours").eval()
(x,) = target.inputs({batch})
start = time.perf_counter()
optimised = optimize_for_inference(model, x)
total = time.perf_counter() - start
hits = {{f"{{g}}.{{k}}": v for g in ("inductor", "aot_autograd") for k, v in counters[g].items() if "cache" in k}}
print(json.dumps({{"compile_s": optimised.compile_seconds, "total_s": total, "cache_counters": hits}}))
"""


def _compare(target: Target, compile: bool, settings: Settings) -> dict[str, Any]:
    pair = build_pair(target)
    (x,) = target.inputs(BATCH)
    # Given `x`, optimize_for_inference also checks its outputs against the eager model's.
    nocompile = optimize_for_inference(pair.ours, x, compile=False)
    candidates = {"reference": pair.reference, "ours": pair.ours, "ours_nocompile": nocompile}
    compiled = optimize_for_inference(pair.ours, x, compile=True) if compile else None
    if compiled is not None:
        candidates["ours_compiled"] = compiled
    with torch.inference_mode():
        expected = pair.reference(x)
    # Relative to the output's scale: randomly initialised deep networks (Inception) give huge logits.
    scale = max(1.0, expected.abs().max().item())
    differences = {name: max_difference(model(x), expected) / scale for name, model in candidates.items()}
    with torch.no_grad():
        times = time_interleaved({name: (lambda m=model: m(x)) for name, model in candidates.items()}, settings)
    medians = {name: median(values) for name, values in times.items()}
    row: dict[str, Any] = {
        "model": target.label,
        "batch": BATCH,
        "size": x.shape[-1],
        "reference_s": medians["reference"],
        "ours_eager_s": medians["ours"],
        "ours_nocompile_s": medians["ours_nocompile"],
        "speedup_eager": paired_ratio(times, "reference", "ours"),
        "speedup_nocompile": paired_ratio(times, "reference", "ours_nocompile"),
        "folded_pairs": nocompile.folded,
        "channels_last": nocompile.channels_last,
        "max_relative_output_difference": max(differences.values()) if pair.synced else None,
    }
    if compiled is not None:
        row.update(
            ours_compiled_s=medians["ours_compiled"],
            speedup_compiled=paired_ratio(times, "reference", "ours_compiled"),
            compiled=compiled.compiled,
            compile_s=compiled.compile_seconds,
        )
    row["all_s"] = times
    return row


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("optimized", settings)
    cache_dir = tempfile.mkdtemp(prefix="visionzoo-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir  # cold compiles here, warm ones in the second process
    report.notes.append("Inductor cache started empty (a new directory, removed afterwards): compile_s is a cold compile")
    chosen = set(only([t.name for t in REPRESENTATIVES], args))
    for target in REPRESENTATIVES:
        if target.name not in chosen:
            continue
        if target.task == "quantization":
            skip(report, f"{target.name}: already an int8 model (benchmarks.int8 compares it with float)")
            continue
        reason = target.missing()
        if reason:
            skip(report, reason)
            continue
        compile = not settings.quick or target.name in QUICK_COMPILED
        row = _compare(target, compile, settings)
        gc.collect()
        if compile:
            code = _SECOND_PROCESS.format(name=target.name, batch=BATCH)
            second = run_fresh(code, env={"TORCHINDUCTOR_CACHE_DIR": cache_dir})
            row.update(
                second_process_compile_s=second["compile_s"],
                second_process_total_s=second["total_s"],
                second_process_cache_counters=second["cache_counters"],
            )
        print_row({k: v for k, v in row.items() if k != "all_s"})
        report.rows.append(row)
    shutil.rmtree(cache_dir, ignore_errors=True)
    best = {r["model"]: r.get("speedup_compiled", r["speedup_nocompile"]) for r in report.rows}
    report.summary = {
        "best_speedup": best,
        "targets": TARGET_SPEEDUP,
        "targets_met": {m: best.get(m, 0.0) >= t for m, t in TARGET_SPEEDUP.items() if m in best},
        "gain_everywhere": all(v > 1.0 for v in best.values()),
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
