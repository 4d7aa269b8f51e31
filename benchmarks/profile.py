"""Where the time goes: an operator profile of one model (eager, optimised, compiled) against the machine's
fp32 matrix-multiply peak.

For each variant: images per second, the achieved rate in GFLOP/s (2 x the multiply-adds the weights'
metadata lists), that rate as a share of the measured fp32 matmul peak, and the operators that take the
most time. Writes ``results/profile_<model>.json`` and prints a short table.
Run: ``python -m benchmarks.profile resnet50 [--batch 8] [--no-compile]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from visionzoo.models import get_model_weights, optimize_for_inference

from ._harness import RESULTS_DIR, environment, median
from .targets import Target, build_pair


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate of this machine with torch's threads (2 n^3 flops per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _seconds_per_call(model: Any, x: torch.Tensor, repeats: int) -> float:
    model(x)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        samples.append(time.perf_counter() - start)
    return median(samples)


def _top_ops(model: Any, x: torch.Tensor, count: int = 12) -> list[dict[str, Any]]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            model(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": e.key,
            "share": e.self_cpu_time_total / total,
            "calls": e.count // 2,
            "ms_per_batch": e.self_cpu_time_total / 2e3,  # microseconds over two batches
        }
        for e in events[:count]
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    args = parser.parse_args(argv)

    target = Target(args.model)
    pair = build_pair(target)
    (x,) = target.inputs(args.batch)
    gflop_per_image = 2 * float(get_model_weights(args.model).DEFAULT.meta["_ops"])  # _ops counts multiply-adds
    variants: dict[str, Any] = {"reference eager": pair.reference, "ours eager": pair.ours}
    variants["ours folded + channels-last"] = optimize_for_inference(pair.ours, x, compile=False)
    if not args.no_compile:
        variants["ours compiled"] = optimize_for_inference(pair.ours, x, compile=True)
    peak = matmul_peak_gflops()
    result: dict[str, Any] = {
        "model": args.model,
        "batch": args.batch,
        "size": x.shape[-1],
        "gflop_per_image": gflop_per_image,
        "matmul_peak_gflops": peak,
        "environment": environment(),
        "variants": {},
    }
    print(f"{args.model} batch {args.batch}: {gflop_per_image:.2f} GFLOP/image; fp32 matmul peak {peak:.0f} GFLOP/s")
    with torch.no_grad():
        for name, model in variants.items():
            seconds = _seconds_per_call(model, x, args.repeats)
            rate = args.batch * gflop_per_image / seconds
            ops = _top_ops(model, x)
            result["variants"][name] = {
                "seconds": seconds,
                "img_per_s": args.batch / seconds,
                "gflops": rate,
                "share_of_peak": rate / peak,
                "top_ops": ops,
            }
            print(f"  {name:30s} {args.batch / seconds:7.1f} img/s  {rate:6.0f} GFLOP/s  {rate / peak:5.0%} of peak")
            for op in ops[:6]:
                print(f"      {op['share']:5.0%}  {op['ms_per_batch']:8.1f} ms  x{op['calls']:<4d} {op['op'][:70]}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"profile_{args.model}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
