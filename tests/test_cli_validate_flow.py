"""``visionzoo validate`` on optical flow weights: Sintel and KITTI-2015 layouts of generated frames and flows,
with the errors recomputed here with numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests._cli_zoo import run
from tests._eval_zoo import install
from visionzoo.io import write_flo, write_kitti_flow
from visionzoo.transforms import OpticalFlow

PUBLISHED = {
    "Sintel-Train-Cleanpass": {"epe": 1.5},
    "Sintel-Train-Finalpass": {"epe": 2.5},
    "Kitti-Train": {"per_image_epe": 5.0, "fl_all": 17.0},
}
COEF = (1.5, 2.0, -0.75)


def predicted_flow(first: np.ndarray, updates: int) -> np.ndarray:
    """What the tiny model predicts for a first frame (H, W, 3 uint8): u = 1.5 + 2 red + updates / 100 (red in
    [-1, 1] as the preset maps it), v = -0.75."""
    red = first[..., 0] / 255 * 2 - 1
    return np.stack([COEF[0] + COEF[1] * red + updates / 100, np.full(red.shape, COEF[2])])


class PixelFlow(nn.Module):
    """A per-pixel flow model (:func:`predicted_flow`): padding shows only if the crop back is misplaced."""

    def __init__(self) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.tensor(COEF))

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        u = self.coef[0] + self.coef[1] * image1[:, 0] + num_flow_updates / 100 + 0 * image2[:, 0]
        return [torch.stack([u, self.coef[2].expand_as(u)], dim=1)]


@pytest.fixture
def tinyflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        tmp_path / "weights",
        name="tinyflow",
        task="optical_flow",
        make=PixelFlow,
        transforms=OpticalFlow,
        meta={"min_size": (1, 1), "_metrics": PUBLISHED},
    )


def expected_metrics(cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The flow metrics of (predicted, true, valid) triples, from their end-point errors."""
    errors, lengths, per_image = [], [], []
    for predicted, true, valid in cases:
        error = np.sqrt(((predicted - true) ** 2).sum(axis=0))[valid]
        errors.append(error)
        lengths.append(np.sqrt((true**2).sum(axis=0))[valid])
        per_image.append(error.mean())
    error, length = np.concatenate(errors), np.concatenate(lengths)
    return {
        "epe": error.mean(),
        "per_image_epe": float(np.mean(per_image)),
        "1px": 100 * (error < 1).mean(),
        "3px": 100 * (error < 3).mean(),
        "5px": 100 * (error < 5).mean(),
        "fl_all": 100 * ((error > 3) & (error > 0.05 * length)).mean(),
    }


def frames_and_truth(rng: np.random.Generator, height: int, width: int, updates: int) -> tuple[np.ndarray, ...]:
    """Two random frames and a true flow near the model's prediction (in 1/64 pixel steps, as KITTI stores it)."""
    first, second = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))
    true = predicted_flow(first, updates) + rng.uniform(-6, 6, (2, height, width))
    return first, second, (np.round(true * 64) / 64).astype(np.float32)


