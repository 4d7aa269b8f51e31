"""The ``visionzoo`` command line: list, info, predict, errors and entry points (outputs and exit codes).

Checkpoints come from a tiny zoo served on 127.0.0.1 (tests/_cli_zoo.py); real models appear only where
no checkpoint is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._cli_zoo import (
    CATEGORIES,
    TinyZoo,
    bias_probabilities,
    checkpoint_bytes,
    make_tiny,
    run,
    write_images,
)
from visionzoo import hub
from visionzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAT, COFFEE = str(ROOT / "assets" / "chelsea.jpg"), str(ROOT / "assets" / "coffee.jpg")


def column(table: str, index: int = 0) -> list[str]:
    """One column of an aligned table printed by the command line (header and rule dropped)."""
    return [line.split()[index] for line in table.strip().splitlines()[2:]]


# ---------------------------------------------------------------------------------------------- list


def test_list_patterns_and_task(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["list", "resnet1*", "tiny*"], capsys)
    assert status == 0 and column(out) == ["resnet101", "resnet152", "resnet18", "tinydet", "tinynet"]
    assert out.splitlines()[0].split() == ["model", "task", "weights", "default"]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["tinynet"] == ["classification", "2", "V2"] and rows["tinydet"] == ["detection", "0", "-"]
    status, out, _ = run(["list", "--task", "detection", "tiny*"], capsys)
    assert status == 0 and column(out) == ["tinydet"]
    status, _, err = run(["list", "tinynet", "--task", "detection"], capsys)
    assert status == 2 and "no model matches tinynet among detection models" in err
    status, _, err = run(["list", "--task", "nosuch"], capsys)  # the registry's task list
    assert (
        status == 2
        and err
        == "visionzoo: error: Unknown task 'nosuch'; valid tasks: classification, quantization, segmentation, detection, video, optical_flow\n"
    )


def test_list_weights_table_and_json(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["list", "resnet50", "tinynet", "--weights"], capsys)
    assert status == 0
    header, *_ = out.splitlines()
    assert header.split() == ["model", "weights", "acc@1", "acc@5", "params", "GFLOPS", "MB"]
    lines = out.splitlines()[2:]
    assert any(line.split()[:5] == ["resnet50", "IMAGENET1K_V2", "(default)", "80.858", "95.434"] for line in lines)
    assert any(line.split()[:4] == ["tinynet", "V1", "12.500", "50.000"] for line in lines)
    assert "25.6M" in out

    status, out, _ = run(["list", "tiny*", "--json"], capsys)
    payload = {item["model"]: item for item in json.loads(out)}
    assert status == 0 and payload["tinydet"] == {"model": "tinydet", "task": "detection", "weights": []}
    v1, v2 = payload["tinynet"]["weights"]
    assert v2["weights"] == "TinyNet_Weights.V2" and v2["default"] and not v1["default"]
    assert v1["metrics"] == {"ImageNet-1K": {"acc@1": 12.5, "acc@5": 50.0}}
    assert v1["url"] == f"{zoo.base_url}/{zoo.files['V1']}" and v1["file_name"] == zoo.files["V1"]
    assert v1["num_categories"] == 10 and v1["gflops"] == 0.012


# ---------------------------------------------------------------------------------------------- info


def test_info_card_says_where_the_file_is(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, card, _ = run(["info", "tinynet"], capsys)
    assert status == 0
    assert card.startswith("tinynet(*, weights: WeightsEnum | str | Path | None = None, progress: bool = True")
    assert "task: classification" in card and "A one-block-per-stage ResNet" in card
    assert "TinyNet_Weights.V1\n" in card and "TinyNet_Weights.V2  [DEFAULT]" in card
    assert "acc@1=12.500 acc@5=50.000" in card and f"url:      {zoo.base_url}/{zoo.files['V2']}" in card
    assert "recipe:   https://example.invalid/tinynet-recipe" in card
    assert "resized to 72 pixels" in card and "central 64x64 pixels" in card  # the preset in words
    assert " ".join(card.split()).count("not in the cache; `visionzoo download TinyNet_Weights.V") == 2

    assert main(["download", "tinynet", "--quiet"]) == 0  # V2 into the cache
    capsys.readouterr()
    _, card, _ = run(["info", "tinynet"], capsys)
    assert f"local: cached: {hub.get_dir() / zoo.files['V2']}" in " ".join(card.split())
    assert card.count("not in the cache") == 1  # V1 still missing

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / zoo.files["V1"]).write_bytes((zoo.served / zoo.files["V1"]).read_bytes())
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", "http://mirror.invalid/w")
    _, card, _ = run(["info", "tinynet"], capsys)
    assert f"local: in VISIONZOO_WEIGHTS_DIR: {mirror / zoo.files['V1']}" in " ".join(card.split())
    assert f"mirror:   http://mirror.invalid/w/{zoo.files['V1']}" in card


def test_info_of_a_model_without_weights(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, card, _ = run(["info", "tinydet"], capsys)
    assert status == 0 and "task: detection" in card and card.rstrip().endswith("(no pretrained weights)")


# ---------------------------------------------------------------------------------------------- predict


def test_predict_downloads_and_prints_topk(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], allocator_calls: list[bool]
) -> None:
    status, out, _ = run(["predict", CAT, COFFEE, "--model", "tinynet", "--topk", "3", "--quiet"], capsys)
    assert status == 0 and (hub.get_dir() / zoo.files["V2"]).is_file()
    assert allocator_calls == [True]  # its own process keeps freed memory for the next batch
    p = bias_probabilities()
    block = [CAT] + [f"  {r}. {CATEGORIES[9 - i]:<30} {p[i] * 100:6.2f}%" for r, i in ((1, 0), (2, 1), (3, 2))]
    assert out.splitlines() == block + [COFFEE] + block[1:]


def test_predict_batches_with_progress_json_and_out(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(p) for p in write_images(tmp_path / "pics", 5)]
    out_file = tmp_path / "results.json"
    argv = ["predict", *images, "--model", "tinynet", "--weights", "V1", "--batch-size", "2", "--topk", "10"]
    status, out, err = run([*argv, "--json", "--out", str(out_file)], capsys)
    assert status == 0
    results = json.loads(out)
    assert json.loads(out_file.read_text()) == results and [r["image"] for r in results] == images
    assert "5/5" in err and "img" in err  # the progress bar over the three batches
    for result in results:
        probabilities = [item["probability"] for item in result["top"]]
        assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-3
        assert sorted(item["index"] for item in result["top"]) == list(range(10))
        assert all(item["label"] == CATEGORIES[item["index"]] for item in result["top"])
    # The same images one at a time give the same answers: batching does not change results.
    status, out, err = run(
        ["predict", images[3], "--model", "tinynet", "--weights", "V1", "--topk", "10", "--json"], capsys
    )
    assert json.loads(out)[0]["top"] == results[3]["top"] and "img" not in err  # one batch: no bar


def test_predict_threshold(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["predict", CAT, "--model", "tinynet", "--threshold", "0.2", "--json", "--quiet"], capsys)
    assert status == 0 and [item["index"] for item in json.loads(out)[0]["top"]] == [9, 8]  # 0.632, 0.233
    _, out, _ = run(["predict", CAT, "--model", "tinynet", "--threshold", "0.9", "--quiet"], capsys)
    assert out.splitlines() == [CAT, "  (no category above the threshold)"]


def test_predict_with_a_local_checkpoint(zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = checkpoint_bytes(7, bias_only=True)
    path = tmp_path / "finetuned.pth"  # any name: a local file is trusted as given
    path.write_bytes(data)
    zoo.served.joinpath(zoo.files["V2"]).unlink()  # nothing may be downloaded
    status, out, _ = run(["predict", CAT, "--model", "tinynet", "--weights", str(path), "--topk", "1"], capsys)
    assert status == 0 and out.splitlines()[1].split()[:2] == ["1.", "class_9"]
    status, _, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(tmp_path / "gone.pth")], capsys)
    assert status == 1 and "gone.pth: no such checkpoint file" in err  # missing weights: a failure, as everywhere

    # A fine-tuned head of another size: --num-classes, and the outputs are reported by index.
    state = make_tiny(num_classes=3).state_dict()
    state["fc.weight"].zero_()
    state["fc.bias"].copy_(torch.tensor([0.0, 5.0, 1.0]))
    torch.save(state, path)
    status, out, err = run(
        ["predict", CAT, "--model", "tinynet", "--weights", str(path), "--num-classes", "3", "--json"], capsys
    )
    assert status == 0, err
    assert [(item["label"], item["index"]) for item in json.loads(out)[0]["top"]] == [("1", 1), ("2", 2), ("0", 0)]
    # Without --num-classes, the checkpoint's head decides, and a note says so.
    status, out, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(path), "--json"], capsys)
    assert status == 0 and [item["index"] for item in json.loads(out)[0]["top"]] == [1, 2, 0]
    assert "visionzoo: note: num_classes=3 taken from the checkpoint" in err
    status, _, err = run(["predict", CAT, "--model", "tinynet", "--weights", str(path), "--num-classes", "4"], capsys)
    assert status == 2 and err.count("\n") == 1 and "does not fit tinynet: shape mismatches: fc.weight" in err
    assert "pass --num-classes 3" in err
    status, _, err = run(["predict", CAT, "--model", "tinynet", "--num-classes", "3"], capsys)
    assert status == 2 and "--num-classes applies to a local checkpoint" in err


def test_predict_offline_prints_the_card_and_one_error_line(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    zoo.served.joinpath(zoo.files["V2"]).unlink()  # the server answers 404
    status, out, err = run(["predict", CAT, "--model", "tinynet", "--quiet"], capsys)
    assert status == 1 and out == "" and "Traceback" not in err
    card, error = err.rstrip("\n").rsplit("\n", 1)
    assert "TinyNet_Weights.V2  [DEFAULT]" in card and "TinyNet_Weights.V1" not in card  # the entry in use
    assert error.startswith(f"visionzoo: error: TinyNet_Weights.V2 needs {zoo.files['V2']}, which is not available")
    assert "HTTP error 404" in error and str(hub.get_dir()) in error and "VISIONZOO_WEIGHTS_DIR" in error
    assert "`visionzoo download TinyNet_Weights.V2`" in error


def test_make_demo_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo`'s command without the checkpoint: the card, where to put the file, a non-zero exit."""
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", "http://127.0.0.1:9/w")  # nobody listens: fails at once
    status, out, err = run(["predict", CAT, COFFEE, "--model", "resnet50", "--topk", "3"], capsys)
    assert status == 1 and out == ""
    assert "ResNet50_Weights.IMAGENET1K_V2  [DEFAULT]" in err and "resnet50-11ad3fa6.pth" in err
    assert err.splitlines()[-1].startswith("visionzoo: error: ResNet50_Weights.IMAGENET1K_V2 needs resnet50-11ad3fa6")


