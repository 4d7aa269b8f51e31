"""``visionzoo predict`` for optical flow: per pair of frames, the motion from the first to the second as a
colour-coded PNG (``visionzoo.utils.flow_to_image``), a summary line, and optionally the flow itself as a ``.flo``.

Frames come from a *frame source*, an iterable of :class:`Frame`; pairing (``--pairs``) and the model run do not
care where frames come from. The image files given form one sequence (:func:`image_frames`); each video file is a
sequence of its own (:func:`video_frames`, decoded one frame at a time), so pairs never join two videos.

The predictor plugs into :mod:`visionzoo.cli.predict` (see its ``PREDICTORS``); torch and PIL are imported inside
the functions, so that ``visionzoo --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import CommandError, one_line

if TYPE_CHECKING:
    import torch

    from .predict import Results, Session

PAIRINGS = ("separate", "consecutive")
DEFAULT_UPDATES = 12
# The published RAFT models need sides that are multiples of 8 and at least 128 pixels (their 4-level correlation
# pyramid); smaller or odd-sized frames are padded (edge pixels repeated) and the flow cropped back.
_MULTIPLE = 8
_MIN_SIDE = 128


@dataclass(frozen=True)
class Frame:
    """One frame of a source: its name in messages and outputs (a file path, or e.g. ``clip.mp4#12`` for a video
    frame), and the image ``(3, H, W)`` (uint8, or uint16 from 16-bit PNGs), or why it could not be read."""

    name: str
    image: torch.Tensor | None = None
    error: str | None = None


def image_frames(paths: Iterable[str]) -> Iterator[Frame]:
    """The frame source of image files, read as RGB one at a time (each is read once, also in consecutive pairs)."""
    from .predict import read_rgb

    for path in paths:
        try:
            yield Frame(path, image=read_rgb(path))
        except CommandError as error:
            yield Frame(path, error=str(error))


def video_frames(path: str) -> Iterator[Frame]:
    """The frame source of a video file, decoded front to back one frame at a time; frames are named
    ``PATH#INDEX``. A video that cannot be read (or stops reading) ends with a frame that says why."""
    from visionzoo.io import VideoDecodeError, read_video_clips

    index = 0
    try:
        for clip in read_video_clips(path, 1, output_format="TCHW"):
            yield Frame(f"{path}#{index}", image=clip.frames[0])
            index += 1
    except (VideoDecodeError, ValueError) as error:
        detail = one_line(error)
        yield Frame(path, error=detail if path in detail else f"{path}: {detail}")


def is_video(path: str) -> bool:
    """Whether ``path`` names a video file (by its suffix), which ``predict`` reads as a sequence of frames."""
    from ._video import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _video_frame_count(path: str) -> int | None:
    """The number of frames a video holds, from its packets (no decoding); None when it cannot be read (the run
    then reports why)."""
    from visionzoo.io import VideoDecodeError, read_video_timestamps

    try:
        return len(read_video_timestamps(path)[0])
    except (VideoDecodeError, ValueError):
        return None


def count_pairs(paths: list[str], pairing: str) -> int:
    """How many frame pairs ``paths`` give: the image files pair among themselves (see :func:`pair_count`), each
    video within itself (with separate pairs, an odd last frame of a video is left out); a video that cannot be
    read counts as one item, the failure the run reports for it.

    Raises:
        CommandError: as :func:`pair_count` for the images; no pair at all.
    """
    images = [path for path in paths if not is_video(path)]
    total = pair_count(len(images), pairing) if images else 0
    for path in paths:
        if is_video(path):
            frames = _video_frame_count(path)
            if frames is None:
                total += 1
            else:
                total += max(frames - 1, 0) if pairing == "consecutive" else frames // 2
    if total == 0:
        raise CommandError("optical flow needs two frames (the motion from the first to the second): no input has them")
    return total


def _pairs_of(paths: list[str], pairing: str) -> Iterator[tuple[Frame, Frame] | Frame]:
    """Every pair of frames of ``paths`` (images first, then each video), or the frame that says why a video could
    not be read."""
    images = [path for path in paths if not is_video(path)]
    yield from frame_pairs(image_frames(images), pairing)
    for path in paths:
        if is_video(path):
            errors: list[Frame] = []
            yield from frame_pairs(_until_error(video_frames(path), errors), pairing)
            yield from errors


def _until_error(frames: Iterable[Frame], errors: list[Frame]) -> Iterator[Frame]:
    """``frames`` up to the first that could not be read, which goes into ``errors``."""
    for frame in frames:
        if frame.error is not None:
            errors.append(frame)
            return
        yield frame


def frame_pairs(frames: Iterable[Frame], pairing: str) -> Iterator[tuple[Frame, Frame]]:
    """``separate``: frames 1-2, 3-4, ...; ``consecutive``: 1-2, 2-3, 3-4, ... (a sequence, e.g. a video's)."""
    previous: Frame | None = None
    for frame in frames:
        if previous is not None:
            yield previous, frame
            previous = frame if pairing == "consecutive" else None
        else:
            previous = frame


