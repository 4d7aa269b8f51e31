"""``visionzoo validate`` for video classification weights: video-level and clip-level acc@1/acc@5 on the Kinetics
layout, sampled as the reference evaluates its Kinetics-400 weights.

``--data DIR`` holds one folder of video files per class, named by category index (``0`` ... ``399``) or by exact
category name (``air drumming``; underscores read as spaces, so ``air_drumming`` works too).

Per video: the frames are resampled to the weights' evaluation frame rate (``--frame-rate``; frames are dropped
or repeated at the frame indices ``floor(i * native / target)``), every run of ``clip_len`` consecutive resampled
frames is a candidate clip (a stride of one frame), and ``--clips-per-video`` of them are taken uniformly spaced
(``floor(linspace(0, candidates - 1, N))``). The clips go through the weights' preset and the model; clip-level
accuracy scores each clip's logits, video-level accuracy the sum of its clips' softmax probabilities. A video
shorter than one clip is left out (as the reference's sampler leaves it out) and reported with the unreadable ones.
Defaults (clip length, frame rate, clips per video) are those the weights' documentation states.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ChosenWeights, CommandError, device_of, one_line
from ._eval_classification import class_indices
from ._evaluate import Scores, Skips, Timer, build, check_data_dir, progress, published_of, report
from ._video import DEFAULT_CLIP_LEN, VIDEO_SUFFIXES, clip_setting

if TYPE_CHECKING:
    import torch

_LAYOUT = "the Kinetics layout: one subfolder of video files per class"
# The reference's default number of clips per video when the weights do not state theirs.
DEFAULT_CLIPS_PER_VIDEO = 5


def resampled_indices(frames: int, native_fps: float | None, target_fps: float | None) -> list[int]:
    """The indices of a video's ``frames`` that make it ``target_fps`` frames per second, as the reference's clip
    sampler resamples: a whole-number ratio keeps every n-th frame, another ratio takes ``floor(i * native /
    target)`` (in float32, as it computes them) for ``floor(frames * target / native)`` frames."""
    import torch

    if target_fps is None or not native_fps:
        return list(range(frames))
    step = native_fps / target_fps
    if step.is_integer():
        return list(range(0, frames, int(step)))
    count = math.floor(frames * target_fps / native_fps)
    return (torch.arange(count, dtype=torch.float32) * step).floor().to(torch.int64).tolist()


def clip_starts(candidates: int, clips: int) -> list[int]:
    """``clips`` starts uniformly spaced over ``candidates``: ``floor(linspace(0, candidates - 1, clips))`` (in
    float32, as the reference's sampler); none for a video with no candidate."""
    import torch

    if candidates <= 0:
        return []
    return torch.linspace(0, candidates - 1, steps=clips).floor().to(torch.int64).tolist()


def find_videos(root: Path, categories: list[str]) -> list[tuple[Path, int]]:
    """``(video path, label)`` pairs of a folder of class folders, in sorted order.

    Raises:
        CommandError: no class folder, a folder that names no category, no video at all.
    """
    check_data_dir(root, _LAYOUT)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CommandError(f"{root}: no class subfolders ({_LAYOUT})")
    known = set(categories)
    spelled = {f: f.replace("_", " ") if f not in known and f.replace("_", " ") in known else f for f in folders}
    mapping = class_indices(list(spelled.values()), categories)
    videos = [
        (path, mapping[spelled[folder]])
        for folder in folders
        for path in sorted((root / folder).rglob("*"))
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()
    ]
    if not videos:
        raise CommandError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) in the class folders")
    return videos


def sampled_clips(path: Path, clip_len: int, frame_rate: float | None, clips: int) -> list[torch.Tensor]:
    """The clips (uint8 ``T x 3 x H x W``) the evaluation takes from one video; empty when it is shorter than one.

    Raises:
        CommandError: the video does not decode (status 1).
    """
    from visionzoo.io import VideoDecodeError, read_video

    try:
        video, _, info = read_video(path, pts_unit="sec", output_format="TCHW")
    except (VideoDecodeError, ValueError, RuntimeError) as error:
        detail = one_line(error)
        raise CommandError(detail if str(path) in detail else f"{path}: {detail}", 1) from None
    indices = resampled_indices(len(video), info.get("video_fps"), frame_rate)
    starts = clip_starts(len(indices) - clip_len + 1, clips)
    return [video[indices[start : start + clip_len]] for start in starts]


