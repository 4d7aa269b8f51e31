"""Deployed forms against the reference's eager model: ours eager, ours under ``torch.compile``, ours exported and
compiled ahead of time (AOTInductor) and ours through ONNX Runtime, interleaved in one fresh process per model.

Models: resnet50, mobilenet_v3_large and vit_b_16 at 224x224, deeplabv3_mobilenet_v3_large at 520x520 (its
weights' preset size) and fasterrcnn_mobilenet_v3_large_fpn on one 512x512 image (which its transform resizes to
800x800; its score threshold lowered so that it keeps 100 detections), all at batch 1 (one image per call, a
deployed model's latency), ``THREADS`` threads for torch and ONNX Runtime alike, random weights made to behave like
trained ones (``targets.build_calibrated_pair``), the same on both sides. Every form is built from ours through
``visionzoo.deploy`` (``export_program``, ``export_onnx``); the AOTInductor package is built with
``torch._inductor.aoti_compile_and_package`` and loaded with ``torch._inductor.aoti_load_package``. A form that
cannot be built here is reported with the first line of its error (for detection, "export not available yet: ..."
while ``export_program`` cannot export it), and the others are still measured. Each row has every form's median
time, its speed-up over the reference's eager model, its largest absolute deviation from the reference's output
(for the detector, between each output's sorted values: boxes of equal scores may come in another order) and how
long it took to build.
Run: ``python -m benchmarks.deploy [--quick] [--only resnet50,...]`` (quick: fewer repeats).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The output tensors in a fixed order, as visionzoo.deploy's own checks compare them.
from visionzoo.deploy import _flatten as flatten

from ._harness import (
    ORT_SPIN_SETTLE_S,
    Report,
    Settings,
    in_fresh_process,
    median,
    paired_ratio,
    parse_settings,
    print_row,
    selected,
    skip,
    time_interleaved,
)
from .peers import THREADS, PeerUnavailable, onnxruntime_runner
from .targets import Target, build_calibrated_pair

BATCH = 1
MODELS = [
    Target("resnet50"),
    Target("mobilenet_v3_large"),
    Target("vit_b_16"),
    # Randomly initialised backbones: the reference's default would download its ImageNet weights.
    Target("deeplabv3_mobilenet_v3_large", task="segmentation", config={"weights_backbone": None}),
    # Random weights score every class near 1/91, below the default threshold (0.05): nothing would be detected.
    # At 0.001 the model keeps its 100 detections per image, the post-processing of trained weights.
    Target(
        "fasterrcnn_mobilenet_v3_large_fpn",
        task="detection",
        config={"weights_backbone": None, "box_score_thresh": 0.001},
    ),
]
FORMS = ("reference", "ours", "ours_compiled", "ours_aoti", "onnxruntime")


def max_deviation(expected: Any, actual: Any, ignore_order: bool = False) -> float:
    """Largest absolute difference over the output tensors, in float64; shapes must match (a detector whose
    deployed form keeps other boxes than the eager model differs in shape and is reported as such).

    ``ignore_order`` compares each tensor's sorted values: a detector's boxes with equal scores (random weights
    give many) may come out in another order from another runtime, which is no error.
    """
    want, got = flatten(expected), flatten(actual)
    if ignore_order:
        want, got = ([t.flatten().sort().values for t in ts] for ts in (want, got))
    if len(want) != len(got):
        raise AssertionError(f"{len(got)} output tensors, the reference has {len(want)}")
    worst = 0.0
    for i, (e, a) in enumerate(zip(want, got)):
        if tuple(a.shape) != tuple(e.shape):
            raise AssertionError(f"output {i} has shape {tuple(a.shape)}, the reference's {tuple(e.shape)}")
        if e.numel():
            worst = max(worst, (a.double() - e.double()).abs().max().item())
    return worst


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {(lines[0] if lines else '')[:300]}"


def _program_inputs(inputs: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    """The tensors an exported program or an ONNX file takes, in order: a list of images is flattened."""
    return tuple(flatten(list(inputs)))


def _arguments_for(run: Callable[..., Any], inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The arguments an exported form takes: the model's own where it accepts them (a detector's list of
    images), else the flattened tensors. Tried once, on ``inputs``."""
    try:
        run(*inputs)
        return inputs
    except (TypeError, ValueError, RuntimeError, AssertionError):
        if not any(isinstance(a, (list, tuple)) for a in inputs):
            raise
        tensors = _program_inputs(inputs)
        run(*tensors)
        return tensors