def test_validate_flow_on_sintel(tinyflow: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "Sintel"
    rng = np.random.default_rng(0)
    cases: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {"clean": [], "final": []}
    for scene, frames in (("alley_1", 3), ("cave_2", 2)):  # 20x27 frames: padded to 24x32
        firsts = {}
        for number in range(frames):
            first, _, true = frames_and_truth(rng, 20, 27, updates=32)
            for pass_name in ("clean", "final"):
                folder = root / "training" / pass_name / scene
                folder.mkdir(parents=True, exist_ok=True)
                picture = first if pass_name == "clean" else 255 - first
                Image.fromarray(picture).save(folder / f"frame_{number + 1:04d}.png")
                firsts.setdefault(pass_name, []).append(picture)
            if number < frames - 1:
                (root / "training" / "flow" / scene).mkdir(parents=True, exist_ok=True)
                write_flo(torch.from_numpy(true), root / "training" / "flow" / scene / f"frame_{number + 1:04d}.flo")
                for pass_name in ("clean", "final"):
                    picture = firsts[pass_name][number]
                    cases[pass_name].append((predicted_flow(picture, 32), true, np.ones((20, 27), dtype=bool)))
    status, out, err = run(["validate", "tinyflow", "--data", str(root), "--json", "--quiet"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert (report["pairs"], report["skipped"], report["num_flow_updates"]) == (3, 0, 32)
    assert report["dataset"] == "Sintel (clean pass)" and report["meta"] == {"epe": 1.5}
    assert report["measured"] == pytest.approx(expected_metrics(cases["clean"]), rel=1e-5)

    (root / "training" / "final" / "cave_2" / "frame_0002.png").write_bytes(b"\x89PNG broken")
    argv = ["validate", "tinyflow", "--data", str(root / "training"), "--pass", "final", "--quiet"]
    status, out, err = run([*argv, "--batch-size", "2"], capsys)
    assert status == 0, err
    assert err.startswith(
        f"visionzoo: skipped: {root / 'training' / 'final' / 'cave_2' / 'frame_0002.png'}: not a JPEG"
    )
    lines = out.splitlines()
    assert lines[0].endswith("Sintel (final pass), 2 pairs, 1080 pixels scored, 32 flow updates")
    figures = expected_metrics(cases["final"][:2])
    assert lines[3].split() == ["EPE", f"{figures['epe']:.3f}", "2.500"]
    assert [line.split()[0] for line in lines[3:9]] == ["EPE", "per-image", "1px", "3px", "5px", "Fl-all"]
    assert lines[-1].endswith("pairs/s); 1 unreadable, skipped")


def test_validate_flow_on_kitti(tinyflow: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "KITTI"
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "flow_occ").mkdir()
    rng = np.random.default_rng(1)
    cases = []
    for index in range(3):  # 19x30 frames: padded to 24x32, all of the height at the bottom
        first, second, true = frames_and_truth(rng, 19, 30, updates=3)
        valid = rng.random((19, 30)) < 0.6
        Image.fromarray(first).save(root / "training" / "image_2" / f"{index:06d}_10.png")
        Image.fromarray(second).save(root / "training" / "image_2" / f"{index:06d}_11.png")
        write_kitti_flow(
            torch.from_numpy(true), root / "training" / "flow_occ" / f"{index:06d}_10.png", torch.from_numpy(valid)
        )
        cases.append((predicted_flow(first, 3), true, valid))
    argv = ["validate", "tinyflow", "--data", str(root), "--num-flow-updates", "3", "--limit", "2", "--json"]
    status, out, err = run([*argv, "--quiet"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert (report["pairs"], report["dataset"], report["num_flow_updates"]) == (2, "KITTI-2015", 3)
    assert report["meta"] == {"per_image_epe": 5.0, "fl_all": 17.0}
    assert report["measured"] == pytest.approx(expected_metrics(cases[:2]), rel=1e-5)
    assert 0 < report["measured"]["fl_all"] < 100

    write_kitti_flow(
        torch.zeros(2, 19, 30), root / "training" / "flow_occ" / "000000_10.png", torch.zeros(19, 30).bool()
    )
    status, out, err = run([*argv[:-3], "--limit", "1", "--json", "--quiet"], capsys)  # no valid pixel: no figure
    assert status == 0 and json.loads(out)["measured"] == dict.fromkeys(report["measured"])

    (root / "training" / "image_2" / "000002_11.png").unlink()
    status, out, err = run(["validate", "tinyflow", "--data", str(root)], capsys)
    assert (status, out) == (2, "")
    assert err == (
        f"visionzoo: error: {root / 'training' / 'image_2' / '000002_11.png'}: no such frame (the flow "
        f"{root / 'training' / 'flow_occ' / '000002_10.png'} needs it)\n"
    )


def test_validate_flow_layout_errors(tinyflow: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "training" / "flow" / "alley_1").mkdir(parents=True)
    (tmp_path / "data" / "training" / "flow" / "alley_1" / "frame_0001.flo").write_bytes(b"")
    cases = [
        (tmp_path, "neither of the optical flow layouts: Sintel (training/clean|final/"),
        (tmp_path / "data", f"{tmp_path / 'data' / 'training' / 'clean'}: no such directory (Sintel's clean pass"),
    ]
    for data, fragment in cases:
        status, out, err = run(["validate", "tinyflow", "--data", str(data)], capsys)
        assert (status, out) == (2, "") and fragment in err and err.count("\n") == 1, err
    (tmp_path / "data" / "training" / "clean" / "alley_1").mkdir(parents=True)
    status, _, err = run(["validate", "tinyflow", "--data", str(tmp_path / "data")], capsys)
    assert status == 2 and "0 frames for the 1 flows of" in err
