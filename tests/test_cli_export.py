"""``visionzoo export`` and ``visionzoo predict --model FILE.pt2``, on the tiny served zoo (tests/_cli_zoo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests._cli_zoo import CATEGORIES, TinyZoo, bias_probabilities, run, write_images
from visionzoo.cli.export import RECORD
from visionzoo.models import get_model


def _record(path: Path) -> dict:
    extra = {RECORD: ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra[RECORD])


def test_export_pt2_then_predict_with_the_weights_preset(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.pt2"
    status, stdout, err = run(["export", "tinynet", "--format", "pt2", "--out", str(out)], capsys)
    assert status == 0, err
    assert stdout == f"{out}: tinynet with TinyNet_Weights.V2, input 1x3x64x64\n"
    assert "checked against the eager model: max abs deviation 0.00e+00" in err
    record = _record(out)
    assert record["model"] == "tinynet" and record["task"] == "classification"
    assert record["weights"] == "TinyNet_Weights.V2" and record["categories"] == CATEGORIES
    assert record["preset"]["crop_size"] == [64] and record["preset"]["resize_size"] == [72]
    assert record["input_shapes"] == [[1, 3, 64, 64]] and record["dynamic"] is False

    images = [str(p) for p in write_images(tmp_path / "images", 3)]
    status, exported, err = run(["predict", "--model", str(out), "--json", "--batch-size", "2", *images], capsys)
    assert status == 0, err
    status, eager, _ = run(["predict", "--model", "tinynet", "--json", *images], capsys)
    assert status == 0
    assert json.loads(exported) == json.loads(eager)
    top = json.loads(exported)[0]["top"]
    assert [t["label"] for t in top] == CATEGORIES[::-1][:5]
    assert [t["probability"] for t in top] == [round(p, 4) for p in bias_probabilities()[:5]]


def test_dynamic_export_runs_batches_and_a_static_one_of_another_size_is_refused(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(p) for p in write_images(tmp_path / "images", 3)]
    dynamic = tmp_path / "dynamic.pt2"
    argv = ["export", "tinynet", "--weights", "V1", "--format", "pt2", "--dynamic", "--input-size", "48"]
    status, stdout, err = run([*argv, "--out", str(dynamic)], capsys)
    assert status == 0, err
    assert "input 1x3x48x48 (batch and sizes free where the model allows)" in stdout
    program = torch.export.load(dynamic).module()
    eager = get_model("tinynet", weights=zoo.entry("V1")).eval()
    x = torch.randn(3, 3, 64, 64)  # another batch size and size than the export's
    torch.testing.assert_close(program(x), eager(x), atol=1e-4, rtol=1e-4)
    status, exported, err = run(["predict", "--model", str(dynamic), "--json", *images], capsys)
    assert status == 0, err
    status, expected, _ = run(["predict", "--model", "tinynet", "--weights", "V1", "--json", *images], capsys)
    assert json.loads(exported) == json.loads(expected)

    static = tmp_path / "static.pt2"
    status, _, err = run([*argv[:-3], "--input-size", "48", "56", "--out", str(static)], capsys)
    assert status == 0, err
    status, _, err = run(["predict", "--model", str(static), *images], capsys)
    assert status == 2
    assert "exported for 48x56 inputs, but its preset crops to 64x64; export it again with --dynamic" in err


def test_export_onnx_records_the_weights(zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    status, stdout, err = run(["export", "tinynet", "--format", "onnx", "--out", str(out)], capsys)
    assert status == 0, err
    assert stdout == f"{out}: tinynet with TinyNet_Weights.V2, input 1x3x64x64\n"
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props[RECORD])["weights"] == "TinyNet_Weights.V2"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["quantized_resnet18", "--format", "pt2", "--out", "{tmp}/q.pt2"], "export the float model instead"),
        (["tinynet", "--format", "pt2", "--out", "{tmp}/m.onnx"], "--format pt2 writes a .pt2 file"),
        (["tinynet", "--format", "onnx", "--out", "{tmp}"], "a directory; name the .onnx file to write"),
        (["tinynet", "--format", "pt2", "--out", "{tmp}/no/m.pt2"], "the directory does not exist"),
        (["tinynet", "--format", "pt2", "--out", "{tmp}/m.pt2", "--input-size", "1", "2", "3"], "--input-size takes"),
        (["tinynet", "--format", "pt2", "--out", "{tmp}/m.pt2", "--clip-len", "4"], "--clip-len applies to video"),
        (["tinynet", "--weights", "V9", "--format", "pt2", "--out", "{tmp}/m.pt2"], "V9"),
    ],
)
def test_export_errors(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, stdout, err = run(["export", *(a.format(tmp=tmp_path) for a in argv)], capsys)
    assert status == 2 and stdout == ""
    assert err.startswith("visionzoo: error: ") and message in err and len(err.splitlines()) == 1


def test_predict_refuses_programs_it_cannot_run(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(write_images(tmp_path / "images", 1)[0])
    program = torch.export.export(torch.nn.Identity(), (torch.zeros(1, 3, 8, 8),))
    bare, detector = tmp_path / "bare.pt2", tmp_path / "det.pt2"
    torch.export.save(program, bare)
    record = {"task": "keypoint_tracking", "model": "fasterrcnn_resnet50_fpn"}
    torch.export.save(program, detector, extra_files={RECORD: json.dumps(record)})
    cases = [
        (["--model", str(tmp_path / "missing.pt2")], 1, "missing.pt2: no such exported program"),
        (["--model", str(bare)], 2, "not written by `visionzoo export`"),
        (
            ["--model", str(detector)],
            2,
            "predict runs exported classification, segmentation, detection models only so far; "
            f"{detector} holds fasterrcnn_resnet50_fpn, a keypoint_tracking model",
        ),
        (["--model", str(detector), "--weights", "V1"], 2, "holds its weights; --weights and --num-classes"),
    ]
    for argv, expected_status, message in cases:
        status, _, err = run(["predict", *argv, image], capsys)
        assert status == expected_status and message in err, err


def test_export_a_video_model_with_random_weights_then_predict_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r3d.pt2"
    argv = ["export", "r3d_18", "--weights", "none", "--format", "pt2", "--out", str(out), "--dynamic"]
    status, stdout, err = run([*argv, "--input-size", "32", "--clip-len", "4"], capsys)
    assert status == 0, err
    assert (
        stdout
        == f"{out}: r3d_18 with random weights, input 1x3x4x32x32 (batch and sizes free where the model allows)\n"
    )
    record = _record(out)
    assert record["task"] == "video" and record["weights"] is None
    assert record["preset"]["class"] == "VideoClassification" and record["preset"]["crop_size"] == [112, 112]
    program = torch.export.load(out).module()
    assert program(torch.randn(2, 3, 4, 40, 48)).shape == (2, 400)  # batch, height and width free
    image = str(write_images(tmp_path / "images", 1)[0])
    status, _, err = run(["predict", "--model", str(out), image], capsys)
    assert status == 2 and "holds r3d_18, a video model (run it with --model r3d_18 instead)" in err


def test_export_a_detector_at_its_transforms_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ssdlite.pt2"
    argv = ["export", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--format", "pt2", "--out", str(out)]
    status, stdout, err = run(argv, capsys)
    assert status == 0, err
    assert stdout == f"{out}: ssdlite320_mobilenet_v3_large with random weights, input 3x320x320\n"
    assert "max abs deviation 0.00e+00" in err
    record = _record(out)
    assert record["task"] == "detection" and record["input_shapes"] == [[3, 320, 320]]
    detections = torch.export.load(out).module()([torch.rand(3, 320, 320)])
    assert set(detections[0]) == {"boxes", "scores", "labels"}


SEGMENTER = "lraspp_mobilenet_v3_large"  # the smallest segmentation model


@pytest.fixture(scope="module")
def segmenter_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights (classifier biases zeroed, so that several classes win somewhere) as a local checkpoint."""
    from visionzoo.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    state = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
    state["classifier.low_classifier.bias"].zero_()
    state["classifier.high_classifier.bias"].zero_()
    path = tmp_path_factory.mktemp("weights") / "lraspp_random.pth"
    torch.save(state, path)
    return path


