"""Eager inference, ours vs the reference: the representative models at batch 1 and 8, native resolution.

Target: median ratio (ours / reference time) <= 1.00 over the rows, and no row above 1.05. Each model runs in
fresh processes (see ``_harness.in_fresh_process``): three in full mode, each with a third of the repeats, under
glibc malloc's defaults; then two more with ``TUNED_MALLOC``, where neither side pays page faults for its
activations, which isolates the models' own work from the allocator's. Every row also counts the minor page
faults per call of each side, the allocator's share of the time.
Run: ``python -m benchmarks.eager [--quick] [--only resnet50,vit_b_16]``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

# Outputs are compared the way optimize_for_inference checks its own: one definition for both.
from visionzoo.inference import _max_difference as max_difference

from ._harness import (
    TUNED_MALLOC,
    Report,
    Settings,
    in_fresh_process,
    median,
    minor_page_faults,
    paired_ratio,
    parse_settings,
    print_row,
    selected,
    time_interleaved,
)
from .targets import REPRESENTATIVES, Target, build_pair

BATCH_SIZES = (1, 8)
SIDES = ("ours", "reference")
PROCESSES = 3  # fresh processes per model in full mode, default allocator
TUNED_PROCESSES = 2  # and with TUNED_MALLOC


def faults_per_call(call: Callable[[], Any], calls: int = 3) -> float | None:
    """Minor page faults per call of ``call`` (None where they cannot be counted)."""
    before = minor_page_faults()
    for _ in range(calls):
        call()
    after = minor_page_faults()
    return None if before is None or after is None else (after - before) / calls


def compare_eager(
    target: Target, batch_sizes: tuple[int, ...], settings: Settings, size: int | None = None
) -> list[dict[str, Any]]:
    """Time both sides' eval-mode forward at each batch size; one row per batch size.

    ``size`` None means the model's native resolution; models with a fixed input size (ViT) always get theirs.
    """
    pair = build_pair(target)
    size = getattr(pair.ours, "image_size", None) or size
    rows = []
    for batch in batch_sizes:
        inputs = target.inputs(batch, size)
        with torch.inference_mode():
            difference = max_difference(pair.ours(*inputs), pair.reference(*inputs))
            calls = {
                side: (lambda m=model, x=inputs: m(*x))
                for side, model in (("ours", pair.ours), ("reference", pair.reference))
            }
            times = time_interleaved(calls, settings)
            faults = {side: faults_per_call(call) for side, call in calls.items()}
        ours, reference = median(times["ours"]), median(times["reference"])
        row = {
            "model": target.label,
            "batch": batch,
            "size": inputs[0].shape[-1],
            "ours_s": ours,
            "reference_s": reference,
            "ratio": paired_ratio(times, "ours", "reference"),
            "ours_img_per_s": batch / ours,
            "reference_img_per_s": batch / reference,
            "max_output_difference": difference if pair.synced else None,
            "ours_faults_per_call": faults["ours"],
            "reference_faults_per_call": faults["reference"],
            "ours_all_s": times["ours"],
            "reference_all_s": times["reference"],
        }
        if pair.note:
            row["note"] = pair.note
        rows.append(row)
    del pair
    gc.collect()
    return rows


def pool_processes(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge the rows that several processes measured for the same model and batch sizes: the samples are
    pooled, and the ratio is the median of all paired ratios (each process's own is kept in ``process_ratios``)."""
    pooled = []
    for rows in zip(*runs):
        row = dict(rows[0])
        ours = [t for r in rows for t in r["ours_all_s"]]
        reference = [t for r in rows for t in r["reference_all_s"]]
        row.update(
            ours_s=median(ours),
            reference_s=median(reference),
            ratio=paired_ratio({"ours": ours, "reference": reference}, "ours", "reference"),
            ours_img_per_s=row["batch"] / median(ours),
            reference_img_per_s=row["batch"] / median(reference),
            process_ratios=[r["ratio"] for r in rows],
            **{
                f"{side}_faults_per_call": _mean_or_none([r[f"{side}_faults_per_call"] for r in rows]) for side in SIDES
            },
            ours_all_s=ours,
            reference_all_s=reference,
        )
        pooled.append(row)
    return pooled


def _mean_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def add_tuned_malloc(rows: list[dict[str, Any]], tuned: list[dict[str, Any]]) -> None:
    """Put the ``TUNED_MALLOC`` processes' pooled figures next to the default ones, as ``tuned_malloc_*``."""
    for row, other in zip(rows, tuned):
        row.update(
            tuned_malloc_ratio=other["ratio"],
            tuned_malloc_process_ratios=other["process_ratios"],
            tuned_malloc_ours_s=other["ours_s"],
            tuned_malloc_reference_s=other["reference_s"],
            **{f"tuned_malloc_{side}_faults_per_call": other[f"{side}_faults_per_call"] for side in SIDES},
        )


def show_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        print_row({k: v for k, v in row.items() if not k.endswith("_all_s")})


def summarise(rows: list[dict[str, Any]], with_targets: bool = True) -> dict[str, Any]:
    ratios = [r["ratio"] for r in rows]
    summary = {"median_ratio": median(ratios) if ratios else None, "max_ratio": max(ratios) if ratios else None}
    tuned = [r["tuned_malloc_ratio"] for r in rows if "tuned_malloc_ratio" in r]
    if tuned:
        summary.update(tuned_malloc_median_ratio=median(tuned), tuned_malloc_max_ratio=max(tuned))
    if with_targets:
        summary.update(target_median_ratio=1.00, target_max_ratio=1.05)
    return summary


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("eager", settings)
    for target in selected(report, REPRESENTATIVES, args):
        # One process can run a model a few percent faster or slower than the next (resnet50 at batch 1 measured
        # 0.92 in one and 1.11 in another, both sides interleaved): the repeats are spread over processes.
        processes, tuned_processes = (1, 1) if settings.quick else (PROCESSES, TUNED_PROCESSES)
        per_process = replace(settings, repeats=max(1, settings.repeats // processes))
        runs = [in_fresh_process(compare_eager, target, BATCH_SIZES, per_process) for _ in range(processes)]
        rows = pool_processes(runs)
        tuned = [
            in_fresh_process(compare_eager, target, BATCH_SIZES, per_process, env=TUNED_MALLOC)
            for _ in range(tuned_processes)
        ]
        add_tuned_malloc(rows, pool_processes(tuned))
        show_rows(rows)
        report.rows += rows
    report.summary = summarise(report.rows)
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