def make_forms(
    pair_reference: nn.Module, pair_ours: nn.Module, inputs: tuple[Any, ...], folder: str
) -> tuple[dict[str, Callable[[], Any]], dict[str, float], dict[str, str]]:
    """Build every form of ``FORMS`` for ``inputs``: calls without arguments, set-up seconds, and why a form is
    missing."""
    from visionzoo import deploy
    from visionzoo.deploy import export_onnx, export_program

    example = inputs  # the forward's positional arguments: (batch,), or a detector's ([image, ...],)
    calls: dict[str, Callable[[], Any]] = {}
    setup: dict[str, float] = {}
    skipped: dict[str, str] = {}

    def aoti() -> Callable[[], Any]:
        try:
            program = export_program(pair_ours, example)
        except Exception as error:
            raise PeerUnavailable(f"export not available yet: {_first_line(error)}") from error
        try:
            package = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(folder) / "model.pt2"))
            loaded = torch._inductor.aoti_load_package(package)
        except Exception as error:
            raise PeerUnavailable(f"AOTInductor failed to build here: {_first_line(error)}") from error
        arguments = _arguments_for(loaded, inputs)
        return lambda: loaded(*arguments)

    def onnx() -> Callable[[], Any]:
        try:
            # As visionzoo.deploy's own detection checks do, without onnxscript's graph optimisation for detectors.
            detector = isinstance(inputs[0], list)
            path = export_onnx(pair_ours, example, Path(folder) / "model.onnx", optimize=not detector)
        except ImportError as error:
            raise PeerUnavailable(f"{error}") from error
        except Exception as error:
            raise PeerUnavailable(f"export not available yet: {_first_line(error)}") from error
        run = onnxruntime_runner(path, THREADS, all_outputs=True)
        tensors = _program_inputs(inputs)
        return lambda: run(*tensors)

    def compiled() -> Callable[[], Any]:
        model = torch.compile(pair_ours)
        # Detectors trace their data-dependent sizes (the boxes NMS keeps) with the settings visionzoo.deploy gives
        # for them, where it has them.
        settings = getattr(deploy, "DETECTION_COMPILE_CONFIG", None) if isinstance(inputs[0], list) else None
        with torch._dynamo.config.patch(settings or {}):
            model(*inputs)  # compile now, not in the first timed call
        return lambda: model(*inputs)

    builders: dict[str, Callable[[], Callable[[], Any]]] = {
        "reference": lambda: lambda: pair_reference(*inputs),
        "ours": lambda: lambda: pair_ours(*inputs),
        "ours_compiled": compiled,
        "ours_aoti": aoti,
        "onnxruntime": onnx,
    }
    for name, build in builders.items():
        start = time.perf_counter()
        try:
            with torch.no_grad():
                calls[name] = build()
        except PeerUnavailable as error:
            skipped[name] = str(error)
            continue
        except Exception as error:  # a form that fails is a result, not a crash of the benchmark
            skipped[name] = f"failed: {_first_line(error)}"
            continue
        setup[name] = time.perf_counter() - start
    return calls, setup, skipped


def compare_forms(target: Target, settings: Settings) -> dict[str, Any]:
    """One model: every form interleaved in this process; one result row."""
    torch.set_num_threads(THREADS)
    inputs = target.inputs(BATCH)
    pair = build_calibrated_pair(target, target.inputs(2) if target.task == "detection" else target.inputs(4))
    size = target.input_size()
    row: dict[str, Any] = {"model": target.label, "task": target.task, "batch": BATCH, "size": f"{size}x{size}"}
    # Busy cores hurt torch's OpenMP threads far more than ONNX Runtime's or OpenVINO's pools: with the 1-minute
    # load at 7 on 2 cores, the reference's resnet50 took 0.4 s a call on 1 thread and 1.5-2.2 s on 2.
    row["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="visionzoo-deploy-") as folder:
        calls, setup, skipped = make_forms(pair.reference, pair.ours, inputs, folder)
        with torch.no_grad():
            expected = calls["reference"]()
            deviations = {}
            for name, call in list(calls.items()):
                try:
                    deviations[name] = max_deviation(expected, call(), ignore_order=target.task == "detection")
                except AssertionError as error:  # a different number of detections: timed, but not comparable
                    deviations[name] = None
                    row[f"deviation_note_{name}"] = str(error)
            times = time_interleaved(calls, settings)
    for name in FORMS:
        if name in calls:
            row[f"{name}_s"] = median(times[name])
            row[f"speedup_{name}"] = paired_ratio(times, "reference", name)
            row[f"deviation_{name}"] = deviations[name] if pair.synced else None
            row[f"setup_s_{name}"] = setup[name]
        else:
            row[f"skipped_{name}"] = skipped[name]
    row["all_s"] = times
    return row


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    settings = replace(
        settings,
        repeats=3 if settings.quick else 5,
        min_time=0.05 if settings.quick else 0.2,
        pause=ORT_SPIN_SETTLE_S,  # one of the forms runs through ONNX Runtime
    )
    report = Report("deploy", settings)
    for target in selected(report, MODELS, args):
        try:
            row = in_fresh_process(compare_forms, target, settings)
        except RuntimeError as error:  # the model's process died (memory, a crash in a runtime): note it, go on
            skip(report, f"{target.name}: {str(error).strip().splitlines()[-1][:300]}")
            continue
        print_row({k: v for k, v in row.items() if k != "all_s" and not k.startswith("setup_s_")})
        report.rows.append(row)
    report.summary = {
        "threads": THREADS,
        "batch": BATCH,
        "speedups": {r["model"]: {f: r[f"speedup_{f}"] for f in FORMS if f"speedup_{f}" in r} for r in report.rows},
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
