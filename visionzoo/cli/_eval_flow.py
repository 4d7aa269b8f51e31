"""``visionzoo validate`` for optical flow weights: end-point error, 1/3/5-pixel rates and Fl-all on the training
split of MPI Sintel or KITTI-2015 (the splits whose ground truth is public), as the reference evaluates RAFT.

Layouts (``--data`` is the dataset's root or its ``training`` folder):

* Sintel: ``training/<pass>/<scene>/frame_NNNN.png`` (``--pass clean`` or ``final``) and
  ``training/flow/<scene>/frame_NNNN.flo``; the flow of frame k goes from frame k to frame k + 1 of its scene.
  Every pixel is scored. Frames are padded to multiples of 8 evenly on both sides; 32 flow updates by default.
* KITTI-2015: ``training/image_2/NNNNNN_10.png`` and ``NNNNNN_11.png``, ``training/flow_occ/NNNNNN_10.png``
  (16-bit flow PNGs whose third channel marks the pixels with ground truth, the only ones scored). Frames are
  padded to multiples of 8 at the bottom (and evenly left and right); 24 flow updates by default.

The published figures are those of the dataset and pass evaluated (``Sintel-Train-Cleanpass``,
``Sintel-Train-Finalpass``, ``Kitti-Train``); weights fine-tuned on these splits publish test-split figures only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import ChosenWeights, CommandError, device_of, one_line
from ._evaluate import Scores, Skips, Timer, build, check_data_dir, progress, published_of, report

if TYPE_CHECKING:
    import torch

_LAYOUT = "Sintel (training/clean|final/, training/flow/) or KITTI-2015 (training/image_2/, training/flow_occ/)"
_MULTIPLE = 8
# Flow updates the reference evaluates with, per dataset.
UPDATES = {"sintel": 32, "kitti": 24}
PUBLISHED = {"clean": "Sintel-Train-Cleanpass", "final": "Sintel-Train-Finalpass", "kitti": "Kitti-Train"}


@dataclass(frozen=True)
class FlowPair:
    """Two frames and the true flow from the first to the second."""

    first: Path
    second: Path
    flow: Path


def find_pairs(root: Path, sintel_pass: str) -> tuple[str, list[FlowPair]]:
    """``("sintel" | "kitti", pairs)`` of the dataset under ``root``, in sorted order.

    Raises:
        CommandError: neither layout, or a flow file without its frames (named).
    """
    check_data_dir(root, _LAYOUT)
    base = root / "training" if (root / "training").is_dir() else root
    if (base / "image_2").is_dir() and (base / "flow_occ").is_dir():
        return "kitti", _kitti_pairs(base)
    if (base / "flow").is_dir():
        return "sintel", _sintel_pairs(base, sintel_pass)
    raise CommandError(f"{root}: neither of the optical flow layouts: {_LAYOUT}")


def _sintel_pairs(base: Path, sintel_pass: str) -> list[FlowPair]:
    frames_root = base / sintel_pass
    if not frames_root.is_dir():
        raise CommandError(f"{frames_root}: no such directory (Sintel's {sintel_pass} pass frames, --pass)")
    pairs = []
    for scene in sorted(p for p in (base / "flow").iterdir() if p.is_dir()):
        flows = sorted(scene.glob("*.flo"))
        frames = sorted((frames_root / scene.name).glob("*.png"))
        if len(frames) != len(flows) + 1:
            raise CommandError(
                f"{frames_root / scene.name}: {len(frames)} frames for the {len(flows)} flows of {scene} (a scene "
                "has one frame more than flows)"
            )
        pairs += [FlowPair(frames[i], frames[i + 1], flow) for i, flow in enumerate(flows)]
    if not pairs:
        raise CommandError(f"{base / 'flow'}: no scene with .flo files")
    return pairs


def _kitti_pairs(base: Path) -> list[FlowPair]:
    pairs = []
    for flow in sorted((base / "flow_occ").glob("*_10.png")):
        first = base / "image_2" / flow.name
        second = first.with_name(flow.name.replace("_10.png", "_11.png"))
        for frame in (first, second):
            if not frame.is_file():
                raise CommandError(f"{frame}: no such frame (the flow {flow} needs it)")
        pairs.append(FlowPair(first, second, flow))
    if not pairs:
        raise CommandError(f"{base / 'flow_occ'}: no flow files (NNNNNN_10.png)")
    return pairs


def read_pair(pair: FlowPair, layout: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The two frames (uint8 RGB), the true flow and its validity mask (None: every pixel).

    Raises:
        CommandError: a file does not decode (status 1: the pair is skipped); the frames or the flow differ in
            size (status 2).
    """
    from visionzoo.io import ImageReadMode, read_flo, read_image, read_kitti_flow

    frames = []
    for path in (pair.first, pair.second):
        try:
            frames.append(read_image(path, mode=ImageReadMode.RGB))
        except (OSError, ValueError, RuntimeError) as error:
            detail = one_line(error)
            raise CommandError(detail if str(path) in detail else f"{path}: cannot read image: {detail}", 1) from None
    try:
        if layout == "kitti":
            flow, valid = read_kitti_flow(pair.flow)
        else:
            flow, valid = read_flo(pair.flow), None
    except (OSError, ValueError, RuntimeError) as error:
        detail = one_line(error)
        raise CommandError(detail if str(pair.flow) in detail else f"{pair.flow}: {detail}", 1) from None
    sizes = {tuple(frames[0].shape[-2:]), tuple(frames[1].shape[-2:]), tuple(flow.shape[-2:])}
    if len(sizes) > 1:
        raise CommandError(
            f"{pair.flow}: the frames {pair.first.name}, {pair.second.name} and the flow differ in size ("
            + ", ".join(f"{w}x{h}" for h, w in (frames[0].shape[-2:], frames[1].shape[-2:], flow.shape[-2:]))
            + ")"
        )
    return frames[0], frames[1], flow, valid


