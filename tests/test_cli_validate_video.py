"""``visionzoo validate`` on video weights: a Kinetics layout of short lossless clips whose frames are solid greys,
with the clip sampling and the video- and clip-level accuracy recomputed here with numpy."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests._cli_zoo import run
from tests._eval_zoo import install
from visionzoo.models._meta import _KINETICS400_CATEGORIES
from visionzoo.transforms import VideoClassification

pytest.importorskip("av")

from visionzoo.io import write_video  # noqa: E402

MEAN, STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)  # the preset's defaults
PUBLISHED = {"acc@1": 70.0, "acc@5": 90.0}
CLIP_LEN, FRAME_RATE, CLIPS = 4, 5, 3


class BrightnessVideo(nn.Module):
    """Scores class k by -(10 m + 5 - k)^2, m the clip's mean normalised value: brighter clips, higher classes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([10.0, 5.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3, 4))
        return -((self.scale[0] * m[:, None] + self.scale[1] - torch.arange(400.0)) ** 2)


@pytest.fixture
def tinyvideo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        tmp_path / "weights",
        name="tinyvideo",
        task="video",
        make=BrightnessVideo,
        transforms=partial(VideoClassification, crop_size=(16, 16), resize_size=(20,)),
        meta={
            "categories": _KINETICS400_CATEGORIES,
            "min_temporal_size": 2,
            "_metrics": {"Kinetics-400": PUBLISHED},
            "_docs": f"Evaluated with `frame_rate={FRAME_RATE}`, `clips_per_video={CLIPS}`, and `clip_len={CLIP_LEN}`.",
        },
    )


def clip_logits(greys: np.ndarray) -> np.ndarray:
    """The model's logits for a clip of solid-grey frames: the preset keeps each frame's value, normalised per
    channel."""
    m = np.mean([(g / 255 - mean) / std for g in greys for mean, std in zip(MEAN, STD)])
    return -((10 * m + 5 - np.arange(400)) ** 2)


def sampled(greys: np.ndarray, fps: float) -> list[np.ndarray]:
    """The clips the reference's sampler takes, worked out here: frames at FRAME_RATE, every window of CLIP_LEN
    frames a candidate, CLIPS of them at floor(linspace(0, candidates - 1, CLIPS))."""
    step = fps / FRAME_RATE
    if step == int(step):
        kept = greys[:: int(step)]
    else:
        kept = greys[np.floor(np.arange(int(len(greys) * FRAME_RATE / fps)) * step).astype(int)]
    candidates = len(kept) - CLIP_LEN + 1
    if candidates < 1:
        return []
    return [kept[s : s + CLIP_LEN] for s in np.floor(np.linspace(0, candidates - 1, CLIPS)).astype(int)]


