"""``visionzoo train`` on a tiny generated image folder: the loss falls, a resumed run is bit-identical to an
uninterrupted one, the saved model loads in ``get_model`` and ``visionzoo predict``, and bad input fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train._data import COLOURS, make_folders
from visionzoo.cli import main
from visionzoo.models import get_model

# resnet18 from scratch at 32x32 learns solid colours within a few steps; batch norm and every random draw
# (crops, flips, sampler order) are exercised by the resume check.
COMMON = ["--model", "resnet18", "--crop-size", "32", "--batch-size", "6", "--workers", "0", "-q"]
RECIPE = ["--optimizer", "adamw", "--lr", "0.001", "--weight-decay", "0.01", "--norm-weight-decay", "0"]
EPOCHS = [*RECIPE, "--epochs", "3", "--warmup-epochs", "1", "--label-smoothing", "0.1", "--ema-decay", "0.9"]


def records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("colours")
    return make_folders(root / "train", per_class=4), make_folders(root / "val", per_class=1, seed=1)


@pytest.fixture(scope="module")
def straight(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs in one run."""
    out = tmp_path_factory.mktemp("straight")
    train, val = data
    assert main(["train", *COMMON, *EPOCHS, "--data", str(train), "--val", str(val), "--output-dir", str(out)]) == 0
    return out


def test_loss_falls_and_eval_is_logged(straight: Path) -> None:
    train = records(straight, "train")
    assert [r["epoch"] for r in train] == [1, 2, 3]
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert all(
        r["samples"] == 12 and r["step"] == 2 * r["epoch"] and r["skipped"] == 0 and r["samples_per_rank"] == [12]
        for r in train
    )
    evals = records(straight, "eval")
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert {"top1", "top5", "val_loss", "ema_top1"} <= evals[-1].keys() and evals[-1]["val_images"] == 3
    assert evals[-1]["top5"] == 100.0  # three classes: the top five hold them all


def test_resume_is_bit_identical(data: tuple[Path, Path], straight: Path, tmp_path: Path) -> None:
    train, val = data
    args = ["train", *COMMON, *EPOCHS, "--data", str(train), "--val", str(val), "--output-dir", str(tmp_path)]
    assert main([*args, "--stop-after", "2"]) == 0
    assert not (tmp_path / "model.pth").exists()  # not finished yet
    assert main([*args, "--resume", "auto", "--seed", "5"]) == 0  # the run keeps the seed it began with
    ours = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    theirs = torch.load(straight / "checkpoint.pth", weights_only=True)
    assert ours["epoch"] == theirs["epoch"] == 3 and ours["step"] == theirs["step"] == 6
    for part in ("model", "ema"):
        assert ours[part].keys() == theirs[part].keys()
        for key in ours[part]:
            assert torch.equal(ours[part][key], theirs[part][key]), (part, key)
    states, reference = ours["optimizer"]["state"], theirs["optimizer"]["state"]
    assert states.keys() == reference.keys()
    for index, state in states.items():
        assert state.keys() == reference[index].keys()
        assert all(torch.equal(value, reference[index][name]) for name, value in state.items()), index
    assert ours["scheduler"] == theirs["scheduler"]
    assert [r["loss"] for r in records(tmp_path, "train")] == [r["loss"] for r in records(straight, "train")]


def test_saved_model_loads_in_get_model_and_predict(
    straight: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    saved = torch.load(straight / "model.pth", weights_only=True)
    assert saved["meta"]["categories"] == sorted(COLOURS) and saved["meta"]["model"] == "resnet18"
    model = get_model("resnet18", weights=str(straight / "model.pth"))  # num_classes from the saved meta
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), saved["model"].values()))
    image = data[1] / "red" / "0.png"
    capsys.readouterr()
    assert (
        main(["predict", "--model", "resnet18", "--weights", str(straight / "model.pth"), "--topk", "1", str(image)])
        == 0
    )
    out = capsys.readouterr().out
    assert "red" in out or "green" in out or "blue" in out
    assert (straight / "model_ema.pth").is_file()


def test_a_checkpoint_of_another_model_is_refused(
    straight: Path, data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = data
    base = ["train", "--crop-size", "32", "--workers", "0", "-q", "--data", str(train), "--epochs", "1"]
    # resuming training of another architecture
    assert main([*base, "--model", "resnet34", "--output-dir", str(tmp_path), "--resume", str(straight)]) == 2
    assert "checkpoint of 'resnet18', not of 'resnet34'" in capsys.readouterr().err
    # starting from the weights of another architecture
    assert (
        main([*base, "--model", "resnet34", "--output-dir", str(tmp_path), "--weights", str(straight / "model.pth")])
        == 2
    )
    assert "holds weights of resnet18, not of resnet34" in capsys.readouterr().err
    # predict with the wrong model
    image = str(data[1] / "red" / "0.png")
    assert main(["predict", "--model", "resnet34", "--weights", str(straight / "model.pth"), image]) == 2
    assert "holds weights of resnet18, not of resnet34" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written, not even the output directory's files


def test_a_finished_run_is_neither_overwritten_nor_retrained(
    straight: Path, data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, val = data
    before = {name: (straight / name).read_bytes() for name in ("checkpoint.pth", "model.pth", "metrics.jsonl")}
    args = ["train", *COMMON, *EPOCHS, "--data", str(train), "--output-dir", str(straight)]
    assert main(args) == 2  # a new run into a directory holding a checkpoint
    assert "already holds a training checkpoint" in capsys.readouterr().err
    assert main([*args, "--resume", "auto"]) == 0
    assert "already finished 3 of 3 epochs" in capsys.readouterr().err
    assert before == {name: (straight / name).read_bytes() for name in before}