def _segment(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Run ``predict`` with a segmentation model or program; its results, the pictures read back as pixels."""
    import numpy as np
    from PIL import Image

    status, stdout, err = run(["predict", *argv, "--json", "--quiet", "--out", str(out)], capsys)
    assert status == 0, err
    results = json.loads(stdout)
    for result in results:
        assert Path(result.pop("picture")).parent == out
    pictures = sorted(out.iterdir())
    assert [p.name for p in pictures] == sorted(f"{Path(r['image']).stem}.{SEGMENTER}.png" for r in results)
    return [*results, *(np.asarray(Image.open(p)).tolist() for p in pictures)]


def test_export_a_segmentation_model_then_predict_draws_what_the_model_by_name_draws(
    segmenter_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tall,) = write_images(tmp_path / "images", 1, size=(60, 90))
    (square,) = write_images(tmp_path / "square", 1, seed=1, size=(70, 70))
    images = [str(tall), str(square.rename(tmp_path / "images" / "square.png"))]
    weights = ["--weights", str(segmenter_checkpoint)]
    by_name = _segment(["--model", SEGMENTER, *weights, *images], tmp_path / "eager", capsys)
    assert len(by_name[0]["classes"]) > 1

    # Dynamic: the preset as for the model by name (the shorter side to 520, the aspect ratio kept).
    dynamic = tmp_path / "dynamic.pt2"
    argv = ["export", SEGMENTER, *weights, "--format", "pt2", "--dynamic", "--input-size", "64", "--out", str(dynamic)]
    status, _, err = run(argv, capsys)
    assert status == 0, err
    assert _record(dynamic)["preset"]["class"] == "SemanticSegmentation"
    assert _segment(["--model", str(dynamic), *images], tmp_path / "dynamic", capsys) == by_name

    # Static, at the preset's size: every image is resized to 520x520, which a square image is by name too.
    static = tmp_path / "static.pt2"
    status, _, err = run(["export", SEGMENTER, *weights, "--format", "pt2", "--out", str(static)], capsys)
    assert status == 0, err
    assert _record(static)["input_shapes"] == [[1, 3, 520, 520]]
    exported = _segment(["--model", str(static), images[1]], tmp_path / "static", capsys)
    assert exported == [by_name[1], by_name[3]]
    (result, _) = _segment(["--model", str(static), images[0]], tmp_path / "static_tall", capsys)
    assert sum(c["share"] for c in result["classes"]) == pytest.approx(1.0, abs=1e-3)


def test_a_static_segmentation_program_of_another_size_than_its_preset_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(write_images(tmp_path / "images", 1)[0])
    program = torch.export.export(torch.nn.Identity(), (torch.zeros(1, 3, 64, 48),))
    record = {
        "task": "segmentation",
        "model": SEGMENTER,
        "weights": None,
        "preset": {"class": "SemanticSegmentation", "resize_size": [520], "mean": [0.5] * 3, "std": [0.25] * 3},
        "input_shapes": [[1, 3, 64, 48]],
        "dynamic": False,
        "categories": [],
    }
    path = tmp_path / "small.pt2"
    torch.export.save(program, path, extra_files={RECORD: json.dumps(record)})
    status, _, err = run(["predict", "--model", str(path), image], capsys)
    assert status == 2
    assert "exported for 64x48 inputs, but its preset resizes the shorter side to 520; export it again" in err


def test_an_exported_detector_predicts_what_the_model_by_name_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from visionzoo.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    checkpoint = tmp_path / "ssdlite_random.pth"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict(), checkpoint)
    program = tmp_path / "ssdlite.pt2"
    argv = ["export", "ssdlite320_mobilenet_v3_large", "--weights", str(checkpoint), "--format", "pt2"]
    status, _, err = run([*argv, "--out", str(program)], capsys)
    assert status == 0, err
    (square,) = write_images(tmp_path / "images", 1, size=(320, 320))  # the program's own size
    (wide,) = write_images(tmp_path / "wide", 1, seed=1, size=(200, 90))
    options = ["--threshold", "0", "--topk", "5", "--json", "--quiet"]

    def detections(model: list[str], image: Path, out: str) -> list[dict]:
        status, stdout, err = run(["predict", *model, str(image), *options, "--out", str(tmp_path / out)], capsys)
        assert status == 0, err
        (result,) = json.loads(stdout)
        assert Path(result["picture"]).is_file()
        return result["detections"]

    by_name = ["--model", "ssdlite320_mobilenet_v3_large", "--weights", str(checkpoint)]
    expected = detections(by_name, square, "eager")
    assert len(expected) == 5
    assert detections(["--model", str(program)], square, "exported") == expected
    for found in detections(["--model", str(program)], wide, "wide"):  # resized to 320x320 and boxes mapped back
        x1, y1, x2, y2 = found["box"]
        assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 90  # write_images takes (width, height)
