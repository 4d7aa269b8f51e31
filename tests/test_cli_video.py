"""``visionzoo predict`` on video files, with a tiny video classifier registered only for these tests.

The video models themselves land separately; ``colournet`` stands in for them: it scores "red", "green" and
"blue" by the clip's mean of each channel, so which category wins each clip shows which frames the clip holds.
Its weights entry says, as the published ones do, that it was evaluated on clips of ``clip_len`` frames at
``frame_rate``; the registry and the task list are restored when each test ends.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from torch import nn

from tests._cli_zoo import hashed_name, run
from visionzoo.models import _api
from visionzoo.models._api import Task, Weights, WeightsEnum, register_model
from visionzoo.models._utils import build_model

pytest.importorskip("av", reason="PyAV is not installed (pip install visionzoo[video])")

from visionzoo.io import write_video  # noqa: E402

FPS = 20  # the files' frame rate; the weights' clips are at 10 fps, 4 frames (0.4 s) each
RED_UNTIL = 24  # frames 0-23 (0 to 1.2 s) are red, the rest blue


class ColourNet(nn.Module):
    """Scores each class by the clip's mean of one colour channel (B x 3 x T x H x W in)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5:
            raise ValueError(f"expected B x C x T x H x W clips, got shape {tuple(clips.shape)}")
        return self.fc(clips.mean(dim=(2, 3, 4)))


