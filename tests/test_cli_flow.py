"""Issue 33: ``visionzoo predict`` with optical flow models: pairs of frames (separate or consecutive), a
colour-coded picture per pair equal to ``flow_to_image`` of the model's own flow, ``--out FILE.flo``, and the
errors. The model is raft_small, randomly initialised and saved as a local checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests._cli_zoo import run
from visionzoo.io import read_flo
from visionzoo.models.optical_flow import raft_small
from visionzoo.transforms import OpticalFlow
from visionzoo.transforms.functional import pil_to_tensor
from visionzoo.utils import flow_to_image

MODEL = "raft_small"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "raft_small_random.pth"
    torch.save(raft_small().state_dict(), path)
    return path


def _frames(directory: Path, count: int, size: tuple[int, int] = (136, 128)) -> list[str]:
    """A random picture moving 3 pixels right per frame (PNG files), ``size`` as (width, height)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = torch.randint(0, 256, (size[1], size[0] + 3 * count, 3), generator=torch.Generator().manual_seed(0))
    paths = []
    for i in range(count):
        frame = base[:, 3 * (count - i) : 3 * (count - i) + size[0]].to(torch.uint8)
        paths.append(str(directory / f"frame{i}.png"))
        Image.fromarray(frame.numpy()).save(paths[-1])
    return paths


def _model_flow(checkpoint: Path, first: str, second: str, updates: int = 12) -> torch.Tensor:
    """The model's final flow for two frames whose sides are multiples of 8 (no padding), straight from the builder."""
    model = raft_small(weights=checkpoint).eval()
    images = []
    for path in (first, second):
        with Image.open(path) as picture:
            images.append(pil_to_tensor(picture.convert("RGB")))
    image1, image2 = OpticalFlow()(*images)
    with torch.inference_mode():
        return model(image1[None], image2[None], num_flow_updates=updates)[-1][0]


def _predict(checkpoint: Path, *argv: str) -> list[str]:
    return ["predict", *argv, "--model", MODEL, "--weights", str(checkpoint), "--quiet"]


