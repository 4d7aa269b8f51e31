"""NMS speed: ``visionzoo.ops.nms`` vs the reference's compiled kernel, timed interleaved in one process.

Two layouts, as in the issue: uniformly random boxes (small boxes anywhere in a 1000x1000 image: few overlap, so
the reference's kernel compares nearly every pair) and clustered boxes (many jittered boxes around 30 objects, as
a detector emits before NMS). Every case first checks that both sides keep the same indices.
Targets (ratio ours / reference): uniform 1k <= 1, 10k and 50k <= 1/3; clustered 10k <= 1, 1k <= 2.
Run: ``python -m benchmarks.ops [--quick]``.
"""

from __future__ import annotations

import importlib
import platform
from typing import Any

import torch

import visionzoo.ops as ops

from ._harness import Report, Settings, median, paired_ratio, parse_settings, print_row, time_interleaved

IOU_THRESHOLD = 0.5
IMAGE = 1000.0
TARGETS = {("uniform", 1000): 1.0, ("uniform", 10000): 1 / 3, ("uniform", 50000): 1 / 3,
           ("clustered", 1000): 2.0, ("clustered", 10000): 1.0}  # fmt: skip


def uniform_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners uniform over the image, sides uniform in [8, 64) pixels; random scores."""
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=gen) * IMAGE
    size = 8 + torch.rand(n, 2, generator=gen) * 56
    return torch.cat([corner, corner + size], 1), torch.rand(n, generator=gen)


def clustered_boxes(n: int, seed: int = 0, objects: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes jittered around ``objects`` objects (centre noise 10% of the size, size noise 15%); random scores."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=gen) * IMAGE
    size = 32 + torch.rand(objects, 2, generator=gen) * 224
    which = torch.randint(0, objects, (n,), generator=gen)
    c = centre[which] + torch.randn(n, 2, generator=gen) * size[which] * 0.1
    s = size[which] * (1 + 0.15 * torch.randn(n, 2, generator=gen)).clamp(min=0.3)
    return torch.cat([c - s / 2, c + s / 2], 1), torch.rand(n, generator=gen)


LAYOUTS = {"uniform": uniform_boxes, "clustered": clustered_boxes}


def _settings_for(settings: Settings, n: int, layout: str) -> Settings:
    """The reference takes seconds per call at 50k uniform boxes: fewer repeats and no minimum time there."""
    if layout == "uniform" and n >= 50000:
        return Settings(settings.quick, repeats=3 if settings.quick else 5, warmup=0, min_time=0.0, fresh_repeats=1)
    return settings


def main(argv: list[str] | None = None) -> Report:
    settings, _ = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("ops", settings)
    reference_ops = importlib.import_module("torchvision.ops")  # the reference, as the other items load it

    for layout, make in LAYOUTS.items():
        for n in (1000, 10000, 50000):
            boxes, scores = make(n)
            ours_keep = ops.nms(boxes, scores, IOU_THRESHOLD)
            reference_keep = reference_ops.nms(boxes, scores, IOU_THRESHOLD)
            times = time_interleaved(
                {
                    "ours": lambda b=boxes, s=scores: ops.nms(b, s, IOU_THRESHOLD),
                    "reference": lambda b=boxes, s=scores: reference_ops.nms(b, s, IOU_THRESHOLD),
                },
                _settings_for(settings, n, layout),
            )
            ratio = paired_ratio(times, "ours", "reference")
            target = TARGETS.get((layout, n))
            row: dict[str, Any] = {
                "op": "nms",
                "layout": layout,
                "boxes": n,
                "kept": int(reference_keep.numel()),
                "identical": bool(torch.equal(ours_keep, reference_keep)),
                "ours_s": median(times["ours"]),
                "reference_s": median(times["reference"]),
                "ratio": ratio,
                "target_ratio": target,
                "met": None if target is None else bool(ratio <= target and torch.equal(ours_keep, reference_keep)),
            }
            print_row(row)
            report.rows.append(row)
    report.notes.append(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    report.summary = {
        "all_identical": all(r["identical"] for r in report.rows),
        "targets_met": all(r["met"] for r in report.rows if r["met"] is not None),
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
