"""RoIAlign, ours vs the reference's compiled kernel, timed interleaved in one process.

The issue's case: 1,000 random RoIs over one 256x200x272 feature map (a stride-4 FPN level of an 800x1088 image),
7x7 bins, sampling_ratio 2; also adaptive sampling (-1), and the backward pass of the fixed case.
Run: ``python -m benchmarks.ops_roi [--quick]``.
"""

from __future__ import annotations

from typing import Any

import torch

import visionzoo.ops as ops

from ._harness import Report, median, paired_ratio, parse_settings, print_row, time_interleaved

NUM_ROIS, SHAPE, OUTPUT_SIZE = 1000, (1, 256, 200, 272), 7


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    height, width = SHAPE[2:]
    corner = torch.rand(NUM_ROIS, 2, generator=gen) * torch.tensor([width * 0.9, height * 0.9])
    size = torch.rand(NUM_ROIS, 2, generator=gen) * torch.tensor([width * 0.5, height * 0.5]) + 1
    boxes = torch.cat([torch.zeros(NUM_ROIS, 1), corner, corner + size], dim=1)
    return torch.randn(SHAPE, generator=gen), boxes


def main(argv: list[str] | None = None) -> Report:
    settings, _ = parse_settings(__doc__.splitlines()[0], argv)
    from torchvision import ops as reference  # the oracle, imported only when benchmarking

    report = Report("ops_roi", settings)
    x, boxes = _case()
    for sampling_ratio, backward in [(2, False), (-1, False), (2, True)]:

        def run(op, sampling_ratio=sampling_ratio, backward=backward) -> Any:
            if not backward:
                with torch.no_grad():
                    return op(x, boxes, OUTPUT_SIZE, 1.0, sampling_ratio)
            feature = x.detach().requires_grad_()
            op(feature, boxes, OUTPUT_SIZE, 1.0, sampling_ratio).sum().backward()
            return feature.grad

        difference = (run(ops.roi_align) - run(reference.roi_align)).abs().max().item()
        times = time_interleaved(
            {"ours": lambda: run(ops.roi_align), "reference": lambda: run(reference.roi_align)}, settings
        )
        row: dict[str, Any] = {
            "case": f"roi_align {'forward+backward' if backward else 'forward'} sampling_ratio={sampling_ratio}",
            "ours_s": median(times["ours"]),
            "reference_s": median(times["reference"]),
            "ratio_ours_over_reference": paired_ratio(times, "ours", "reference"),
            "max_difference": difference,
            "threads": torch.get_num_threads(),
        }
        print_row(row)
        report.rows.append(row)
    report.summary = {r["case"]: r["ratio_ours_over_reference"] for r in report.rows}
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
