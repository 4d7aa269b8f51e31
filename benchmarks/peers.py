"""Side by side with the other CPU runtimes: the reference's eager model, ours eager, ours optimised, the
reference under ``torch.compile``, ONNX Runtime and OpenVINO, interleaved in one process per model and batch size.

For resnet50, mobilenet_v3_large, efficientnet_b0, convnext_tiny and vit_b_16 at batch 1 and 8 (quick mode: batch
8 only, fewer repeats), every peer gets the same number of threads (``THREADS``: ``torch.set_num_threads``, ONNX
Runtime's ``intra_op_num_threads``, OpenVINO's ``INFERENCE_NUM_THREADS``) and the same input. Peers:

- ``reference``: the reference's eager model (what every speed-up is relative to);
- ``ours``: our eager model (the reference's weights loaded into it);
- ``ours_optimized``: ``optimize_for_inference(model, x)`` in float32; ``ours_optimized_bf16`` with
  ``dtype=torch.bfloat16`` where ``optimize_for_inference`` takes a ``dtype`` (and the CPU has native bfloat16);
- ``reference_compiled``: ``torch.compile`` of the reference's model with its defaults;
- ``onnxruntime``: ONNX Runtime, float32, on the file ``visionzoo.deploy.export_onnx`` writes;
- ``openvino`` and ``openvino_bf16``: OpenVINO reading that ONNX file, compiled for the CPU with
  ``INFERENCE_PRECISION_HINT`` f32 (OpenVINO's default is bf16 on CPUs that have it) and bf16, the latter only
  where the CPU has native bfloat16 (avx512_bf16 or AMX).

The process keeps freed memory for the next call (``visionzoo.allocator.keep_freed_memory``), as
``optimize_for_inference`` sets it by default: the reference's eager model runs with it too.
Each row records every peer's median time, its speed-up over the reference's eager model (median of paired
ratios), its largest absolute deviation from the reference's float32 output on the same input and how long it
took to set up (compile, export). The models hold random weights made to behave like trained ones
(``targets.build_calibrated_pair``: calibrated BatchNorm statistics, as uncalibrated activations sink into
float32's subnormal range, which only the eager models pay for; ViT's zero-initialised head filled). The result's
summary records the CPU model and its instruction-set features.
ONNX Runtime and OpenVINO are optional (``pip install visionzoo[bench]``): without them their peers are reported
as skipped, with the reason.
Run: ``python -m benchmarks.peers [--quick] [--only resnet50,vit_b_16]`` (with ``--only``, the other models' rows of
the previous result file are kept when it was measured in the same mode on the same CPU: a full run can be split).
"""

from __future__ import annotations

import inspect
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionzoo.inference import _first_line as first_line

