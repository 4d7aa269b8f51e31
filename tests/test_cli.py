"""The ``visionzoo`` command line: outputs and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import reference
from visionzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.jpg")


def test_list_plain_weights_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "resnet1*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet101", "resnet152", "resnet18"]
    assert main(["list", "resnet50", "--weights"]) == 0
    table = capsys.readouterr().out
    assert "IMAGENET1K_V2 (default)" in table and "80.858" in table and "25.6M" in table
    assert main(["list", "resnet18", "--weights", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload[0]["model"] == "resnet18"
    assert payload[0]["weights"][0]["url"].endswith("resnet18-f37072fd.pth")


def test_info_shows_the_model_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "resnet50"]) == 0
    card = capsys.readouterr().out
    assert card.startswith("resnet50(*, weights: ResNet50_Weights | str | Path | None = None")
    assert "ResNet50_Weights.IMAGENET1K_V2  [DEFAULT]" in card
    assert "acc@1=80.858" in card and "resnet50-11ad3fa6.pth" in card and "not on disk" in card


def test_predict_with_a_local_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    path = tmp_path / "r18.pth"
    torch.save(reference.models.resnet18().state_dict(), path)
    assert main(["predict", CAT, CAT, "--model", "resnet18", "--weights", str(path), "--topk", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [CAT, CAT]
    assert len(results[0]["top"]) == 3 and results[0]["top"] == results[1]["top"]
    probabilities = [item["probability"] for item in results[0]["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1


def test_predict_offline_prints_card_and_fix(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["predict", CAT, "--model", "resnet18", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1
    assert "ResNet18_Weights.IMAGENET1K_V1" in err and "resnet18-f37072fd.pth" in err
    assert "VISIONZOO_WEIGHTS_DIR" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "resnet05"], "Did you mean: resnet50"),
        (["predict", "nope.jpg", "--model", "resnet18"], "nope.jpg"),
        (["predict", CAT, "--model", "resnet18", "--weights", "IMAGENET1K_V9"], "IMAGENET1K_V9"),
    ],
)
def test_errors_are_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and err.startswith("visionzoo: error:")


def test_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "visionzoo", "list", "wide_*"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.split() == ["wide_resnet101_2", "wide_resnet50_2"]