class ClipPreset(nn.Module):
    """T x C x H x W uint8 frames to a C x T x H x W float clip in [0, 1]."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float().div(255).permute(1, 0, 2, 3)


@pytest.fixture
def zoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _api.list_models()  # import every family first, or one imported later would vanish when the copy is undone
    monkeypatch.setattr(_api, "_REGISTRY", dict(_api._REGISTRY))
    monkeypatch.setattr(_api, "_WEIGHTS_ENUMS", dict(_api._WEIGHTS_ENUMS))
    if "video" not in _api.TASKS:
        monkeypatch.setattr(_api, "TASKS", MappingProxyType({**_api.TASKS, "video": Task("video", "Video")}))
    state = {"fc.weight": torch.eye(3) * 10, "fc.bias": torch.zeros(3)}
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = weights_dir / "colournet.pth"
    torch.save(state, path)
    name = hashed_name("colournet", path.read_bytes())
    path.rename(weights_dir / name)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    entry = Weights(
        url=f"https://example.invalid/{name}",
        transforms=partial(ClipPreset),
        meta={
            "categories": ["red", "green", "blue"],
            "min_temporal_size": 2,
            "num_params": 12,
            "_docs": "Evaluated on video-level with parameters `frame_rate=10`, `clips_per_video=5`, and `clip_len=4`.",
        },
    )
    enum = WeightsEnum("ColourNet_Weights", {"TEST": entry, "DEFAULT": entry})  # type: ignore[arg-type]

    def colournet(*, weights: WeightsEnum | str | Path | None = None, progress: bool = True, **kwargs: object):
        """The stand-in video classifier."""
        return build_model(ColourNet, weights, progress, **kwargs)

    register_model(task="video", weights=enum)(colournet)


def write_clip(path: Path, frames: int = 2 * FPS, red_until: int = RED_UNTIL) -> Path:
    video = torch.zeros(frames, 16, 16, 3, dtype=torch.uint8)
    video[:red_until, ..., 0] = 255
    video[red_until:, ..., 2] = 255
    write_video(path, video, FPS, video_codec="ffv1")
    return path


def test_each_clip_with_its_time_range_and_the_whole_video(zoo, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mkv")
    status, out, err = run(["predict", str(clip), "--model", "colournet", "--topk", "1"], capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{clip}  (5 clips of 4 frames at 10 fps)"
    spans = [line.split(" s ")[0].split() for line in lines[1:6]]
    assert spans == [
        ["0.00", "-", "0.40"],
        ["0.40", "-", "0.80"],
        ["0.80", "-", "1.20"],
        ["1.20", "-", "1.60"],
        ["1.60", "-", "2.00"],
    ]
    assert [line.split(" s  ")[1].split()[0] for line in lines[1:6]] == ["red", "red", "red", "blue", "blue"]
    assert lines[6] == "  whole video:"
    assert lines[7].split()[:2] == ["1.", "red"]
    assert "1 of 1 videos predicted" in err


def test_json_csv_and_clip_len(zoo, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mkv")
    status, out, _ = run(["predict", str(clip), "--model", "colournet", "--json", "--clip-len", "8"], capsys)
    assert status == 0
    (result,) = json.loads(out)
    # 20 frames at 10 fps: two clips of 8, and a tail of 4 that is left out.
    assert [(c["start"], c["end"]) for c in result["clips"]] == [(0.0, 0.8), (0.8, 1.6)]
    assert [c["top"][0]["label"] for c in result["clips"]] == ["red", "red"]
    probabilities = [item["probability"] for item in result["summary"]["top"]]
    assert len(probabilities) == 3 and sum(probabilities) == pytest.approx(1, abs=1e-3)
    table = tmp_path / "out.csv"
    status, _, _ = run(["predict", str(clip), "--model", "colournet", "--out", str(table), "--quiet"], capsys)
    assert status == 0
    rows = table.read_text().splitlines()
    assert rows[0] == "video,clip,start,end,rank,label,index,probability"
    assert sum(1 for row in rows if ",all," in row) == 3 and len(rows) == 1 + 5 * 3 + 3


def test_a_video_shorter_than_a_clip_is_one_short_clip(zoo, tmp_path, capsys):
    clip = write_clip(tmp_path / "short.mkv", frames=6, red_until=0)  # 0.3 s: 3 frames at 10 fps
    status, out, _ = run(["predict", str(clip), "--model", "colournet", "--json"], capsys)
    assert status == 0
    (result,) = json.loads(out)
    assert [(c["start"], c["end"], c["top"][0]["label"]) for c in result["clips"]] == [(0.0, 0.3, "blue")]


def test_a_folder_with_an_unreadable_video(zoo, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(folder / "a.mkv")
    (folder / "b.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("ignored: not a video suffix")
    status, out, err = run(["predict", str(folder), "--model", "colournet", "--quiet"], capsys)
    assert status == 1
    assert out.startswith(f"{folder / 'a.mkv'}  (5 clips")
    assert f"{folder / 'b.mp4'}: not a video file" in err
    assert "1 of 2 videos predicted, 1 failed" in err
    status, _, err = run(["predict", str(folder), "--model", "colournet", "--strict"], capsys)
    assert status == 1 and "--strict stops at the first unreadable video" in err


def test_bad_clip_lengths(zoo, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mkv")
    status, _, err = run(["predict", str(clip), "--model", "colournet", "--clip-len", "1"], capsys)
    assert status == 2 and "needs clips of at least 2 frames" in err
    image = tmp_path / "image.png"
    image.write_bytes(b"")
    status, _, err = run(["predict", str(image), "--model", "resnet18", "--clip-len", "4"], capsys)
    assert status == 2 and "--clip-len applies to video models only, not classification models" in err
    status, _, err = run(["predict", str(clip), "--model", "colournet", "--clip-len", "0"], capsys)
    assert status == 2 and "--clip-len must be at least 1, got 0" in err


def test_without_pyav_one_error_says_how_to_install_it(zoo, tmp_path, capsys, monkeypatch):
    clips = [write_clip(tmp_path / "a.mkv"), write_clip(tmp_path / "b.mkv")]
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` meets when PyAV is not installed
    status, out, err = run(["predict", *map(str, clips), "--model", "colournet"], capsys)
    assert status == 1 and out == ""
    assert err.count("pip install visionzoo[video]") == 1


def test_jsonl_out_keyed_by_video_resumes(zoo, tmp_path, capsys):
    first, second = write_clip(tmp_path / "a.mkv"), write_clip(tmp_path / "b.mkv", red_until=0)
    out = tmp_path / "r.jsonl"
    argv = ["predict", str(first), "--model", "colournet", "--out", str(out)]
    status, _, err = run(argv, capsys)
    assert status == 0 and "1 of 1 videos predicted" in err
    status, stdout, err = run([*argv[:2], str(second), *argv[2:]], capsys)  # only the new video is predicted
    assert status == 0 and stdout.splitlines()[0].startswith(str(second))
    assert "1 of 2 videos predicted, 1 already in" in err and f"{out} holds 2" in err
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in results] == [str(first), str(second)]
    assert [r["summary"]["top"][0]["label"] for r in results] == ["red", "blue"]