def test_two_frames_give_the_picture_of_the_models_flow(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is ./predictions
    first, second = _frames(tmp_path / "in", 2)
    status, out, err = run(_predict(checkpoint, first, second), capsys)
    assert status == 0, err
    picture = Path("predictions") / f"frame0.{MODEL}.png"
    header, motion = out.splitlines()
    assert header == f"{first}, {second} -> {picture}"
    flow = _model_flow(checkpoint, first, second)
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.size == (136, 128)
        assert torch.equal(pil_to_tensor(drawn), flow_to_image(flow))
    dx, dy = flow.mean(dim=(1, 2)).tolist()
    assert motion.startswith(f"  mean motion (dx, dy) = ({dx:.2f}, {dy:.2f}) px; length: mean ")


def test_consecutive_pairs_padding_and_a_flo_file(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = _frames(tmp_path / "in", 3, size=(100, 90))  # smaller than 128 and not multiples of 8: padded
    status, out, err = run(
        _predict(checkpoint, *frames, "--pairs", "consecutive", "--out", str(tmp_path / "pics"), "--json"), capsys
    )
    assert status == 0, err
    results = json.loads(out)
    assert [r["frames"] for r in results] == [frames[:2], frames[1:]]
    assert [Path(r["picture"]).name for r in results] == [f"frame0.{MODEL}.png", f"frame1.{MODEL}.png"]
    for result in results:
        with Image.open(result["picture"]) as drawn:
            assert drawn.size == (100, 90)
    first, second = _frames(tmp_path / "even", 2)
    flo = tmp_path / "flow.flo"
    status, out, err = run(_predict(checkpoint, first, second, "--out", str(flo), "--flow-updates", "3"), capsys)
    assert status == 0, err
    assert out.splitlines()[0] == f"{first}, {second} -> {flo.with_suffix('.png')} (flow: {flo})"
    torch.testing.assert_close(read_flo(flo), _model_flow(checkpoint, first, second, updates=3), atol=1e-5, rtol=0)
    assert flo.with_suffix(".png").is_file()


@pytest.mark.parametrize(
    ("count", "extra", "fragment"),
    [
        (3, [], "--pairs separate takes the frames two by two, but got 3"),
        (1, ["--pairs", "consecutive"], "optical flow needs two frames"),
        (3, ["--pairs", "consecutive", "--out", "x.flo"], "a .flo file holds one flow, but there are 2 frame pairs"),
        (2, ["--flow-updates", "0"], "--flow-updates must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int, extra: list[str], fragment: str
) -> None:
    frames = _frames(tmp_path / "in", count)
    status, _, err = run(_predict(checkpoint, *frames, *extra), capsys)
    assert status == 2 and fragment in err, err


def test_failed_pairs_are_reported_and_the_others_predicted(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _frames(tmp_path / "good", 2)
    odd = _frames(tmp_path / "odd", 1, size=(144, 128)) + _frames(tmp_path / "odd2", 1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    argv = [*good, *odd, str(broken), good[0], "--out", str(tmp_path / "pics")]
    status, out, err = run(_predict(checkpoint, *argv), capsys)
    assert status == 1
    assert "the frames differ in size (144x128 and 136x128 pixels)" in err
    assert f"{broken}: cannot read image" in err or str(broken) in err
    assert "visionzoo: 1 of 3 frame pairs predicted, 2 failed" in err
    assert len([line for line in out.splitlines() if " -> " in line]) == 1
    status, _, err = run(_predict(checkpoint, *argv, "--strict"), capsys)
    assert status == 1 and "--strict stops at the first pair that fails" in err


def test_list_shows_a_column_per_dataset_for_metrics_reported_on_several(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["list", "--task", "optical_flow", "--weights"], capsys)
    assert status == 0
    header, _, *rows = out.splitlines()
    columns = header.split("  ")
    columns = [c.strip() for c in columns if c.strip()]
    assert columns[2:9] == [
        "Sintel-Train-Cleanpass EPE",
        "Sintel-Train-Finalpass EPE",
        "per-image EPE",  # KITTI's train split only: no dataset needed
        "Kitti-Train Fl-all",
        "Sintel-Test-Cleanpass EPE",
        "Sintel-Test-Finalpass EPE",
        "Kitti-Test Fl-all",
    ]
    small_v1 = next(row.split() for row in rows if row.startswith("raft_small") and "C_T_V1" in row)
    assert small_v1[2:9] == ["2.123", "3.279", "7.656", "25.280", "n/a", "n/a", "n/a"]


def test_benchmark_refuses_flow_models_with_a_pointer(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["benchmark", "raft_small"], capsys)
    assert status == 2 and "raft_small takes a pair of frames" in err and "benchmarks.flow" in err


def test_a_video_gives_one_picture_per_pair_of_its_frames(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each video is a sequence of its own (decoded frame by frame): consecutive pairs within it, named PATH#N."""
    pytest.importorskip("av", reason="PyAV is not installed (pip install visionzoo[video])")
    from visionzoo.io import write_video

    frames = _frames(tmp_path / "in", 3)
    video = tmp_path / "clip.mkv"
    stacked = []
    for path in frames:
        with Image.open(path) as picture:
            stacked.append(pil_to_tensor(picture.convert("RGB")).permute(1, 2, 0))
    write_video(str(video), torch.stack(stacked), fps=5, video_codec="ffv1")  # lossless: the PNGs' pixels
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    argv = [str(video), str(broken), "--pairs", "consecutive", "--out", str(tmp_path / "pics"), "--json"]
    status, out, err = run(_predict(checkpoint, *argv), capsys)
    assert status == 1 and f"visionzoo: {broken}: " in err and "2 of 3 frame pairs predicted, 1 failed" in err
    results = json.loads(out)
    assert [r["frames"] for r in results] == [[f"{video}#0", f"{video}#1"], [f"{video}#1", f"{video}#2"]]
    assert [Path(r["picture"]).name for r in results] == [f"clip-frame0.{MODEL}.png", f"clip-frame1.{MODEL}.png"]
    for result, (first, second) in zip(results, [frames[:2], frames[1:]]):
        with Image.open(result["picture"]) as drawn:
            assert torch.equal(pil_to_tensor(drawn), flow_to_image(_model_flow(checkpoint, first, second)))
