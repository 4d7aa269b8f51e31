"""Bad training input: one clear error each, a corrupt image skipped and counted, no checkpoint overwritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.train._data import make_folders
from visionzoo.cli import main
from visionzoo.datasets import ImageFolder
from visionzoo.train.checkpoint import save_atomically

TINY = ["--model", "squeezenet1_1", "--dropout", "0", "--crop-size", "32", "--workers", "0", "-q", "--epochs", "1"]


def test_image_folder_lists_classes_and_samples(tmp_path: Path) -> None:
    root = make_folders(tmp_path, per_class=2)
    (root / "red" / "notes.txt").write_text("not an image")
    folder = ImageFolder(root)
    assert folder.classes == ["blue", "green", "red"] and len(folder) == 6
    assert folder.targets == [0, 0, 1, 1, 2, 2]
    image, label = folder[5]
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 48) and label == 2
    # a validation split keeps the training labels, even with a class missing
    (tmp_path / "val" / "red").mkdir(parents=True)
    (root / "red" / "0.png").rename(tmp_path / "val" / "red" / "0.png")
    assert ImageFolder(tmp_path / "val", classes=folder.classes).targets == [2]


@pytest.mark.parametrize(
    ("layout", "error", "message"),
    [
        ("missing", FileNotFoundError, "does not exist"),
        ("file", NotADirectoryError, "is a file"),
        ("empty", ValueError, "holds no class folders"),
        ("no_images", ValueError, "holds no image files"),
    ],
)
def test_image_folder_errors(tmp_path: Path, layout: str, error: type[Exception], message: str) -> None:
    root = tmp_path / "data"
    if layout == "file":
        root.write_text("")
    elif layout == "empty":
        root.mkdir()
    elif layout == "no_images":
        make_folders(root, per_class=1)
        (root / "zebra").mkdir()
        (root / "zebra" / "readme.txt").write_text("")
    with pytest.raises(error, match=message):
        ImageFolder(root)


def test_unknown_validation_class(tmp_path: Path) -> None:
    make_folders(tmp_path / "val", per_class=1)
    (tmp_path / "val" / "purple").mkdir()
    (tmp_path / "val" / "blue" / "0.png").rename(tmp_path / "val" / "purple" / "0.png")
    with pytest.raises(ValueError, match=r"\['purple'\] are not among the training classes"):
        ImageFolder(tmp_path / "val", classes=["blue", "green", "red"])


def test_cli_reports_bad_data_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["train", *TINY, "--data", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no class folders" in err
    assert main(["train", *TINY, "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_folders(tmp_path / "data", per_class=2)
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    flags = ["--amp", "--channels-last"]  # accepted on the CPU, with a note
    assert main(["train", *TINY, *flags, "--batch-size", "4", "--data", str(root), "--output-dir", str(out)]) == 0
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["skipped"] == 1 and record["samples"] == 6
    err = capsys.readouterr().err
    assert "skipped unreadable image" in err and "broken.png" in err
    assert "--amp and --channels-last apply on CUDA only; training on cpu in float32" in err


def test_misconfigured_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_folders(tmp_path / "data", per_class=1)
    args = ["train", *TINY, "--data", str(root), "--output-dir", str(tmp_path / "o")]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(args) == 2
    assert "misconfigured torchrun world" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    assert main([*args, "--global-batch-size", "3"]) == 2  # checked before joining the group
    assert "does not split evenly over 2 processes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_save_keeps_the_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pth"
    save_atomically({"epoch": 1}, path)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_atomically({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


def test_sync_bn_on_cpu_is_refused_before_any_work(tmp_path: Path) -> None:
    from visionzoo.distributed import World
    from visionzoo.train.engine import TrainConfig, fit

    config = TrainConfig(model="resnet18", output_dir=tmp_path / "out", sync_bn=True)
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        fit(None, config, World(rank=0, world_size=2, backend="gloo"), torch.device("cpu"))  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