def test_predict_refuses_tasks_it_cannot_run_yet(
    zoo: TinyZoo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionzoo.cli import predict

    # Every task has a predictor by now: take detection's away to see the refusal a task without one gets.
    monkeypatch.delitem(predict.PREDICTORS, "detection")
    status, _, err = run(["predict", CAT, "--model", "tinydet"], capsys)
    assert status == 2
    assert (
        err
        == "visionzoo: error: predict does not handle detection models yet (tinydet); it handles classification, optical_flow, quantization, segmentation, video models\n"
    )


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "resnet05"], "Did you mean: resnet50"),
        (["list", "nosuchmodel*"], "no model matches nosuchmodel*"),
        (["predict", "nope.jpg", "--model", "resnet18"], "nope.jpg: no such file"),
        (["predict", CAT, "--model", "resnet18", "--weights", "IMAGENET1K_V9"], "Unknown weights 'IMAGENET1K_V9'"),
        (["predict", CAT, "--model", "resnet18", "--topk", "0"], "--topk and --batch-size must be at least 1"),
        (["predict", CAT, "--model", "resnet18", "--threshold", "2"], "--threshold must be a probability"),
        (["predict", CAT, "--model", "resnet18", "--device", "gpu7"], "--device 'gpu7' is not a device name"),
        (["predict", CAT, "--model", "resnet18", "--device", "cuda:63"], "--device 'cuda:63' is not available"),
        (["predict", CAT, "--model", "resnet18", "--out", "/no/such/dir/r.json"], "the directory does not exist"),
    ],
)
def test_errors_are_one_line(argv: list[str], fragment: str, zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(argv, capsys)
    assert status == 2 and out == ""
    assert fragment in err and err.count("\n") == 1 and err.startswith("visionzoo: error:")


# ---------------------------------------------------------------------------------------------- entry points


def test_module_entry_point_and_lazy_imports() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "visionzoo", "list", "wide_*"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0 and column(done.stdout) == ["wide_resnet101_2", "wide_resnet50_2"]
    # `visionzoo --help` builds the whole parser without importing torch (or PIL, tqdm, matplotlib).
    probe = "import sys, visionzoo.cli as c; c.build_parser().format_help(); print(sorted(m for m in ('torch', 'PIL', 'tqdm', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]"
