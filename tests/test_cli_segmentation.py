"""Issue 28: ``visionzoo predict`` with segmentation models (shares of the pixels, a PNG per input with a legend,
``--out DIR``), and segmentation metrics under readable names in ``info`` and ``list --weights``.

The model is the real ``lraspp_mobilenet_v3_large`` (the smallest segmentation model), randomly initialised
(classifier biases zeroed, so that several classes win somewhere rather than one everywhere) and saved as a
local checkpoint: whatever its classes, the shares must add up and the pictures must fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests._cli_zoo import picture_blocks, run, write_images
from visionzoo.cli._segmentation import LEGEND_PAD, LEGEND_ROW
from visionzoo.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.jpg")
MODEL = "lraspp_mobilenet_v3_large"
VOC = LRASPP_MobileNet_V3_Large_Weights.DEFAULT.meta["categories"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    state = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).state_dict()
    state["classifier.low_classifier.bias"].zero_()
    state["classifier.high_classifier.bias"].zero_()
    path = tmp_path_factory.mktemp("weights") / "lraspp_random.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def small_image(tmp_path: Path) -> str:
    (path,) = write_images(tmp_path / "small", 1, size=(48, 40))
    return str(path)


def predict(inputs: list[str], checkpoint: Path, *extra: str) -> list[str]:
    return ["predict", *inputs, "--model", MODEL, "--weights", str(checkpoint), "--quiet", *extra]


def check_picture(picture: Path, source: str) -> int:
    """The PNG is the source's width (more when a legend name is wider), and its height plus a legend of whole
    rows; returns the number of rows."""
    with Image.open(source) as original:
        width, height = original.size
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.mode == "RGB" and drawn.width >= width
        assert drawn.width == width or drawn.width < 150  # widened for a narrow picture only
        legend = drawn.height - height - LEGEND_PAD
        assert legend >= LEGEND_ROW and legend % LEGEND_ROW == 0
        return legend // LEGEND_ROW


def test_predict_writes_pictures_and_prints_shares(
    checkpoint: Path,
    small_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is ./predictions
    status, out, err = run(predict([CAT, small_image], checkpoint), capsys)
    assert status == 0, err
    pictures = (tmp_path / "predictions").resolve()
    expected = {CAT: pictures / f"chelsea.{MODEL}.png", small_image: pictures / f"img0.{MODEL}.png"}
    blocks = picture_blocks(out)
    assert list(blocks) == [CAT, small_image]
    for image, (picture, lines) in blocks.items():
        assert Path(picture).resolve() == expected[image]
        rows = check_picture(expected[image], image)
        assert len(lines) > 3 and rows > 1  # several classes, whose legend takes more than one row
        shares = [float(line.split()[-1].rstrip("%")) for line in lines]
        assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(100, abs=0.05 * len(shares))

    # --json: the same shares (fractions), the picture's path, the classes by index and VOC name.
    status, out, err = run(predict([CAT, small_image], checkpoint, "--json"), capsys)
    assert status == 0, err
    results = json.loads(out)
    assert [r["image"] for r in results] == [CAT, small_image]
    for result in results:
        assert Path(result["picture"]).resolve() == expected[result["image"]]
        assert sum(item["share"] for item in result["classes"]) == pytest.approx(1, abs=1e-3)
        assert all(item["label"] == VOC[item["index"]].strip("_") for item in result["classes"])

    # --threshold leaves out the classes with a smaller share.
    status, out, _ = run(predict([CAT], checkpoint, "--json", "--threshold", "0.2"), capsys)
    (result,) = json.loads(out)
    assert status == 0 and result["classes"] == [c for c in results[0]["classes"] if c["share"] >= 0.2]


def test_out_dir_is_created_and_names_do_not_collide(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_images(tmp_path / "a", 1, size=(40, 32))[0]
    second = write_images(tmp_path / "b", 1, seed=1, size=(40, 32))[0]  # the same stem: img0
    out_dir = tmp_path / "new" / "pictures"
    status, out, err = run(predict([str(first), str(second)], checkpoint, "--out", str(out_dir)), capsys)
    assert status == 0, err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [f"img0-2.{MODEL}.png", f"img0.{MODEL}.png"]
    check_picture(out_dir / names[0], str(second))
    assert not (tmp_path / "predictions").exists()


def test_bad_out_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import visionzoo.models

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr(visionzoo.models, "get_model", no_build)
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"")
    for out, fragment in (
        (existing, "an existing file; segmentation writes pictures, so --out names a directory"),
        (tmp_path / "shares.json", "not a .json file (--json prints the results as JSON)"),
        (existing / "sub", "cannot create the directory"),
    ):
        status, stdout, err = run(["predict", CAT, "--model", "fcn_resnet50", "--out", str(out)], capsys)
        assert (status, stdout) == (2, "") and fragment in err and err.count("\n") == 1, err


def test_an_unreadable_input_is_skipped_and_counted(
    checkpoint: Path, small_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    out_dir = tmp_path / "out"
    argv = ["predict", small_image, str(fake), "--model", MODEL, "--weights", str(checkpoint), "--out", str(out_dir)]
    status, out, err = run(argv, capsys)
    assert status == 1 and out.startswith(f"{small_image} -> {out_dir / f'img0.{MODEL}.png'}\n")
    assert f"visionzoo: {fake}: not a JPEG, PNG" in err
    assert err.splitlines()[-1] == f"visionzoo: 1 of 2 images predicted, 1 failed; pictures in {out_dir}/"
    assert [p.name for p in out_dir.iterdir()] == [f"img0.{MODEL}.png"]


def test_info_and_list_show_segmentation_metrics_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    status, card, _ = run(["info", MODEL], capsys)
    assert status == 0 and "task: segmentation" in card
    assert "COCO-val2017-VOC-labels mIoU=57.900, pixel accuracy=91.200" in card

    status, out, _ = run(["list", "--task", "segmentation", "--weights"], capsys)
    header, _, *rows = out.splitlines()
    assert status == 0 and header.split()[:5] == ["model", "weights", "mIoU", "pixel", "accuracy"]
    row = next(line.split() for line in rows if line.startswith(MODEL))
    assert row[1:5] == ["COCO_WITH_VOC_LABELS_V1", "(default)", "57.900", "91.200"]