def write_grey_video(path: Path, greys: np.ndarray, fps: float) -> None:
    frames = torch.from_numpy(np.repeat(greys.astype(np.uint8), 24 * 32 * 3).reshape(len(greys), 24, 32, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, fps, video_codec="ffv1")  # lossless RGB: the greys come back exactly


def test_validate_video_on_the_kinetics_layout(
    tinyvideo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "kinetics" / "val"
    videos = [  # folder, file, greys, fps, label
        ("abseiling", "a.mkv", 40 + 9 * np.arange(20), 10, 0),
        ("air_drumming", "b.mkv", 70 + 3 * np.arange(30), 12, 1),  # a step of 2.4 frames
        ("7", "c.mkv", 112 + np.arange(20) % 3, 10, 7),
        ("7", "d.mkv", 200 - 5 * np.arange(15), 15, 7),
    ]
    for folder, name, greys, fps, _ in videos:
        write_grey_video(root / folder / name, greys, fps)
    write_grey_video(root / "7" / "short.mkv", np.full(5, 90), 10)  # 3 frames at 5 fps: no clip of 4
    (root / "7" / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not a video")
    status, out, err = run(
        ["validate", "tinyvideo", "--data", str(root), "--json", "--quiet", "--batch-size", "2"], capsys
    )
    assert status == 0, err

    video_hits, clip_hits, clips = np.zeros(2), np.zeros(2), 0
    for _, _, greys, fps, label in videos:
        logits = np.stack([clip_logits(clip) for clip in sampled(greys, fps)])
        clips += len(logits)
        clip_ranks = np.argsort(-logits, axis=1)
        clip_hits += [(clip_ranks[:, :1] == label).sum(), (clip_ranks[:, :5] == label).sum()]
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        total = (probabilities / probabilities.sum(axis=1, keepdims=True)).sum(axis=0)
        video_hits += [label in np.argsort(-total)[:1], label in np.argsort(-total)[:5]]
    report = json.loads(out)
    assert (report["videos"], report["clips"], report["skipped"], report["classes"]) == (4, clips, 2, 3)
    assert (report["clip_len"], report["frame_rate"], report["clips_per_video"]) == (CLIP_LEN, FRAME_RATE, CLIPS)
    expected_video = {"acc@1": 100 * video_hits[0] / 4, "acc@5": 100 * video_hits[1] / 4}
    expected_clip = {"acc@1": 100 * clip_hits[0] / clips, "acc@5": 100 * clip_hits[1] / clips}
    assert report["measured"] == {"video": pytest.approx(expected_video), "clip": pytest.approx(expected_clip)}
    assert 0 < expected_video["acc@1"] < 100 and expected_clip["acc@1"] != expected_video["acc@1"]
    assert report["meta"] == PUBLISHED
    skipped = sorted(report["skipped_items"])
    assert skipped[0].startswith(str(root / "7" / "broken.mkv"))
    assert skipped[1] == f"{root / '7' / 'short.mkv'}: shorter than one clip of 4 frames at 5 fps"

    (root / "7" / "broken.mkv").unlink()
    (root / "7" / "short.mkv").unlink()
    argv = ["validate", "tinyvideo", "--data", str(root), "--limit", "1", "--clips-per-video", "1", "--quiet"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("1 videos, 1 classes, 1 clips of 4 frames at 5 fps, up to 1 per video")
    assert lines[1].split() == ["metric", "video", "clip", "meta"]
    first = clip_logits(sampled(videos[2][2], 10)[0])  # 7/c.mkv comes first; one clip per video: the first
    hit = 100.0 * (int(np.argmax(first)) == 7)
    assert lines[3].split() == ["acc@1", f"{hit:.3f}", f"{hit:.3f}", "70.000"]


def test_validate_video_errors(tinyvideo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_grey_video(tmp_path / "val" / "no such class" / "a.mkv", np.full(8, 50), 10)
    cases = [
        (["--data", str(tmp_path / "val")], "class folder 'no such class' is neither a category index"),
        (["--data", str(tmp_path / "val"), "--clip-len", "1"], "--clip-len 1: tinyvideo needs clips of at least 2"),
        (["--data", str(tmp_path / "val" / "no such class")], "no class subfolders (the Kinetics layout"),
        (["--data", str(tmp_path), "--clips-per-video", "0"], "--clips-per-video must be at least 1"),
    ]
    for extra, fragment in cases:
        status, out, err = run(["validate", "tinyvideo", *extra], capsys)
        assert (status, out) == (2, "") and fragment in err and err.count("\n") == 1, err


def test_clip_sampling_rules() -> None:
    from visionzoo.cli._eval_video import clip_starts, resampled_indices

    assert resampled_indices(7, 30, 15) == [0, 2, 4, 6]
    assert resampled_indices(10, 12, 5) == [math.floor(i * 2.4) for i in range(4)] == [0, 2, 4, 7]
    assert resampled_indices(3, 10, None) == [0, 1, 2]
    assert clip_starts(7, 3) == [0, 3, 6] and clip_starts(5, 4) == [0, 1, 2, 4] and clip_starts(0, 5) == []


@pytest.mark.parametrize(
    "frames, fps, rate, clip_len, clips",
    [(300, 30, 15, 16, 5), (250, 25, 15, 16, 5), (100, 29.97, 7.5, 16, 5), (80, 30, 15, 32, 12), (20, 10, None, 4, 3)],
)
def test_clip_sampling_matches_the_reference(
    frames: int, fps: float, rate: float | None, clip_len: int, clips: int
) -> None:
    """The frames of each evaluated clip, as the reference's VideoClips and UniformClipSampler pick them."""
    from tests.reference import video_clip_sampling
    from visionzoo.cli._eval_video import clip_starts, resampled_indices

    VideoClips, UniformClipSampler = video_clip_sampling()
    windows, _ = VideoClips.compute_clips_for_video(torch.arange(frames), clip_len, 1, fps, rate)
    holder = VideoClips.__new__(VideoClips)  # the sampler reads only the clips of each video
    holder.clips = [windows]
    expected = [windows[i].tolist() for i in UniformClipSampler(holder, clips)]
    indices = resampled_indices(frames, fps, rate)
    ours = [indices[start : start + clip_len] for start in clip_starts(len(indices) - clip_len + 1, clips)]
    assert ours == expected
