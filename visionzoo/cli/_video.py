"""``visionzoo predict`` for video classification: per video file, the top categories of each clip of the model's
length with its time range, then a summary for the whole video (the clips' probabilities averaged, as the
reference evaluates video-level accuracy).

Clips are read with :func:`visionzoo.io.read_video_clips` (one pass over the file, one clip in memory at a time),
resampled to the frame rate the weights were evaluated at, and run ``--batch-size`` clips per forward. The
predictor plugs into :mod:`visionzoo.cli.predict` (see its ``PREDICTORS``); torch and PyAV are imported inside
the functions, so that ``visionzoo --help`` stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import CommandError, one_line

if TYPE_CHECKING:
    import torch

    from .predict import Results, Session

# The files a folder given to `predict` contributes for a video model (compared in lower case).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
# Without a clip length from the weights (or --clip-len): the length every published video model but S3D was
# evaluated with.
DEFAULT_CLIP_LEN = 16


def clip_setting(meta: dict[str, Any], name: str) -> float | None:
    """The evaluation setting ``name`` (``clip_len``, ``frame_rate``) of a weights entry: its meta field, else the
    value its ``_docs`` quote (the reference's entries state them as ``frame_rate=15``, ``clip_len=16``)."""
    if meta.get(name) is not None:
        return float(meta[name])
    found = re.search(rf"\b{name}=([0-9]+(?:\.[0-9]+)?)", str(meta.get("_docs", "")))
    return float(found.group(1)) if found else None


def clip_plan(session: Session) -> tuple[int, float | None, int]:
    """``(frames per clip, frame rate to resample to or None, fewest frames the model takes)`` for this run."""
    entry = session.chosen.entry if session.chosen is not None else None
    meta = dict(entry.meta) if entry is not None else {}
    given = getattr(session.args, "clip_len", None)
    clip_len = given or int(clip_setting(meta, "clip_len") or DEFAULT_CLIP_LEN)
    minimum = int(meta.get("min_temporal_size") or 1)
    if clip_len < minimum:
        raise CommandError(f"--clip-len {clip_len}: {session.args.model} needs clips of at least {minimum} frames")
    return clip_len, clip_setting(meta, "frame_rate"), minimum


def classify_videos(session: Session, paths: list[str]) -> tuple[Results, list[str]]:
    """Classify every clip of each video in ``paths``; one result per readable video, one message per other.

    Raises:
        CommandError: with ``--strict``, at the first video that cannot be read (status 1).
    """
    from visionzoo.io import VideoDecodeError
    from visionzoo.io._av import import_av

    try:
        import_av()  # without PyAV no video can be read: say so once, not once per file
    except VideoDecodeError as error:
        raise CommandError(str(error), 1) from None
    results, failures = [], []
    clip_len, frame_rate, minimum = clip_plan(session)
    for path in paths:
        try:
            results.append(_classify_video(session, path, clip_len, frame_rate, minimum))
        except (VideoDecodeError, ValueError, TypeError) as error:
            detail = one_line(error)
            message = detail if path in detail else f"{path}: {detail}"
            if session.args.strict:
                raise CommandError(f"{message} (--strict stops at the first unreadable video)", 1) from None
            failures.append(message)
    return results, failures


def _classify_video(
    session: Session, path: str, clip_len: int, frame_rate: float | None, minimum: int
) -> dict[str, Any]:
    import torch

    from visionzoo.io import read_video_clips

    preset: Callable[..., torch.Tensor] | None = session.preset
    if preset is None:
        raise CommandError(f"{session.args.model}: no preset known for its clips", 1)
    clips: list[dict[str, Any]] = []
    total: torch.Tensor | None = None
    pending: list[tuple[Any, torch.Tensor]] = []

    def flush() -> None:
        nonlocal total
        inputs = torch.stack([tensor for _, tensor in pending]).to(session.device)
        probs = session.model(inputs).float().softmax(dim=1).cpu()
        for (clip, _), row in zip(pending, probs):
            clips.append({"start": round(clip.start, 3), "end": round(clip.end, 3), "top": _ranked(session, row)})
        total = probs.sum(dim=0) if total is None else total + probs.sum(dim=0)
        pending.clear()

    stream = read_video_clips(path, clip_len, frame_rate=frame_rate, drop_last=False, output_format="TCHW")
    for clip in stream:
        short = len(clip.frames) < clip_len
        if short and (clips or pending or len(clip.frames) < minimum):
            break  # a tail shorter than a clip: left out unless the whole video is that short
        pending.append((clip, preset(clip.frames)))
        if len(pending) == session.args.batch_size:
            flush()
    if pending:
        flush()
    if total is None:
        raise CommandError(f"{path}: shorter than the {minimum} frames {session.args.model} needs", 1)
    summary = {"clips": len(clips), "top": _ranked(session, total / len(clips))}
    return {"video": path, "clip_len": clip_len, "frame_rate": frame_rate, "clips": clips, "summary": summary}


def _ranked(session: Session, probs: torch.Tensor) -> list[dict[str, Any]]:
    """The ``--topk`` most probable categories of one probability vector, those below ``--threshold`` left out."""
    names = session.categories if len(session.categories) == probs.shape[0] else []  # another head: by index
    top = probs.topk(min(session.args.topk, probs.shape[0]))
    return [
        {"label": names[i] if names else str(i), "index": i, "probability": round(p, 4)}
        for p, i in zip(top.values.tolist(), top.indices.tolist())
        if p >= session.args.threshold
    ]


def show_video(results: Results) -> None:
    """Per video: one line per clip (its time range and top categories), then the whole video's ranking."""
    for result in results:
        rate = f" at {result['frame_rate']:g} fps" if result["frame_rate"] else ""
        print(f"{result['video']}  ({len(result['clips'])} clips of {result['clip_len']} frames{rate})")
        for clip in result["clips"]:
            ranked = ", ".join(f"{item['label']} {item['probability'] * 100:.1f}%" for item in clip["top"])
            print(f"  {clip['start']:8.2f} - {clip['end']:8.2f} s  {ranked or '(no category above the threshold)'}")
        print("  whole video:")
        if not result["summary"]["top"]:
            print("    (no category above the threshold)")
        for rank, item in enumerate(result["summary"]["top"], 1):
            print(f"    {rank}. {item['label']:<30} {item['probability'] * 100:6.2f}%")


def video_rows(results: Results) -> list[dict[str, Any]]:
    """CSV rows: one per reported category of each clip, and of the whole video (``clip`` = ``all``)."""
    rows = []
    for result in results:
        for number, clip in enumerate(result["clips"]):
            for rank, item in enumerate(clip["top"], 1):
                rows.append(
                    {"video": result["video"], "clip": number, "start": clip["start"], "end": clip["end"]}
                    | {"rank": rank, **item}
                )
        last = result["clips"][-1]["end"] if result["clips"] else 0.0
        for rank, item in enumerate(result["summary"]["top"], 1):
            rows.append({"video": result["video"], "clip": "all", "start": 0.0, "end": last, "rank": rank, **item})
    return rows
