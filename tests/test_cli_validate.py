"""``visionzoo validate`` (accuracy on an image folder, PIL and tensor paths) and ``visionzoo benchmark``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests._cli_zoo import TinyZoo, run, write_images
from visionzoo import hub
from visionzoo.cli import CommandError
from visionzoo.cli._eval_classification import class_indices
from visionzoo.io import ImageReadMode, read_image
from visionzoo.models import get_model


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes, two pictures each: folders named by index (9, 0) and by category name (class_7)."""
    root = tmp_path / "val"
    for seed, folder in enumerate(("9", "class_7", "0")):
        write_images(root / folder, 2, seed=seed)
    (root / "class_7" / "readme.txt").write_text("not an image")  # ignored
    return root


def test_validate_reports_pil_and_tensor_accuracy_next_to_meta(
    zoo: TinyZoo, image_folder: Path, capsys: pytest.CaptureFixture[str], allocator_calls: list[bool]
) -> None:
    # V2's logits are 0..9 whatever the image: top-1 is always 9, top-5 is 9..5.
    status, out, err = run(["validate", "TinyNet_Weights.V2", "--data", str(image_folder), "--quiet"], capsys)
    assert status == 0, err
    assert allocator_calls == [True]  # its own process keeps freed memory for the next batch
    lines = out.splitlines()
    assert lines[0] == f"TinyNet_Weights.V2 on {image_folder}: 6 images, 3 classes"
    assert lines[1].split() == ["metric", "PIL", "tensor", "meta"]
    assert lines[3].split() == ["acc@1", "33.333", "33.333", "33.000"]
    assert lines[4].split() == ["acc@5", "66.667", "66.667", "66.000"]


