"""Optical flow, eval mode, ours vs the reference: raft_large on a 368x496 pair with 12 updates, timed interleaved in
one process, and the correlation pyramid's memory (held after building it, and the peak while building it), each
side measured in a fresh process.

Both sides run the same randomly initialised weights (the reference's state_dict loaded into ours); the flows are
checked equal first. Run: ``python -m benchmarks.flow [--quick]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._harness import (
    Report,
    current_rss_bytes,
    in_fresh_process,
    median,
    paired_ratio,
    parse_settings,
    peak_rss_bytes,
    print_row,
    reset_peak_rss,
    time_interleaved,
)

MODELS = ("raft_large",)
HEIGHT, WIDTH = 368, 496  # a Sintel frame (436x1024) scale the RAFT paper's evaluation pads to multiples of 8
UPDATES = 12
FEATURE_CHANNELS = 256  # raft_large's feature encoder output


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two frames in [-1, 1], the second the first moved 3 pixels right and 2 down."""
    gen = torch.Generator().manual_seed(seed)
    first = torch.rand(1, 3, HEIGHT, WIDTH, generator=gen) * 2 - 1
    return first, first.roll(shifts=(2, 3), dims=(-2, -1))


def correlation_memory(side: str) -> dict[str, float]:
    """MB held by the correlation pyramid of one 368x496 pair, and the rise of resident memory while building it
    (run in a fresh process, so that freed blocks of earlier work cannot hide the allocation)."""
    import gc

    if side == "ours":
        from visionzoo.models.optical_flow import CorrBlock
    else:
        from torchvision.models.optical_flow.raft import CorrBlock  # the oracle, only here

    gen = torch.Generator().manual_seed(0)
    fmap1, fmap2 = torch.randn(2, 1, FEATURE_CHANNELS, HEIGHT // 8, WIDTH // 8, generator=gen).unbind(0)
    block = CorrBlock(num_levels=4, radius=4)
    small = fmap1[..., :16, :16].contiguous()
    block.build_pyramid(small, small)  # first-call set-up, not the pyramid's memory
    block.corr_pyramid = []
    gc.collect()
    reset_peak_rss()
    before = current_rss_bytes()
    block.build_pyramid(fmap1, fmap2)
    peak = peak_rss_bytes() - before
    held = sum(level.numel() * level.element_size() for level in block.corr_pyramid)
    return {"held_mb": held / 2**20, "peak_rise_mb": peak / 2**20}


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    import torchvision  # the oracle, imported only when benchmarking

    import visionzoo.models.optical_flow as ours

    report = Report("flow", settings)
    image1, image2 = _pair()
    for name in MODELS:
        if args.only and name not in args.only.split(","):
            continue
        torch.manual_seed(0)
        reference = getattr(torchvision.models.optical_flow, name)(weights=None).eval()
        model = getattr(ours, name)(weights=None).eval()
        model.load_state_dict(reference.state_dict())
        sides = {"ours": model, "reference": reference}
        with torch.inference_mode():
            flows = {side: m(image1, image2, num_flow_updates=UPDATES)[-1] for side, m in sides.items()}
            difference = (flows["ours"] - flows["reference"]).abs().max().item()
            times = time_interleaved(
                {side: (lambda m=m: m(image1, image2, num_flow_updates=UPDATES)) for side, m in sides.items()},
                settings,
            )
        memory = {side: in_fresh_process(correlation_memory, side) for side in sides}
        row: dict[str, Any] = {
            "model": name,
            "pair": f"{WIDTH}x{HEIGHT}",
            "updates": UPDATES,
            "ours_s": median(times["ours"]),
            "reference_s": median(times["reference"]),
            "ratio": paired_ratio(times, "ours", "reference"),
            "max_flow_difference": difference,
            "corr_held_mb_ours": memory["ours"]["held_mb"],
            "corr_held_mb_reference": memory["reference"]["held_mb"],
            "corr_peak_rise_mb_ours": memory["ours"]["peak_rise_mb"],
            "corr_peak_rise_mb_reference": memory["reference"]["peak_rise_mb"],
        }
        print_row(row)
        report.rows.append(row)
    report.summary = {r["model"]: r["ratio"] for r in report.rows}
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