def padding(height: int, width: int, layout: str) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` padding to multiples of 8, as the reference pads Sintel (evenly) and KITTI
    (all of the height at the bottom)."""
    tall, wide = -height % _MULTIPLE, -width % _MULTIPLE
    if layout == "kitti":
        return wide // 2, wide - wide // 2, 0, tall
    return wide // 2, wide - wide // 2, tall // 2, tall - tall // 2


def evaluate(args: argparse.Namespace, chosen: ChosenWeights) -> int:
    """Score optical flow weights on Sintel or KITTI and report the errors next to meta's."""
    import torch
    from torch.nn.functional import pad

    from visionzoo.metrics.flow import FlowMetrics

    root = Path(args.data)
    layout, pairs = find_pairs(root, args.sintel_pass)
    pairs = pairs[: args.limit]
    updates = args.num_flow_updates or UPDATES[layout]
    device = device_of(args.device)
    model, preset = build(chosen, args, device)
    metrics = FlowMetrics()
    skips = Skips()
    pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def flush() -> None:
        height, width = pending[0][0].shape[-2:]
        left, right, top, bottom = padding(height, width, layout)
        firsts, seconds = (
            pad(torch.stack([item[i] for item in pending]), (left, right, top, bottom), mode="replicate").to(device)
            for i in (0, 1)
        )
        predicted = model(firsts, seconds, num_flow_updates=updates)[-1].float().cpu()
        predicted = predicted[:, :, top : top + height, left : left + width]
        for (_, _, flow, valid), estimate in zip(pending, predicted):
            metrics.update(estimate, flow, valid)
        pending.clear()

    with Timer() as timer, progress(args, len(pairs), "pair") as bar:
        for pair in pairs:
            read = skips.guard(None, lambda p=pair: read_pair(p, layout))
            bar.update(1)
            if read is None:
                continue
            first, second = preset(read[0], read[1])
            if pending and (len(pending) == args.batch_size or pending[0][0].shape != first.shape):
                flush()
            pending.append((first, second, read[2], read[3]))
        if pending:
            flush()
    name = "KITTI-2015" if layout == "kitti" else f"Sintel ({args.sintel_pass} pass)"
    scored = len(pairs) - len(skips.messages)
    return report(
        args,
        chosen,
        Scores(
            heading=f"{chosen.label} on {args.data}: {name}, {scored} pairs, {metrics.pixels} pixels scored, "
            f"{updates} flow updates",
            measured={"measured": metrics.compute()},
            published=published_of(chosen, PUBLISHED["kitti" if layout == "kitti" else args.sintel_pass]),
            items=scored,
            unit="pairs",
            seconds=timer.seconds,
            skipped=skips.messages,
            extra={"dataset": name, "num_flow_updates": updates},
        ),
    )