def test_validate_measures_what_the_model_predicts(
    zoo: TinyZoo, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """V1 is random: its accuracy is recomputed here, image by image, through both preset paths."""
    status, out, err = run(
        ["validate", "TinyNet_Weights.V1", "--data", str(image_folder), "--json", "--batch-size", "4"], capsys
    )
    assert status == 0, err
    report = json.loads(out)
    assert report["weights"] == "TinyNet_Weights.V1" and report["images"] == 6
    assert report["meta"] == {"acc@1": 12.5, "acc@5": 50.0}

    entry = zoo.entry("V1")
    model = get_model("tinynet", weights=entry).eval()
    preset = entry.transforms()
    expected = {"PIL": [0, 0], "tensor": [0, 0]}
    for label, folder in ((9, "9"), (7, "class_7"), (0, "0")):
        for path in sorted((image_folder / folder).glob("*.png")):
            with Image.open(path) as im:
                inputs = {"PIL": preset(im.convert("RGB")), "tensor": preset(read_image(path, mode=ImageReadMode.RGB))}
            for name, x in inputs.items():
                with torch.no_grad():
                    top5 = model(x.unsqueeze(0))[0].topk(5).indices.tolist()
                expected[name][0] += top5[0] == label
                expected[name][1] += label in top5
    for name, (hits1, hits5) in expected.items():
        assert report["measured"][name] == pytest.approx({"acc@1": 100 * hits1 / 6, "acc@5": 100 * hits5 / 6})


def test_validate_a_model_name_means_its_default(
    zoo: TinyZoo, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(["validate", "tinynet", "--data", str(image_folder), "--limit", "2", "--quiet"], capsys)
    assert status == 0 and out.splitlines()[0] == f"TinyNet_Weights.V2 on {image_folder}: 2 images, 1 classes"


def test_class_folder_rules() -> None:
    categories = ["tench", "crane", "crane", "goldfish"]
    assert class_indices(["3", "tench", "goldfish"], categories) == {"3": 3, "tench": 0, "goldfish": 3}
    wnids = ["n01443537", "n01440764", "n02012849", "n02012850"]
    assert class_indices(wnids, categories) == {"n01440764": 0, "n01443537": 1, "n02012849": 2, "n02012850": 3}


@pytest.mark.parametrize(
    "folders, fragment",
    [
        (["crane"], "class folder 'crane' is ambiguous: categories 1 and 2 share that name; name the folder by index"),
        (["4"], "class folder '4': index out of range (the weights have 4 categories)"),
        (["dogs"], "class folder 'dogs' is neither a category index (0..3) nor a category name"),
        (["n01440764", "n01443537"], "found 2 WordNet-id folders, but the weights have 4 categories"),
    ],
)
def test_class_folder_errors(folders: list[str], fragment: str) -> None:
    with pytest.raises(CommandError, match="^" + fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        class_indices(folders, ["tench", "crane", "crane", "goldfish"])


def test_validate_errors(zoo: TinyZoo, tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (
            ["validate", "TinyNet_Weights.V1", "--data", str(tmp_path / "none")],
            2,
            f"{tmp_path / 'none'}: no such directory",
        ),
        (["validate", "TinyNet_Weights.V1", "--data", str(tmp_path)], 2, "is neither a category index"),  # 'val', ...
        (
            ["validate", "TinyNet_Weights.V7", "--data", str(image_folder)],
            2,
            "Unknown weights 'V7' for TinyNet_Weights",
        ),
        (["validate", "tinydet", "--data", str(image_folder)], 2, "tinydet has no pretrained weights to validate"),
        (
            ["validate", "tinynet", "--data", str(image_folder), "--batch-size", "0"],
            2,
            "--batch-size and --limit must be at least 1",
        ),
    ]
    for argv, code, fragment in cases:
        status, out, err = run(argv, capsys)
        assert (status, out) == (code, "") and fragment in err and err.count("\n") == 1, (argv, err)
    (tmp_path / "empty" / "3").mkdir(parents=True)
    status, _, err = run(["validate", "tinynet", "--data", str(tmp_path / "empty")], capsys)
    assert status == 2 and "no images (.jpg, .jpeg, .png" in err
    (zoo.served / zoo.files["V2"]).unlink()
    status, _, err = run(["validate", "tinynet", "--data", str(image_folder), "--quiet"], capsys)
    assert status == 1 and err.startswith("visionzoo: error: TinyNet_Weights.V2 needs") and err.count("\n") == 1


def test_validate_imagenet_layout_with_a_labels_file(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flat folder of ILSVRC2012_val_*.png and a ground-truth file, in both forms; a corrupt image is skipped."""
    root = tmp_path / "val"
    for i, path in enumerate(write_images(root, 4)):
        path.rename(root / f"ILSVRC2012_val_{i + 1:08d}.png")
    # V2 always ranks 9 first and 5 last of its top 5: labels 9, 3, 5, 0 give acc@1 25%, acc@5 50%.
    in_order = tmp_path / "in_order.txt"
    in_order.write_text("9\n3\n\n5  # a comment\n0\n")
    named = tmp_path / "named.txt"
    named.write_text(
        "ILSVRC2012_val_00000004.png,0\nILSVRC2012_val_00000002 3\nILSVRC2012_val_00000001\t9\n"
        "ILSVRC2012_val_00000003 5\nILSVRC2012_val_00000099 1\n"
    )
    for labels in (in_order, named):
        argv = ["validate", "tinynet", "--data", str(root), "--labels", str(labels), "--json", "--quiet"]
        status, out, err = run(argv, capsys)
        assert status == 0, err
        report = json.loads(out)
        assert report["images"] == 4 and report["skipped"] == 0 and report["classes"] == 4
        assert report["measured"]["PIL"] == report["measured"]["tensor"] == {"acc@1": 25.0, "acc@5": 50.0}
    (root / "ILSVRC2012_val_00000002.png").write_bytes(b"not a png")
    status, out, err = run(["validate", "tinynet", "--data", str(root), "--labels", str(named), "--quiet"], capsys)
    assert status == 0 and err.startswith(f"visionzoo: skipped: {root / 'ILSVRC2012_val_00000002.png'}: cannot read")
    assert out.splitlines()[0] == f"TinyNet_Weights.V2 on {root}: 3 images, 3 classes"
    assert out.splitlines()[3].split() == ["acc@1", "33.333", "33.333", "33.000"]
    assert out.splitlines()[-1].endswith("images/s); 1 unreadable, skipped")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("9\n3\n", "holds 2 labels, one per line, but {root} holds 3 images"),
        ("9\n3 1\n", "line 2: expected one label per line, or NAME LABEL on every line; got '3 1'"),
        ("9\n10\n1\n", "line 2: '10' is not a category index (0..9)"),
        ("ILSVRC2012_val_00000001 1\n", "ILSVRC2012_val_00000002.png: no label for it in --labels"),
        ("a n01440764\nb n01443537\n", "2 distinct WordNet ids, but the weights have 10 categories"),
    ],
)
def test_validate_labels_file_errors(
    text: str, fragment: str, zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "val"
    for i, path in enumerate(write_images(root, 3)):
        path.rename(root / f"ILSVRC2012_val_{i + 1:08d}.png")
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    status, out, err = run(["validate", "tinynet", "--data", str(root), "--labels", str(labels)], capsys)
    assert (status, out) == (2, "") and fragment.format(root=root) in err and err.count("\n") == 1, err


def test_validate_layout_hints(zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path / "flat", 2)
    status, _, err = run(["validate", "tinynet", "--data", str(tmp_path / "flat")], capsys)
    assert status == 2 and "holds images directly; for the ImageNet validation layout give their labels" in err
    devkit = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    devkit.write_text("490\n361\n")
    status, _, err = run(["validate", "tinynet", "--data", str(tmp_path / "flat"), "--labels", str(devkit)], capsys)
    assert status == 2 and "holds 1-based ILSVRC2012 ids, which are not category indices: map them" in err
    missing = tmp_path / "missing.txt"
    status, _, err = run(["validate", "tinynet", "--data", str(tmp_path / "flat"), "--labels", str(missing)], capsys)
    assert status == 2 and err == f"visionzoo: error: --labels {missing}: no such file\n"


def test_an_evaluator_module_that_is_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionzoo.cli import validate

    monkeypatch.setitem(validate.EVALUATORS, "detection", "_eval_not_installed")
    with pytest.raises(CommandError, match=r"cannot score detection weights .*_eval_not_installed is missing"):
        validate.evaluator_for("detection")
    assert validate.evaluator_for("quantization") is validate.evaluator_for("classification")


# ---------------------------------------------------------------------------------------------- benchmark


def test_benchmark_reports_speed_latency_and_memory(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], allocator_calls: list[bool]
) -> None:
    argv = ["benchmark", "tinynet", "--batch-size", "2", "--input-size", "32", "--iterations", "4", "--warmup", "1"]
    status, out, err = run([*argv, "--threads", "1", "--channels-last", "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    assert (result["batch_size"], result["input_size"], result["threads"], result["channels_last"]) == (2, 32, 1, True)
    assert result["keep_freed_memory"] is False and allocator_calls == []  # a plain process unless asked
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert result["images_per_s"] > 0 and result["peak_rss_mb"] >= result["peak_rss_before_runs_mb"] > 0
    assert not list(hub.get_dir().glob("*.pth"))  # random weights: nothing downloaded

    status, out, _ = run(argv, capsys)  # the text report
    assert status == 0 and "batch 2 x 3 x 32 x 32, 4 iterations after 1 warm-up" in out
    assert [line.split()[0] for line in out.splitlines()[3:]] == [
        "images/s",
        "latency",
        "latency",
        "latency",
        "peak",
        "peak",
    ]
    status, out, _ = run(["benchmark", "tinynet", "--iterations", "1", "--warmup", "0", "--json"], capsys)
    assert status == 0 and json.loads(out)["input_size"] == 64

    status, out, _ = run([*argv, "--keep-freed-memory"], capsys)
    assert status == 0 and allocator_calls == [True] and "freed memory kept" in out.splitlines()[0]


def test_benchmark_says_when_keeping_freed_memory_is_not_possible(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from visionzoo import allocator

    monkeypatch.setattr(allocator, "keep_freed_memory", lambda enable=True: False)  # as on macOS or Windows
    status, out, err = run(
        ["benchmark", "tinynet", "--iterations", "1", "--warmup", "0", "--keep-freed-memory", "--json"], capsys
    )
    assert status == 0 and json.loads(out)["keep_freed_memory"] is False
    assert err == "note: --keep-freed-memory has no effect here: the C library is not glibc\n"


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--batch-size", "0"], "--batch-size, --iterations and --threads must be at least 1"),
        (["--input-size", "0"], "--input-size must be at least 1"),
        (["--device", "nodevice"], "is not a device name"),
        (["--weights", "V5"], "Unknown weights 'V5'"),
    ],
)
def test_benchmark_errors(extra: list[str], fragment: str, zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["benchmark", "tinynet", *extra], capsys)
    assert status == 2 and out == "" and fragment in err and err.count("\n") == 1


def test_benchmark_input_size_follows_the_model_then_the_chosen_weights() -> None:
    """A model built for one size (ViT) is timed at that size; otherwise the chosen entry's crop decides."""
    from types import SimpleNamespace

    from visionzoo.cli.benchmark import _default_input_size

    assert _default_input_size("vit_h_14", SimpleNamespace(input_size=(224, 224)), None) == 224
    plain = SimpleNamespace()
    assert _default_input_size("regnet_y_16gf", plain, None) == 224
    assert _default_input_size("regnet_y_16gf", plain, "IMAGENET1K_SWAG_E2E_V1") == 384
    assert _default_input_size("regnet_y_16gf", plain, "RegNet_Y_16GF_Weights.IMAGENET1K_SWAG_E2E_V1") == 384
    assert _default_input_size("efficientnet_v2_l", plain, None) == 480