def evaluate(args: argparse.Namespace, chosen: ChosenWeights) -> int:
    """Score video weights on a Kinetics-layout ``--data`` and report video- and clip-level accuracy next to meta's."""
    import torch

    from visionzoo.io import VideoDecodeError
    from visionzoo.io._av import import_av
    from visionzoo.metrics.classification import topk_hits

    root = Path(args.data)
    meta = dict(chosen.entry.meta) if chosen.entry is not None else {}
    clip_len = args.clip_len or int(clip_setting(meta, "clip_len") or DEFAULT_CLIP_LEN)
    minimum = int(meta.get("min_temporal_size") or 1)
    if clip_len < minimum:
        raise CommandError(f"--clip-len {clip_len}: {chosen.model} needs clips of at least {minimum} frames")
    frame_rate = args.frame_rate or clip_setting(meta, "frame_rate")
    clips_per_video = args.clips_per_video or int(clip_setting(meta, "clips_per_video") or DEFAULT_CLIPS_PER_VIDEO)
    try:
        import_av()  # without PyAV no video can be read: say so once, not once per file
    except VideoDecodeError as error:
        raise CommandError(str(error), 1) from None
    check_data_dir(root, _LAYOUT)
    videos = None if chosen.local else find_videos(root, list(meta.get("categories") or []))[: args.limit]
    device = device_of(args.device)
    model, preset = build(chosen, args, device)
    if videos is None:
        outputs = _outputs(model, preset, clip_len)
        videos = find_videos(root, chosen.categories(outputs) or [str(i) for i in range(outputs)])[: args.limit]
    skips = Skips()
    video_hits = {1: 0, 5: 0}
    clip_hits = {1: 0, 5: 0}
    scored_videos = scored_clips = 0
    labels_seen: set[int] = set()
    with Timer() as timer, progress(args, len(videos), "video") as bar:
        for path, label in videos:
            clips = skips.guard(path, lambda p=path: sampled_clips(p, clip_len, frame_rate, clips_per_video))
            bar.update(1)
            if clips is None:
                continue
            if not clips:
                at = f"at {frame_rate:g} fps" if frame_rate else "at its frame rate"
                skips.add(f"{path}: shorter than one clip of {clip_len} frames {at}")
                continue
            total: Any = 0
            for start in range(0, len(clips), args.batch_size):
                batch = torch.stack([preset(clip) for clip in clips[start : start + args.batch_size]]).to(device)
                logits = model(batch).float().cpu()
                found = topk_hits(logits, torch.full((logits.shape[0],), label))
                for k in clip_hits:
                    clip_hits[k] += found[k]
                total = total + logits.softmax(dim=1).sum(dim=0)
            found = topk_hits(total[None], torch.tensor([label]))
            for k in video_hits:
                video_hits[k] += found[k]
            scored_videos += 1
            scored_clips += len(clips)
            labels_seen.add(label)
    measured = {
        "video": {f"acc@{k}": 100.0 * n / max(scored_videos, 1) for k, n in video_hits.items()},
        "clip": {f"acc@{k}": 100.0 * n / max(scored_clips, 1) for k, n in clip_hits.items()},
    }
    rate = f"{frame_rate:g} fps" if frame_rate else "native frame rate"
    return report(
        args,
        chosen,
        Scores(
            heading=f"{chosen.label} on {args.data}: {scored_videos} videos, {len(labels_seen)} classes, "
            f"{scored_clips} clips of {clip_len} frames at {rate}, up to {clips_per_video} per video",
            measured=measured,
            published=published_of(chosen),
            items=scored_videos,
            unit="videos",
            seconds=timer.seconds,
            skipped=skips.messages,
            extra={
                "clips": scored_clips,
                "clip_len": clip_len,
                "frame_rate": frame_rate,
                "clips_per_video": clips_per_video,
                "classes": len(labels_seen),
            },
        ),
    )


def _outputs(model: torch.nn.Module, preset: Any, clip_len: int) -> int:
    """How many classes a video checkpoint's head scores: one forward on a blank clip."""
    import torch

    crop = getattr(preset, "crop_size", None) or [112, 112]
    size = (crop[0], crop[-1])
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, clip_len, *size, device=device)).shape[1])
