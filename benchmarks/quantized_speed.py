"""Int8 versus float CPU inference time of quantized_resnet50 (not a test; prints a small table, optionally JSON).

    python benchmarks/quantized_speed.py [--batch 8] [--size 224] [--repeats 5] [--threads N] [--json out.json]

Both models are built without pretrained weights (speed does not depend on the values): the float one is the
quantizable model with ``quantize=False``, the int8 one is that model fused, calibrated on the benchmark batch
and converted for the fbgemm engine. Each is timed on the same batch under ``torch.inference_mode`` after a
warm-up run; the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from visionzoo.models.quantization import quantize_model, resnet50


def _time(model: torch.nn.Module, batch: torch.Tensor, repeats: int) -> list[float]:
    with torch.inference_mode():
        model(batch)  # warm-up: first-call allocations and kernel selection
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="fbgemm", choices=["fbgemm", "x86", "qnnpack"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    batch = torch.randn(args.batch, 3, args.size, args.size)
    float_model = resnet50(quantize=False).eval()
    int8_model = quantize_model(copy.deepcopy(float_model), args.backend, batch)

    float_times = _time(float_model, batch, args.repeats)
    int8_times = _time(int8_model, batch, args.repeats)
    result = {
        "model": "quantized_resnet50",
        "batch": args.batch,
        "size": args.size,
        "backend": args.backend,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "float_s": statistics.median(float_times),
        "int8_s": statistics.median(int8_times),
        "float_runs_s": float_times,
        "int8_runs_s": int8_times,
    }
    result["speedup"] = result["float_s"] / result["int8_s"]
    print(f"resnet50, batch {args.batch} x {args.size}x{args.size}, {result['threads']} threads, {args.backend}")
    print(f"  float32: {result['float_s'] * 1000:8.1f} ms  (median of {args.repeats})")
    print(f"  int8:    {result['int8_s'] * 1000:8.1f} ms  ->  {result['speedup']:.2f}x faster")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
