"""``visionzoo benchmark``: inference speed and memory of a model on random inputs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ._common import CommandError, choose_weights, device_of, model_info, table
from ._optimize import add_dtype_argument, add_package_argument, check_dtype, optimise


def register(sub: Any) -> None:
    """Add ``benchmark`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "benchmark",
        help="measure images/s, latency percentiles and peak memory",
        description="Time forward passes of MODEL on random input (randomly initialised unless --weights is given). "
        "With --compile or --optimize, the eager model and the optimised one are timed side by side; "
        "--optimize compiles once more in a new process only where Inductor's cache misses.",
    )
    p.add_argument("model")
    p.add_argument(
        "--weights",
        help="an entry name or a checkpoint path to load first (default: none; speed does not depend on it)",
    )
    p.add_argument(
        "--num-classes", type=int, help="outputs of the head: a checkpoint's (default: read from it) or random"
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-size", type=int, help="height = width (default: the DEFAULT preset's crop, else 224)")
    p.add_argument("--iterations", type=int, default=20, help="timed forward passes (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes first (default 3)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--channels-last", action="store_true", help="use the channels_last memory format")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time the model after torch.compile (the compile time is shown), next to eager",
    )
    p.add_argument(
        "--optimize",
        action="store_true",
        help="also time visionzoo.models.optimize_for_inference's model (BatchNorm folding, layout, compiled "
        "with weight freezing; the compile time is shown), next to eager",
    )
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="with --optimize: optimise without torch.compile (BatchNorm folding and layout only)",
    )
    add_dtype_argument(p)
    add_package_argument(p, default=False)
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="make malloc keep freed memory for the next call (Linux/glibc; see visionzoo.allocator): "
        "no page faults for re-allocated activations, at the price of staying at peak memory",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_benchmark)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_rss_mb() -> float | None:
    """The process's peak resident set size in MB, where the platform reports it."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB elsewhere


def _default_input_size(name: str, model: Any, weights: str | None) -> int:
    """The size the model is built for (ViT, MaxViT), else the crop of the chosen (or DEFAULT) weights, else 224."""
    fixed = getattr(model, "input_size", None)
    if fixed is not None:
        return int(fixed[0])
    from visionzoo.models import get_model_weights

    from ._catalog import default_of

    entry = default_of(name)
    if weights is not None and entry is not None:
        enum = get_model_weights(name)
        entry = enum.__members__.get(weights.removeprefix(enum.__name__ + "."), entry)
    crop = getattr(entry.transforms(), "crop_size", None) if entry is not None else None
    return int(crop[0]) if crop else 224


def _timed_runs(model: Any, x: Any, warmup: int, iterations: int, sync: Any) -> list[float]:
    """Milliseconds of each of ``iterations`` timed calls, after ``warmup`` untimed ones."""
    import torch

    latencies = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        for _ in range(iterations):
            start = time.perf_counter()
            model(x)
            sync()
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def _speed(args: argparse.Namespace, latencies: list[float]) -> dict[str, Any]:
    return {
        "images_per_s": args.batch_size * args.iterations / (sum(latencies) / 1000),
        "latency_ms": {f"p{q}": percentile(latencies, q) for q in (50, 90, 99)},
    }


def _note(message: str) -> None:
    print(f"visionzoo: {message}", file=sys.stderr, flush=True)


def _optimised(args: argparse.Namespace, model: Any, x: Any, sync: Any) -> tuple[Any, dict[str, Any]]:
    """The model ``--optimize`` / ``--compile`` ask for, compiled now (with progress on stderr), and what was done."""
    import torch

    if args.optimize:
        # In inference mode, as the timed calls run: compiled in another grad mode, the first of them would
        # compile again.
        with torch.inference_mode():
            return optimise(
                model,
                x,
                name=args.model,
                dtype=args.dtype,
                compile=not args.no_compile,
                channels_last=True if args.channels_last else None,
                keep_faster=False,
                package=bool(args.package),
                # As the eager model was timed: a speed-up from the optimisations, not from the allocator.
                keep_freed_memory=args.keep_freed_memory,
            )
    _note(f"compiling {args.model} with torch.compile (the first call; often tens of seconds)...")
    start = time.perf_counter()
    fast = torch.compile(model)
    with torch.inference_mode():
        fast(x)
    sync()
    seconds = time.perf_counter() - start
    _note(f"compiled in {seconds:.1f} s")
    return fast, {"method": "torch.compile", "compiled": True, "compile_seconds": seconds}


def cmd_benchmark(args: argparse.Namespace) -> int:
    import torch

    from visionzoo.allocator import keep_freed_memory

    chosen = choose_weights(args.model, args.weights, args.num_classes, default=None)  # unknown names fail here
    if model_info(chosen.model).task == "optical_flow":
        raise CommandError(
            f"benchmark times models of one input; {chosen.model} takes a pair of frames "
            "(python -m benchmarks.flow times raft_large on a 368x496 pair)"
        )
    if min(args.batch_size, args.iterations) < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise CommandError("--batch-size, --iterations and --threads must be at least 1, --warmup at least 0")
    if args.input_size is not None and args.input_size < 1:
        raise CommandError("--input-size must be at least 1")
    check_dtype(args)
    if args.no_compile and not args.optimize:
        raise CommandError("--no-compile applies to --optimize (without --optimize, leave out --compile instead)")
    if args.package and args.no_compile:
        raise CommandError("--package keeps a compiled model: it cannot go with --no-compile")
    device = device_of(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    if args.keep_freed_memory and not kept:
        print("note: --keep-freed-memory has no effect here: the C library is not glibc", file=sys.stderr)
    model = chosen.build(progress=False).to(device)
    weights_name = None if chosen.local or chosen.weights is None else chosen.weights.name
    size = args.input_size if args.input_size is not None else _default_input_size(chosen.model, model, weights_name)
    x = torch.randn(args.batch_size, 3, size, size, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_built = peak_rss_mb()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    optimising = args.compile or args.optimize
    if optimising:
        _note(f"timing the eager model ({args.iterations} iterations)...")
    eager = _speed(args, _timed_runs(model, x, args.warmup, args.iterations, sync))
    optimised: dict[str, Any] | None = None
    if optimising:
        fast, how = _optimised(args, model, x, sync)
        _note(f"timing the optimised model ({args.iterations} iterations)...")
        optimised = {**how, **_speed(args, _timed_runs(fast, x, args.warmup, args.iterations, sync))}
    result: dict[str, Any] = {
        "model": chosen.model,
        "weights": None if chosen.weights is None else chosen.label,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "input_size": size,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "optimize": args.optimize,
        "keep_freed_memory": kept,
        "iterations": args.iterations,
        **eager,
        "optimized": optimised,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_before_runs_mb": rss_built,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    flags = ", ".join(f for f, on in (("channels_last", args.channels_last), ("freed memory kept", kept)) if on)
    print(
        f"{chosen.model} on {device} ({result['threads']} thread{'s' if result['threads'] != 1 else ''}"
        f"{', ' + flags if flags else ''}): "
        f"batch {args.batch_size} x 3 x {size} x {size}, {args.iterations} iterations after {args.warmup} warm-up"
    )
    print(table(_report_rows(result), "lr" + "r" * (optimised is not None)))
    return 0


def _report_rows(result: dict[str, Any]) -> list[list[str]]:
    """The text report: one value column, or eager and optimised side by side."""
    fast = result["optimized"]
    header = ["metric", "value"] if fast is None else ["metric", "eager", _method_label(fast)]
    runs = [result] if fast is None else [result, fast]
    rows = [header, ["images/s", *(f"{r['images_per_s']:.1f}" for r in runs)]]
    rows += [[f"latency {q} (ms/batch)", *(f"{r['latency_ms'][q]:.2f}" for r in runs)] for q in result["latency_ms"]]
    if fast is not None:
        seconds = fast["compile_seconds"]
        rows.append(["compile time (s)", "-", f"{seconds:.1f}" if seconds is not None else "-"])
        if fast.get("max_deviation") is not None:
            rows.append(["largest deviation from eager", "-", f"{fast['max_deviation']:.2g}"])
    blank = [""] * (len(runs) - 1)
    for label, key in (
        ("peak RSS, model built (MB)", "peak_rss_before_runs_mb"),
        ("peak RSS, after runs (MB)", "peak_rss_mb"),
    ):
        rows.append([label, f"{result[key]:.0f}" if result[key] is not None else "n/a", *blank])
    if "peak_cuda_mb" in result:
        rows.append(["peak CUDA memory (MB)", f"{result['peak_cuda_mb']:.0f}", *blank])
    return rows


def _method_label(fast: dict[str, Any]) -> str:
    if fast["method"] == "torch.compile":
        return "compiled"
    label = "optimized+compiled" if fast["compiled"] else "optimized"
    return f"{label} ({fast['dtype']})" if fast.get("dtype", "float32") != "float32" else label