from ._harness import (
    ORT_SPIN_SETTLE_S,
    RESULTS_DIR,
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
from .targets import Target, build_calibrated_pair

THREADS = 2
BATCH_SIZES = (1, 8)
QUICK_BATCH_SIZES = (8,)
MODELS = [Target(name) for name in ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16")]
INSTALL_HINT = "pip install visionzoo[bench]"
# The instruction-set features that decide which kernels the runtimes pick, as /proc/cpuinfo names them.
ISA_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
PEERS = (
    "reference",
    "ours",
    "ours_optimized",
    "ours_optimized_bf16",
    "reference_compiled",
    "onnxruntime",
    "openvino",
    "openvino_bf16",
)

Run = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------- the machine


def cpu_description() -> dict[str, Any]:
    """The CPU's model name, family and model numbers (a name such as "AMD EPYC" covers several generations) and
    which of ``ISA_FEATURES`` it has (Linux ``/proc/cpuinfo``; OpenVINO's view of it too when OpenVINO is
    installed)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    info: dict[str, Any] = {
        "model_name": fields.get("model name", "unknown"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "features": [f for f in ISA_FEATURES if f in flags],
        "logical_cpus": os.cpu_count(),
    }
    try:
        import openvino

        info["openvino_capabilities"] = list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as error:  # optional dependency, or a platform without OpenVINO's CPU plugin
        info["openvino_capabilities"] = f"unavailable ({type(error).__name__})"
    return info


def native_bf16(cpu: dict[str, Any]) -> bool:
    """Whether the CPU computes bfloat16 natively (avx512_bf16 or AMX); OpenVINO's own capability list decides
    where ``/proc/cpuinfo`` could not be read."""
    if cpu["features"]:
        return any(f in cpu["features"] for f in ("avx512_bf16", "amx_bf16"))
    capabilities = cpu.get("openvino_capabilities")
    return isinstance(capabilities, list) and "BF16" in capabilities


def optimize_takes_dtype() -> bool:
    """Whether this version of ``optimize_for_inference`` has a ``dtype`` argument (bfloat16 support)."""
    from visionzoo.models import optimize_for_inference

    return "dtype" in inspect.signature(optimize_for_inference).parameters


# ----------------------------------------------------------------------------------------------- peers


def _optional(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise PeerUnavailable(f"{name} is not installed ({INSTALL_HINT})") from error


class PeerUnavailable(Exception):
    """A peer that cannot run here: a missing optional package, a CPU without the feature, an older API."""


def onnxruntime_runner(onnx_path: str | Path, threads: int = THREADS, all_outputs: bool = False) -> Callable[..., Any]:
    """Run the ONNX file with ONNX Runtime on the CPU, ``threads`` threads in an operator, one between them.

    The callable takes the file's inputs as tensors, in order, and returns its first output (every output, as a
    list, with ``all_outputs``).
    """
    ort = _optional("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feeds = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor) -> Any:
        if len(inputs) != len(feeds):
            raise ValueError(f"The ONNX file takes {len(feeds)} inputs, got {len(inputs)}")
        outputs = session.run(None, {name: x.numpy() for name, x in zip(feeds, inputs)})
        return [torch.from_numpy(o) for o in outputs] if all_outputs else torch.from_numpy(outputs[0])

    return run


def openvino_runner(onnx_path: str | Path, threads: int = THREADS, precision: str = "f32") -> Run:
    """Compile the ONNX file with OpenVINO for the CPU at ``precision`` ("f32" or "bf16"), ``threads`` threads,
    tuned for latency (one stream)."""
    ov = _optional("openvino")
    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(request.infer({0: x.numpy()}, share_inputs=True)[0])

    return run


def _export_onnx(model: nn.Module, x: torch.Tensor, folder: str) -> Path:
    from visionzoo.deploy import export_onnx

    for name in ("onnx", "onnxscript"):
        _optional(name)
    return export_onnx(model, x, Path(folder) / "model.onnx")


def make_peers(
    pair_reference: nn.Module,
    pair_ours: nn.Module,
    x: torch.Tensor,
    folder: str,
    bf16: bool,
    peers: tuple[str, ...] = PEERS,
) -> tuple[dict[str, Run], dict[str, float], dict[str, str]]:
    """Build each of ``peers`` for input ``x``: the callables, their set-up seconds (compiling happens here, on
    ``x``) and, for the peers that cannot run, why.

    ``folder`` receives the ONNX file that ONNX Runtime and OpenVINO share. ``bf16`` False leaves the bfloat16
    peers out as "not supported by this CPU".
    """
    from visionzoo.models import optimize_for_inference

    runs: dict[str, Run] = {}
    setup: dict[str, float] = {}
    skipped: dict[str, str] = {}
    onnx_path: Path | None = None

    def builders() -> dict[str, Callable[[], Run]]:
        def onnx_file() -> Path:
            nonlocal onnx_path
            if onnx_path is None:
                onnx_path = _export_onnx(pair_ours, x, folder)
            return onnx_path

        def ours_bf16() -> Run:
            if not optimize_takes_dtype():
                raise PeerUnavailable("optimize_for_inference has no dtype argument in this version")
            return optimize_for_inference(pair_ours, x, dtype=torch.bfloat16)

        def compiled_reference() -> Run:
            compiled = torch.compile(pair_reference)
            compiled(x)  # compile now, not in the first timed call
            return compiled

        return {
            "reference": lambda: pair_reference,
            "ours": lambda: pair_ours,
            "ours_optimized": lambda: optimize_for_inference(pair_ours, x),
            "ours_optimized_bf16": ours_bf16,
            "reference_compiled": compiled_reference,
            "onnxruntime": lambda: onnxruntime_runner(onnx_file()),
            "openvino": lambda: openvino_runner(onnx_file()),
            "openvino_bf16": lambda: openvino_runner(onnx_file(), precision="bf16"),
        }

    made = builders()
    for name in peers:
        if name.endswith("_bf16") and not bf16:
            skipped[name] = "not supported by this CPU (no native bfloat16: avx512_bf16 or amx_bf16)"
            continue
        start = time.perf_counter()
        try:
            with torch.no_grad():
                runs[name] = made[name]()
        except PeerUnavailable as error:
            skipped[name] = str(error)
            continue
        except Exception as error:  # a peer that fails to build is a result, not a crash of the benchmark
            message = first_line(error)
            # optimize_for_inference refuses bfloat16 where it changes the top-1 on the example input, which
            # random weights (near-equal logits) make likely: the measured numbers are in the message.
            refused = name == "ours_optimized_bf16" and isinstance(error, RuntimeError) and "top-1" in message
            kind = "refused on this input (random weights)" if refused else f"failed: {type(error).__name__}"
            skipped[name] = f"{kind}: {message[:300]}"
            continue
        setup[name] = time.perf_counter() - start
    return runs, setup, skipped


def max_deviation(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """Largest absolute difference between two outputs of the same shape, computed in float64."""
    if actual.shape != expected.shape:
        raise AssertionError(f"output shape {tuple(actual.shape)} differs from the reference's {tuple(expected.shape)}")
    return (actual.double() - expected.double()).abs().max().item()


# ----------------------------------------------------------------------------------------------- measuring


def compare_peers(target: Target, batch: int, settings: Settings, bf16: bool) -> dict[str, Any]:
    """One model at one batch size, every peer interleaved in this process: one result row."""
    from visionzoo.allocator import keep_freed_memory

    torch.set_num_threads(THREADS)
    # optimize_for_inference makes the process keep freed memory (its default), which speeds up every torch peer
    # in it (no page faults for re-allocated activations): set from the start, whatever the order peers are built
    # in. ONNX Runtime and OpenVINO keep their activations in their own arenas anyway.
    kept = keep_freed_memory()
    (x,) = target.inputs(batch)
    pair = build_calibrated_pair(target, target.inputs(max(batch, 4)))
    row: dict[str, Any] = {"model": target.label, "batch": batch, "size": x.shape[-1], "threads": THREADS}
    row["keep_freed_memory"] = kept
    # Busy cores hurt torch's OpenMP threads far more than ONNX Runtime's or OpenVINO's pools: with the 1-minute
    # load at 7 on 2 cores, the reference's resnet50 took 0.4 s a call on 1 thread and 1.5-2.2 s on 2.
    row["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="visionzoo-peers-") as folder:
        runs, setup, skipped = make_peers(pair.reference, pair.ours, x, folder, bf16)
        with torch.no_grad():
            expected = pair.reference(x)
            row["reference_output_abs_max"] = expected.abs().max().item()  # the scale of the deviations
            deviations = {}
            for name, run in list(runs.items()):
                try:
                    deviations[name] = max_deviation(expected, run(x).float())
                except Exception as error:
                    skipped[name] = f"failed on the input: {type(error).__name__}: {str(error)[:300]}"
                    del runs[name]
            calls = {name: (lambda r=run: r(x)) for name, run in runs.items()}
            times = time_interleaved(calls, replace(settings, pause=ORT_SPIN_SETTLE_S))
    for name in PEERS:
        if name in runs:
            row[f"{name}_s"] = median(times[name])
            row[f"speedup_{name}"] = paired_ratio(times, "reference", name)
            row[f"deviation_{name}"] = deviations[name] if pair.synced or name.startswith("reference") else None
            row[f"setup_s_{name}"] = setup[name]
            if hasattr(runs[name], "ahead_of_time"):  # which compiled runner optimize_for_inference kept
                row[f"ahead_of_time_{name}"] = runs[name].ahead_of_time
        else:
            row[f"skipped_{name}"] = skipped[name]
    if pair.note:
        row["note"] = pair.note
    row["all_s"] = times
    return row


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    # Eight peers a row, five models, two batch sizes, three compiles and an export each: fewer repeats than the
    # two-sided items (the paired ratios of interleaved peers are steady enough with five).
    settings = replace(settings, repeats=3 if settings.quick else 5, min_time=0.05 if settings.quick else 0.2)
    report = Report("peers", settings)
    cpu = cpu_description()
    bf16 = native_bf16(cpu)
    report.summary = {
        "cpu": cpu,
        "native_bf16": bf16,
        "threads": THREADS,
        "optimize_for_inference_dtype": optimize_takes_dtype(),
    }
    print(f"  CPU: {cpu['model_name']}; {' '.join(cpu['features'])}; native bf16: {bf16}", flush=True)
    if not bf16:
        report.notes.append("bfloat16 peers: not supported by this CPU (no avx512_bf16 or amx_bf16)")
    batches = QUICK_BATCH_SIZES if settings.quick else BATCH_SIZES
    for target in selected(report, MODELS, args):
        for batch in batches:
            try:
                row = in_fresh_process(compare_peers, target, batch, settings, bf16)
            except RuntimeError as error:  # the model's process died (memory, a crash in a runtime): note it, go on
                skip(report, f"{target.name} at batch {batch}: {str(error).strip().splitlines()[-1][:300]}")
                continue
            print_row({k: v for k, v in row.items() if k != "all_s" and not k.startswith("setup_s_")})
            report.rows.append(row)
    if args.only:
        keep_earlier_rows(report, cpu)
    report.summary["speedups"] = {
        f"{r['model']}@{r['batch']}": {p: r[f"speedup_{p}"] for p in PEERS if f"speedup_{p}" in r} for r in report.rows
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


def keep_earlier_rows(report: Report, cpu: dict[str, Any]) -> None:
    """With ``--only``, keep the rows of the other models from the previous result file when it was measured in
    the same mode on the same CPU, so that the full run can be split into several shorter ones
    (``--only resnet50,mobilenet_v3_large,efficientnet_b0``, then ``--only convnext_tiny,vit_b_16``)."""
    import json

    path = RESULTS_DIR / f"{report.item}.json"
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    earlier_cpu = earlier.get("summary", {}).get("cpu", {})
    same_machine = all(earlier_cpu.get(key) == cpu.get(key) for key in ("model_name", "family", "model", "features"))
    if not same_machine or earlier.get("settings", {}).get("quick") != report.settings.quick:
        return
    measured = {r["model"] for r in report.rows}
    kept = [r for r in earlier.get("rows", []) if r.get("model") not in measured]
    if kept:
        date = earlier.get("environment", {}).get("date")
        order = {t.name: i for i, t in enumerate(MODELS)}
        report.rows = sorted([*kept, *report.rows], key=lambda r: (order.get(r["model"], len(order)), r["batch"]))
        report.notes.append(f"rows of {', '.join(dict.fromkeys(r['model'] for r in kept))} kept from the run of {date}")


if __name__ == "__main__":
    main()