def pair_count(frames: int, pairing: str) -> int:
    """How many pairs ``frame_pairs`` makes of ``frames`` frames.

    Raises:
        CommandError: fewer than two frames, or an odd number with separate pairs.
    """
    if frames < 2:
        raise CommandError(f"optical flow needs two frames (the motion from the first to the second), got {frames}")
    if pairing == "separate" and frames % 2:
        raise CommandError(
            f"--pairs separate takes the frames two by two, but got {frames}; give an even number, or "
            "--pairs consecutive for the flow between each frame and the next"
        )
    return frames - 1 if pairing == "consecutive" else frames // 2


def check_flow_out(out: str | None, pairs: int) -> None:
    """Refuse ``--out`` values the flow task cannot honour, before any work is done: ``FILE.flo`` takes exactly one
    pair; anything else names the directory for pictures (checked as the other drawing tasks check it)."""
    from .predict import check_out_dir

    if out is not None and Path(out).suffix.lower() == ".flo":
        if pairs != 1:
            raise CommandError(
                f"--out {out}: a .flo file holds one flow, but there are {pairs} frame pairs; give a directory "
                "for their pictures instead"
            )
        if not Path(out).resolve().parent.is_dir():
            raise CommandError(f"--out {out}: the directory does not exist")
        return
    check_out_dir(out, "optical flow")


def _padded(image: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` -> ``(1, 3, H', W')``: sides padded (edges repeated) to multiples of 8 and at least 128."""
    from torch.nn.functional import pad

    height, width = image.shape[-2:]
    target = [max(_MIN_SIDE, -(-side // _MULTIPLE) * _MULTIPLE) for side in (height, width)]
    return pad(image[None], (0, target[1] - width, 0, target[0] - height), mode="replicate")


def flow_of_pair(session: Session, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The model's final flow ``(2, H, W)`` (on the CPU, in pixels) from image ``first`` to ``second``.

    Raises:
        ValueError: the frames differ in size, or the preset refuses them.
    """
    if first.shape != second.shape:
        raise ValueError(
            f"the frames differ in size ({first.shape[-1]}x{first.shape[-2]} and {second.shape[-1]}x"
            f"{second.shape[-2]} pixels); flow needs frames of one size"
        )
    assert session.preset is not None
    image1, image2 = session.preset(first, second)
    height, width = image1.shape[-2:]
    device = session.device
    flows = session.model(
        _padded(image1).to(device), _padded(image2).to(device), num_flow_updates=session.args.flow_updates
    )
    return flows[-1][0, :, :height, :width].float().cpu()


def estimate_flows(session: Session, paths: list[str]) -> tuple[Results, list[str], int]:
    """Run the model on the pairs of frames of ``paths``; returns the results, one message per pair that failed,
    and the number of pairs.

    Raises:
        CommandError: with ``--strict``, at the first pair that fails (status 1).
    """
    args = session.args
    total = count_pairs(paths, args.pairs)
    results: Results = []
    failures: list[str] = []
    for item in _pairs_of(paths, args.pairs):
        first, second = item if isinstance(item, tuple) else (item, item)
        try:
            unreadable = first.error or second.error
            if unreadable:
                raise CommandError(unreadable, 1)
            assert first.image is not None and second.image is not None
            flow = flow_of_pair(session, first.image, second.image)
        except (CommandError, ValueError, TypeError) as error:
            detail = str(error) if isinstance(error, CommandError) else one_line(error)
            message = detail if first is second else f"{first.name}, {second.name}: {detail}"
            if args.strict:
                raise CommandError(f"{message} (--strict stops at the first pair that fails)", 1) from None
            print(f"visionzoo: {message}", file=sys.stderr)
            failures.append(message)
            continue
        results.append(_save(session, first.name, second.name, flow))
    return results, failures, total


def _save(session: Session, first: str, second: str, flow: torch.Tensor) -> dict[str, object]:
    """Write the pair's picture (and ``.flo`` with ``--out FILE.flo``); the result: paths and motion statistics."""
    from PIL import Image

    from visionzoo.io import write_flo
    from visionzoo.utils import flow_to_image

    out = session.args.out
    flo = Path(out) if out is not None and Path(out).suffix.lower() == ".flo" else None
    if flo is not None:
        write_flo(flow, flo)
        picture = flo.with_suffix(".png")
    else:
        base, _, index = first.partition("#")  # a video frame is named PATH#INDEX
        picture = session.pictures.next_path(f"{Path(base).stem}-frame{index}" if index else first)
    Image.fromarray(flow_to_image(flow).permute(1, 2, 0).contiguous().numpy()).save(picture, format="PNG")
    lengths = flow.pow(2).sum(dim=0).sqrt()
    return {
        "frames": [first, second],
        "picture": str(picture),
        "flo": str(flo) if flo is not None else None,
        "mean_motion": [round(v, 3) for v in flow.mean(dim=(1, 2)).tolist()],
        "mean_length": round(lengths.mean().item(), 3),
        "max_length": round(lengths.max().item(), 3),
    }


def show_flow(results: Results) -> None:
    """Print each pair, where its picture went, and its motion: mean (dx, dy) and mean and largest length."""
    for result in results:
        first, second = result["frames"]
        written = result["picture"] + (f" (flow: {result['flo']})" if result["flo"] else "")
        print(f"{first}, {second} -> {written}")
        dx, dy = result["mean_motion"]
        print(
            f"  mean motion (dx, dy) = ({dx:.2f}, {dy:.2f}) px; length: mean {result['mean_length']:.2f} px, "
            f"max {result['max_length']:.2f} px"
        )
