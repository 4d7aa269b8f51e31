"""``visionzoo validate`` on segmentation weights: a Pascal VOC layout of generated images and palette masks, with
mean IoU and pixel accuracy recomputed here from a confusion matrix built with numpy."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests._cli_zoo import run
from tests._eval_zoo import install
from visionzoo.models._meta import _VOC_CATEGORIES
from visionzoo.transforms import SemanticSegmentation

PUBLISHED = {"miou": 61.0, "pixel_acc": 90.5}
# A VOC-like palette: index i is drawn in a colour that is not (i, i, i), so reading colours would go wrong.
PALETTE = [value for i in range(256) for value in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def pattern(height: int, width: int) -> np.ndarray:
    """The class the tiny model predicts at each pixel of a (height, width) input."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows // 3 + cols // 4) % 3


class PatternSegmenter(nn.Module):
    """Predicts :func:`pattern` whatever the image (plus a zero bias, the checkpoint's one tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(21))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        classes = torch.from_numpy(pattern(*x.shape[-2:]))
        scores = nn.functional.one_hot(classes, 21).permute(2, 0, 1).float() + self.bias[:, None, None]
        return {"out": scores[None].expand(x.shape[0], -1, -1, -1) + 0 * x.mean()}


@pytest.fixture
def tinyseg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        monkeypatch,
        tmp_path / "weights",
        name="tinyseg",
        task="segmentation",
        make=PatternSegmenter,
        transforms=partial(SemanticSegmentation, resize_size=40),  # 30x20 pictures become 60x40
        meta={"categories": _VOC_CATEGORIES, "_metrics": {"COCO-val2017-VOC-labels": PUBLISHED}},
    )


def write_voc(root: Path, names: list[str], listed: list[str]) -> dict[str, np.ndarray]:
    """Images (30x20 JPEGs) and palette masks (classes 0, 1, 2, 5 and 255) for ``names``; ``listed`` in val.txt."""
    rng = np.random.default_rng(0)
    masks = {}
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        mask = rng.choice(np.array([0, 1, 2, 5, 255], dtype=np.uint8), size=(20, 30), p=[0.3, 0.25, 0.25, 0.1, 0.1])
        picture = Image.fromarray(mask)
        picture.putpalette(PALETTE)
        picture.save(root / "SegmentationClass" / f"{name}.png")
        masks[name] = mask
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{n}\n" for n in listed))
    return masks


def expected_figures(masks: list[np.ndarray]) -> dict[str, float]:
    """mIoU and pixel accuracy of the pattern model on ``masks``, worked out with numpy: each mask doubled in size
    (nearest neighbour), 255 left out, a 21x21 confusion matrix, IoU = TP / (TP + FP + FN) over the classes seen."""
    counts = np.zeros((21, 21), dtype=np.int64)
    for mask in masks:
        target = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1).astype(np.int64)
        predicted = pattern(*target.shape)
        keep = target != 255
        np.add.at(counts, (target[keep], predicted[keep]), 1)
    tp = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - tp
    seen = union > 0
    return {"miou": float(np.mean(100 * tp[seen] / union[seen])), "pixel_acc": float(100 * tp.sum() / counts.sum())}


def test_validate_segmentation_on_the_voc_layout(
    tinyseg: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "VOC2012"
    masks = write_voc(root, ["a", "b", "c", "d"], listed=["d", "a", "b"])  # c is not in val.txt
    (root / "JPEGImages" / "d.jpg").write_bytes(b"\xff\xd8 truncated")  # skipped and counted
    status, out, err = run(["validate", "tinyseg", "--data", str(root), "--json", "--batch-size", "2"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["images"] == 2 and report["skipped"] == 1 and "d.jpg: cannot read image" in report["skipped_items"][0]
    assert report["measured"] == pytest.approx(expected_figures([masks["a"], masks["b"]]))
    assert report["meta"] == PUBLISHED
    assert report["iou"]["__background__"] is not None and report["iou"]["cow"] is None  # class 10: never seen
    assert err.count("visionzoo: skipped:") == 1

    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("c\n")
    status, out, err = run(["validate", "tinyseg", "--data", str(root), "--split", "train", "--quiet"], capsys)
    assert status == 0, err
    lines = out.splitlines()
    scored = 4 * int((masks["c"] != 255).sum())  # each mask pixel becomes 4; 255 is left out
    assert lines[0] == f"Tinyseg_Weights.V1 on {root}: 1 images, {scored} pixels scored"
    figures = expected_figures([masks["c"]])
    assert lines[1].split() == ["metric", "measured", "meta"]
    assert lines[3].split() == ["mIoU", f"{figures['miou']:.3f}", "61.000"]
    assert lines[4].split() == ["pixel", "accuracy", f"{figures['pixel_acc']:.3f}", "90.500"]
    assert "1 images in" in lines[5] and lines[5].endswith("0 unreadable, skipped")


def test_validate_segmentation_layout_errors(tinyseg: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "VOC2012"
    write_voc(root, ["a", "b"], listed=["a", "b", "z"])
    cases = []
    status, _, err = run(["validate", "tinyseg", "--data", str(root)], capsys)
    cases.append((status, err, f"{root / 'JPEGImages' / 'z.jpg'}: no such image (the mask or list names 'z')"))
    status, _, err = run(["validate", "tinyseg", "--data", str(root), "--split", "test"], capsys)
    split_file = root / "ImageSets" / "Segmentation" / "test.txt"
    cases.append((status, err, f"{split_file}: no such file (--split test; the lists there: val)"))
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    Image.new("RGB", (30, 20), (128, 0, 0)).save(root / "SegmentationClass" / "b.png")  # a colour mask
    status, _, err = run(["validate", "tinyseg", "--data", str(root), "--quiet"], capsys)
    cases.append((status, err, f"{root / 'SegmentationClass' / 'b.png'}: a RGB image; masks must hold class indices"))
    Image.new("L", (30, 21), 40).save(root / "SegmentationClass" / "b.png")  # class 40 of 21, wrong size
    status, _, err = run(["validate", "tinyseg", "--data", str(root), "--quiet"], capsys)
    cases.append((status, err, "b.png: 30x21 pixels, but its image b.jpg has 30x20"))
    Image.new("L", (30, 20), 40).save(root / "SegmentationClass" / "b.png")
    status, _, err = run(["validate", "tinyseg", "--data", str(root), "--quiet"], capsys)
    cases.append((status, err, "b.png: the target holds class 40, but there are 21 classes (0..20; 255 marks"))
    status, _, err = run(["validate", "tinyseg", "--data", str(root / "JPEGImages")], capsys)
    cases.append((status, err, f"{root / 'JPEGImages' / 'JPEGImages'}: no such directory ({root / 'JPEGImages'} must"))
    nowhere = tmp_path / "plain"
    write_voc(nowhere, ["a"], listed=[])
    (nowhere / "ImageSets" / "Segmentation" / "val.txt").unlink()
    (nowhere / "ImageSets" / "Segmentation").rmdir()
    status, _, err = run(["validate", "tinyseg", "--data", str(nowhere), "--split", "val"], capsys)
    cases.append((status, err, f"{nowhere / 'ImageSets' / 'Segmentation'}: no such directory (--split val names"))
    for status, err, fragment in cases:
        assert status == 2 and fragment in err and err.count("\n") == 1, (fragment, err)


class PixelSegmenter(nn.Module):
    """Scores each pixel's classes from its own (normalised) colour: a fixed random 1x1 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 21, 1)
        generator = torch.Generator().manual_seed(3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(21, 3, 1, 1, generator=generator))
            self.conv.bias.copy_(torch.randn(21, generator=generator) * 0.1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def test_validate_segmentation_follows_the_reference_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference's evaluation with weights: the image through the weights' preset (the reference's own here), the
    mask resized to its size with the reference's nearest-neighbour resize; predictions depend on every pixel's
    colour, so the preset's resizing and normalisation must match for the figures to agree."""
    from tests.reference import functional as ref_F
    from tests.reference import transforms as ref_T

    install(
        monkeypatch,
        tmp_path / "weights",
        name="pixelseg",
        task="segmentation",
        make=PixelSegmenter,
        transforms=partial(SemanticSegmentation, resize_size=28),  # 30x20 pictures become 42x28: a downscale
        meta={"categories": _VOC_CATEGORIES, "_metrics": {"COCO-val2017-VOC-labels": PUBLISHED}},
    )
    root = tmp_path / "VOC2012"
    names = ["a", "b", "c"]
    write_voc(root, names, listed=names)
    model = PixelSegmenter().eval()
    reference_preset = ref_T._presets.SemanticSegmentation(resize_size=28)
    counts = np.zeros((21, 21), dtype=np.int64)
    for name in names:
        with Image.open(root / "JPEGImages" / f"{name}.jpg") as im:
            image = reference_preset(im.convert("RGB"))
        with Image.open(root / "SegmentationClass" / f"{name}.png") as mask:
            size = list(image.shape[-2:])
            target = np.asarray(ref_F.resize(mask, size, interpolation=ref_F.InterpolationMode.NEAREST)).astype(int)
        with torch.no_grad():
            predicted = model(image[None])["out"].argmax(dim=1)[0].numpy()
        keep = target != 255
        np.add.at(counts, (target[keep], predicted[keep]), 1)
    tp = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - tp
    expected = {
        "miou": float(np.mean(100 * tp[union > 0] / union[union > 0])),
        "pixel_acc": float(100 * tp.sum() / counts.sum()),
    }
    status, out, err = run(["validate", "pixelseg", "--data", str(root), "--json", "--quiet"], capsys)
    assert status == 0, err
    assert json.loads(out)["measured"] == pytest.approx(expected)
    assert len(set(np.flatnonzero(counts.sum(0)))) > 3  # the model predicts several classes
