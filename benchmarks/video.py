"""Video classification, eval mode, ours vs the reference, timed interleaved in one process.

The issue's case: r2plus1d_18, mvit_v2_s and swin3d_t, eager, on one clip of 16 frames at each model's preset crop
(112x112 for the ResNet, 224x224 for the transformers), with the same randomly initialised weights on both sides
(the reference's state_dict loaded into ours); the row records the largest difference between the two outputs.
Run: ``python -m benchmarks.video [--quick] [--only swin3d_t]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._harness import Report, median, paired_ratio, parse_settings, print_row, time_interleaved

MODELS = {"r2plus1d_18": (16, 112, 112), "mvit_v2_s": (16, 224, 224), "swin3d_t": (16, 224, 224)}


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    import torchvision  # the oracle, imported only when benchmarking

    import visionzoo.models.video as ours

    report = Report("video", settings)
    for name, clip_size in MODELS.items():
        if args.only and name not in args.only.split(","):
            continue
        torch.manual_seed(0)
        reference = getattr(torchvision.models.video, name)(weights=None).eval()
        model = getattr(ours, name)(weights=None).eval()
        model.load_state_dict(reference.state_dict())
        clip = torch.randn(1, 3, *clip_size, generator=torch.Generator().manual_seed(0))
        sides = {"ours": model, "reference": reference}
        with torch.inference_mode():
            gap = (model(clip) - reference(clip)).abs().max().item()
            times = time_interleaved({side: (lambda m=m, x=clip: m(x)) for side, m in sides.items()}, settings)
        row: dict[str, Any] = {
            "model": name,
            "clip": "x".join(map(str, clip_size)),
            "ours_s": median(times["ours"]),
            "reference_s": median(times["reference"]),
            "ratio": paired_ratio(times, "ours", "reference"),
            "max_abs_diff": gap,
        }
        print_row(row)
        report.rows.append(row)
    report.summary = {r["model"]: r["ratio"] for r in report.rows}
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
