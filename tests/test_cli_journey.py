"""Issue 27: what a new user hit on a first afternoon with the classification commands, one test per finding,
and the whole journey with a fine-tuned checkpoint (make it, predict a mixed folder, validate, convert, benchmark).

Checkpoints come from the tiny zoo of tests/_cli_zoo.py (served on 127.0.0.1, or written here).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests._cli_zoo import TinyZoo, make_tiny, run, write_images
from visionzoo import hub
from visionzoo.cli import main
from visionzoo.io import ImageReadMode, read_image
from visionzoo.models import get_model, optimize_for_inference, resnet18
from visionzoo.models.resnet import BasicBlock, ResNet
from visionzoo.transforms import ImageClassification

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.jpg")


def fine_tuned(path: Path, classes: int = 3) -> Path:
    """A tinynet checkpoint fine-tuned for ``classes`` classes, wrapped as training scripts save it; whatever
    the image, its logits are 0, 5, 1, 2, ... so class 1 wins."""
    state = make_tiny(num_classes=classes).state_dict()
    state["fc.weight"].zero_()
    state["fc.bias"].copy_(torch.tensor([0.0, 5.0, *range(1, classes - 1)]))
    torch.save({"model": state, "epoch": 3}, path)
    return path


def mixed_folder(root: Path) -> Path:
    """Two good pictures, a file that only pretends to be a PNG, a note, and a picture in a subfolder."""
    write_images(root, 2)
    (root / "fake.png").write_text("not a picture")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    write_images(root / "more", 1, seed=3)
    return root


# ---------------------------------------------------------------------------------------------- 1. bad files


def test_one_unreadable_image_does_not_abort_the_run(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = mixed_folder(tmp_path / "imgs")
    images = [str(folder / "img0.png"), str(folder / "fake.png"), str(folder / "img1.png")]
    status, out, err = run(["predict", *images, "--model", "tinynet", "--topk", "1", "--quiet"], capsys)
    assert status == 1  # some failed
    assert [line for line in out.splitlines() if not line.startswith(" ")] == [images[0], images[2]]
    assert f"visionzoo: {images[1]}: not a JPEG, PNG" in err
    assert err.splitlines()[-1] == "visionzoo: 2 of 3 images predicted, 1 failed" and "Traceback" not in err

    status, out, err = run(["predict", *images, "--model", "tinynet", "--quiet", "--strict"], capsys)
    assert status == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"visionzoo: error: {images[1]}: not a JPEG, PNG") and "--strict" in err


# ---------------------------------------------------------------------------------------------- 2. paths everywhere


def test_validate_convert_and_benchmark_take_a_checkpoint_path(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = fine_tuned(tmp_path / "my5.pth", classes=5)
    data = tmp_path / "val"
    write_images(data / "1", 2)
    write_images(data / "4", 1, seed=1)
    status, out, err = run(["validate", str(checkpoint), "--model", "tinynet", "--data", str(data), "--json"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["weights"] == str(checkpoint) and report["images"] == 3 and report["meta"] == {}
    assert report["measured"]["PIL"]["acc@1"] == pytest.approx(200 / 3)  # class 1 always wins
    status, _, err = run(["validate", str(checkpoint), "--data", str(data)], capsys)
    assert status == 2 and "is a checkpoint path: say which model it is for with --model" in err

    status, out, err = run(
        ["convert", str(checkpoint), "--to", str(tmp_path / "st"), "--format", "safetensors"], capsys
    )
    assert status == 0, err
    assert out.strip().splitlines()[-1] == "1 converted, 0 skipped, 0 failed"
    assert (tmp_path / "st" / "my5.safetensors").is_file() and (tmp_path / "st" / "my5.safetensors.sha256").is_file()

    argv = ["benchmark", "tinynet", "--weights", str(checkpoint), "--iterations", "1", "--warmup", "0", "--json"]
    status, out, err = run(argv, capsys)
    assert status == 0 and json.loads(out)["weights"] == str(checkpoint), err
    status, out, _ = run(["benchmark", "tinynet", "--num-classes", "7", "--iterations", "1", "--json"], capsys)
    assert status == 0 and json.loads(out)["weights"] is None  # random weights of another head size


# ---------------------------------------------------------------------------------------------- 3. num_classes


def test_number_of_classes_comes_from_the_checkpoint_and_hints_name_the_flag(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = fine_tuned(tmp_path / "ft.pth", classes=3)
    status, out, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(checkpoint), "--json"], capsys)
    assert status == 0 and json.loads(out)[0]["top"][0] == {"label": "1", "index": 1, "probability": 0.9756}
    assert f"visionzoo: note: num_classes=3 taken from the checkpoint {checkpoint}" in err

    status, _, err = run(
        ["predict", CAT, "--model", "tinynet", "--weights", str(checkpoint), "--num-classes", "2"], capsys
    )
    assert status == 2 and "pass --num-classes 3" in err and "num_classes=" not in err

    other = ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10)  # another architecture's checkpoint
    torch.save(other.state_dict(), tmp_path / "other.pth")
    status, _, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(tmp_path / "other.pth")], capsys)
    assert status == 2 and f"The checkpoint {tmp_path / 'other.pth'} is not a tinynet checkpoint (" in err
    assert "unexpected" in err and "--num-classes" not in err

    for command in (
        ["predict", CAT, "--model", "tinynet", "--weights", str(checkpoint)],
        ["benchmark", "tinynet"],
        ["validate", str(checkpoint), "--model", "tinynet", "--data", str(tmp_path)],
    ):
        status, _, err = run([*command, "--num-classes", "0"], capsys)
        assert status == 2 and "--num-classes must be at least 1, got 0" in err, command


# ---------------------------------------------------------------------------------------------- 4. 16-bit PNGs


def sixteen_bit_grey_png(path: Path) -> Path:
    values = (np.arange(80 * 96, dtype=np.uint32).reshape(80, 96) * 8).astype(np.uint16)
    Image.fromarray(values).save(path)  # mode I;16: a 16-bit grey PNG
    return path


def test_presets_and_predict_take_16_bit_pngs(zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = sixteen_bit_grey_png(tmp_path / "deep.png")
    pixels = read_image(png, mode=ImageReadMode.RGB)
    assert pixels.dtype == torch.uint16 and pixels.shape == (3, 80, 96)
    preset = ImageClassification(crop_size=64, resize_size=72)
    as_float = pixels.to(torch.int32).float() / 65535
    torch.testing.assert_close(preset(pixels), preset(as_float))  # scaled by 65535, like uint8 by 255
    torch.testing.assert_close(preset(pixels.unsqueeze(0))[0], preset(as_float))

    status, out, err = run(["predict", str(png), "--model", "tinynet", "--topk", "1", "--quiet"], capsys)
    assert status == 0 and out.splitlines()[1].split()[:2] == ["1.", "class_9"], err


# ---------------------------------------------------------------------------------------------- 5. folders


def test_a_folder_as_input(zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    write_images(folder, 2)
    write_images(folder / "sub", 1, seed=4)
    status, out, err = run(["predict", str(folder), "--model", "tinynet", "--json", "--quiet"], capsys)
    assert status == 0 and [r["image"] for r in json.loads(out)] == [str(folder / "img0.png"), str(folder / "img1.png")]
    status, out, _ = run(["predict", str(folder), "--recursive", "--model", "tinynet", "--json", "--quiet"], capsys)
    assert status == 0 and json.loads(out)[-1]["image"] == str(folder / "sub" / "img0.png")
    status, _, err = run(["predict", str(folder / "sub" / "img0.png"), str(tmp_path), "--model", "tinynet"], capsys)
    assert status == 2 and "a folder without images" in err and "--recursive" in err

    status, _, err = run(["validate", "tinynet", "--data", CAT], capsys)
    assert status == 2 and f"--data {CAT} is a file; it must be a directory" in err


# ---------------------------------------------------------------------------------------------- 6. --out


def test_out_format_follows_the_suffix_and_is_checked_first(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", CAT, CAT, "--model", "tinynet", "--topk", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r.csv")]) == 0
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], r["rank"], r["label"], r["index"]) for r in rows] == [
        (CAT, "1", "class_9", "9"),
        (CAT, "2", "class_8", "8"),
    ] * 2
    assert main([*argv, "--out", str(tmp_path / "r.jsonl")]) == 0
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["top"][0]["label"] == "class_9"
    capsys.readouterr()

    (zoo.served / zoo.files["V2"]).unlink()  # refused before any work: nothing is fetched
    for out, fragment in (
        ("r.txt", "unknown format .txt; use .json, .jsonl, .csv"),
        (".", "a directory; name a file in it"),
    ):
        status, stdout, err = run([*argv, "--out", str(tmp_path / out)], capsys)
        assert (status, stdout) == (2, "") and fragment in err and err.count("\n") == 1, err


# ---------------------------------------------------------------------------------------------- 7. get_transforms


def test_readme_snippet_works_with_every_alternative_its_comment_offers(zoo: TinyZoo, tmp_path: Path) -> None:
    from visionzoo.models import get_transforms

    snippet = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert "get_transforms(model)" in snippet and "weights = ResNet50_Weights.DEFAULT" in snippet
    namespace: dict = {}
    exec(compile(snippet.replace("ResNet50_Weights.DEFAULT  #", "None  #"), "README.md", "exec"), namespace)
    assert isinstance(namespace["label"], str)  # weights=None: random, but the documented lines run

    checkpoint = fine_tuned(tmp_path / "ft.pth")
    entry = zoo.entry("V1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = {
            "None": get_model("tinynet", weights=None),
            "entry name": get_model("tinynet", weights="V1"),
            "path": get_model("tinynet", weights=str(checkpoint)),
        }
    for how, model in built.items():
        assert repr(get_transforms(model)) == repr(
            zoo.entry().transforms() if how != "entry name" else entry.transforms()
        )
    assert repr(get_transforms(optimize_for_inference(built["path"], compile=False))) == repr(zoo.entry().transforms())
    assert repr(get_transforms("tinynet")) == repr(get_transforms("TinyNet_Weights.V2"))
    with pytest.raises(ValueError, match="not built by a visionzoo builder"):
        get_transforms(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Expected a model, a weights entry or a model name"):
        get_transforms(None)


# ---------------------------------------------------------------------------------------------- 8. benchmark


def test_benchmark_optimize_and_compile_side_by_side_with_progress(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["benchmark", "tinynet", "--input-size", "32", "--iterations", "2", "--warmup", "1"]
    status, out, err = run([*argv, "--optimize", "--no-compile", "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    fast = result["optimized"]
    assert fast["method"] == "optimize_for_inference" and fast["compiled"] is False and fast["folded_conv_bn"] > 0
    assert fast["images_per_s"] > 0 and result["images_per_s"] > 0  # eager and optimised, both measured

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # the real one takes tens of seconds here
    status, out, err = run([*argv, "--compile"], capsys)
    assert status == 0, err
    assert "compiling tinynet with torch.compile" in err and re.search(r"compiled in \d+\.\d s", err)
    lines = out.splitlines()
    assert lines[1].split() == ["metric", "eager", "compiled"] and lines[-3].startswith("compile time (s)")
    assert len(lines[3].split()) == 3  # images/s: eager, compiled


# ---------------------------------------------------------------------------------------------- smaller findings


def test_pretrained_warning_points_at_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resnet18(pretrained=False)  # the builder directly
        get_model("resnet18", pretrained=False)  # and through one more visionzoo frame
        resnet18(False)
    assert [(Path(w.filename).name, "deprecated" in str(w.message)) for w in caught] == [
        ("test_cli_journey.py", True)
    ] * 3


def test_a_failed_download_leaves_no_lock_files(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (zoo.served / zoo.files["V1"]).unlink()
    assert main(["download", "TinyNet_Weights.V1", "--quiet"]) == 1
    assert main(["download", "TinyNet_Weights.V1", "--to", str(tmp_path / "usb"), "--quiet"]) == 1
    assert main(["download", "TinyNet_Weights.V2", "--to", str(tmp_path / "usb"), "--quiet"]) == 0
    leftovers = [p.name for d in (hub.get_dir(), tmp_path / "usb") for p in d.iterdir() if p.name.endswith(".lock")]
    assert leftovers == []


def test_names_are_case_insensitive_everywhere(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["list", "RESNET18"], capsys)
    assert status == 0 and out.splitlines()[2].split()[0] == "resnet18"
    status, out, _ = run(["info", "ResNet50"], capsys)
    assert status == 0 and out.startswith("resnet50(")
    for weights in ("default", "v1", "TinyNet_Weights.v1"):
        status, _, err = run(["predict", CAT, "--model", "TinyNet", "--weights", weights, "--quiet"], capsys)
        assert status == 0, (weights, err)
    status, out, _ = run(["download", "tinynet", "--weights", "v1", "--quiet"], capsys)
    assert status == 0 and "TinyNet_Weights.V1" in out


def test_unknown_models_point_to_the_command_line(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["info", "resnet05"], ["predict", CAT, "--model", "resnet05"], ["benchmark", "resnet05"]):
        status, _, err = run(argv, capsys)
        assert status == 2 and "Did you mean: resnet50" in err and "`visionzoo list` shows them all" in err
        assert "list_models()" not in err


def test_version_and_the_documented_exit_status(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = subprocess.run([sys.executable, "-m", "visionzoo", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and re.fullmatch(r"visionzoo \d+\.\d+\.\d+\n", done.stdout)
    done = subprocess.run([sys.executable, "-m", "visionzoo", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "exit status: 0 success; 1 a failure" in " ".join(done.stdout.split())
    assert "1 for failures, 2 for usage" in (ROOT / "README.md").read_text()

    # The same missing weights: status 1 from every command.
    (zoo.served / zoo.files["V2"]).unlink()
    data = tmp_path / "val"
    write_images(data / "0", 1)
    gone = str(tmp_path / "gone.pth")
    for argv in (
        ["predict", CAT, "--model", "tinynet", "--quiet"],
        ["validate", "tinynet", "--data", str(data), "--quiet"],
        ["benchmark", "tinynet", "--weights", "DEFAULT"],
        ["predict", CAT, "--model", "tinynet", "--weights", gone],
        ["validate", gone, "--model", "tinynet", "--data", str(data)],
        ["benchmark", "tinynet", "--weights", gone],
        ["convert", gone, "--to", str(tmp_path / "st")],
    ):
        status, _, err = run(argv, capsys)
        assert status == 1 and err.splitlines()[-1].startswith("visionzoo: error:"), (argv, err)


# ---------------------------------------------------------------------------------------------- the journey


def test_a_first_afternoon_with_a_fine_tuned_checkpoint(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Make a checkpoint; predict a mixed folder with a corrupt file; validate, convert and benchmark it; use the
    converted file. Nothing is downloaded: the checkpoint's head (3 classes) decides everywhere."""
    for name in zoo.files.values():
        (zoo.served / name).unlink()
    checkpoint = fine_tuned(tmp_path / "my3.pth")
    folder = mixed_folder(tmp_path / "imgs")

    argv = ["predict", str(folder), "--recursive", "--model", "tinynet", "--weights", str(checkpoint)]
    status, out, err = run([*argv, "--out", str(tmp_path / "res.csv"), "--quiet"], capsys)
    assert status == 1  # the corrupt file
    assert out.count("  1. 1 ") == 3  # three good images, class 1 each (unnamed: the head is not DEFAULT's)
    assert f"{folder / 'fake.png'}: not a JPEG, PNG" in err and "3 of 4 images predicted, 1 failed" in err
    assert len((tmp_path / "res.csv").read_text().splitlines()) == 1 + 3 * 3  # header, top-3 of 3 images

    data = tmp_path / "val"
    write_images(data / "1", 2)
    write_images(data / "2", 2, seed=1)
    status, out, err = run(["validate", str(checkpoint), "--model", "tinynet", "--data", str(data), "--quiet"], capsys)
    assert status == 0, err
    assert out.splitlines()[0] == f"{checkpoint} on {data}: 4 images, 2 classes"
    assert out.splitlines()[3].split() == ["acc@1", "50.000", "50.000", "n/a"]

    status, _, err = run(["convert", str(checkpoint), "--to", str(tmp_path / "st"), "--quiet"], capsys)
    assert status == 0, err
    converted = tmp_path / "st" / "my3.safetensors"

    status, out, err = run(["benchmark", "tinynet", "--weights", str(converted), "--iterations", "2"], capsys)
    assert status == 0 and "images/s" in out, err

    status, out, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(converted), "--json"], capsys)
    assert status == 0 and json.loads(out)[0]["top"][0]["index"] == 1, err
