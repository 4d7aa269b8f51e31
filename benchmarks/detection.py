"""Detection, eval mode, ours vs the reference, timed interleaved in one process.

The issues' cases: fasterrcnn_resnet50_fpn, fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn,
ssdlite320_mobilenet_v3_large and maskrcnn_resnet50_fpn (whose time includes pasting every mask into its image) on
two images of different sizes (640x480 and 500x375, each resized by the model's own transform), with the same
randomly initialised weights on both sides (the reference's state_dict loaded into ours). Random weights give
near-equal scores, so the kept boxes can differ in order; the row records how many each side returned. (For
SSDlite they also put every class of every default box above its 0.001 score threshold: 27,000 candidates per
image reach NMS, a heavier post-processing than trained weights cause.)
Run: ``python -m benchmarks.detection [--quick]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._harness import Report, median, paired_ratio, parse_settings, print_row, time_interleaved

MODELS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
)
SIZES = ((480, 640), (375, 500))


def _images(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=gen) for h, w in SIZES]


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    import torchvision  # the oracle, imported only when benchmarking

    import visionzoo.models.detection as ours

    report = Report("detection", settings)
    images = _images()
    for name in MODELS:
        if args.only and name not in args.only.split(","):
            continue
        torch.manual_seed(0)
        reference = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None).eval()
        model = getattr(ours, name)(weights=None, weights_backbone=None).eval()
        model.load_state_dict(reference.state_dict())
        with torch.inference_mode():
            found = {side: m(images) for side, m in (("ours", model), ("reference", reference))}
            times = time_interleaved(
                {side: (lambda m=m: m(images)) for side, m in (("ours", model), ("reference", reference))}, settings
            )
        row: dict[str, Any] = {
            "model": name,
            "images": "x".join(f"{w}x{h}" for h, w in SIZES),
            "ours_s": median(times["ours"]),
            "reference_s": median(times["reference"]),
            "ratio": paired_ratio(times, "ours", "reference"),
            "boxes_ours": [len(r["boxes"]) for r in found["ours"]],
            "boxes_reference": [len(r["boxes"]) for r in found["reference"]],
        }
        print_row(row)
        report.rows.append(row)
    report.summary = {r["model"]: r["ratio"] for r in report.rows}
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
