"""Parity of visionzoo.transforms presets with the reference presets, plus input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.reference import transforms as ref_T
from visionzoo.transforms import ImageClassification, InterpolationMode, SemanticSegmentation
from visionzoo.transforms import functional as F

RefImageClassification = ref_T._presets.ImageClassification
RefSemanticSegmentation = ref_T._presets.SemanticSegmentation

# (crop_size, resize_size): usual ratio, crop larger than the resized image (zero padding), crop == resize.
SIZES = [(32, 36), (48, 40), (28, 28)]


def _uint8(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _presets(crop: int, resize: int, mode: str, **kwargs) -> tuple[ImageClassification, RefImageClassification]:
    ours = ImageClassification(crop_size=crop, resize_size=resize, interpolation=InterpolationMode[mode], **kwargs)
    ref = RefImageClassification(
        crop_size=crop, resize_size=resize, interpolation=ref_T.InterpolationMode[mode], **kwargs
    )
    return ours, ref


def _inputs() -> dict[str, object]:
    chw = _uint8(3, 37, 53, seed=1)
    return {
        "uint8_chw": chw,
        "uint8_nchw": _uint8(2, 3, 53, 37, seed=2),
        "float_chw": _uint8(3, 45, 41, seed=3).float() / 255,
        "float64_nchw": torch.rand(2, 3, 30, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(4)),
        "uint8_channels_last": chw.permute(1, 2, 0).contiguous().permute(2, 0, 1),
        "pil_rgb": Image.frombytes("RGB", (61, 43), _uint8(43, 61, 3, seed=5).numpy().tobytes()),
    }


@pytest.mark.parametrize("name", list(_inputs()))
@pytest.mark.parametrize("mode", ["BILINEAR", "BICUBIC"])
@pytest.mark.parametrize(("crop", "resize"), SIZES)
def test_image_classification_matches_reference(name, mode, crop, resize):
    img = _inputs()[name]
    ours, ref = _presets(crop, resize, mode)
    out, expected = ours(img), ref(img)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert out.shape[-3:] == (3, crop, crop)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("antialias", [False, None])
def test_image_classification_antialias_matches_reference(antialias):
    img = _uint8(3, 90, 70)
    ours, ref = _presets(24, 27, "BILINEAR", antialias=antialias)
    torch.testing.assert_close(ours(img), ref(img), rtol=0, atol=1e-3)


def test_image_classification_default_sizes_matches_reference():
    img = _uint8(3, 300, 260)
    ours, ref = ImageClassification(crop_size=224), RefImageClassification(crop_size=224)
    out = ours(img)
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out, ref(img), rtol=0, atol=1e-3)


def test_image_classification_custom_statistics_match_reference():
    img = _uint8(3, 40, 40)
    kwargs = {"crop_size": 16, "resize_size": 20, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    torch.testing.assert_close(ImageClassification(**kwargs)(img), RefImageClassification(**kwargs)(img))


def test_image_classification_attributes_and_repr_match_reference():
    ours, ref = _presets(224, 232, "BICUBIC")
    for name in ("crop_size", "resize_size", "mean", "std", "antialias"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.interpolation.value == ref.interpolation.value
    assert repr(ours) == repr(ref)
    assert "antialias=False" in repr(ImageClassification(crop_size=8, antialias=False))


def test_image_classification_describe():
    text = ImageClassification(crop_size=224, resize_size=232, interpolation=InterpolationMode.BICUBIC).describe()
    for fact in (
        "shorter side is resized to 232",
        "bicubic",
        "with antialiasing",
        "224x224",
        "[0.0, 1.0]",
        "mean=[0.485, 0.456, 0.406]",
        "std=[0.229, 0.224, 0.225]",
    ):
        assert fact in text, fact
    assert "without antialiasing" in ImageClassification(crop_size=8, antialias=False).describe()


def test_image_classification_batch_equals_single_images():
    batch = _uint8(3, 3, 40, 50)
    preset = ImageClassification(crop_size=16, resize_size=20)
    torch.testing.assert_close(preset(batch), torch.stack([preset(img) for img in batch]), rtol=0, atol=0)


def test_image_classification_pil_equals_tensor_path_shape():
    pil = Image.frombytes("RGB", (50, 40), _uint8(40, 50, 3).numpy().tobytes())
    preset = ImageClassification(crop_size=16, resize_size=20)
    out_pil, out_tensor = preset(pil), preset(F.pil_to_tensor(pil))
    assert out_pil.shape == out_tensor.shape == (3, 16, 16)
    # PIL and torch antialias with slightly different arithmetic; they agree to a couple of uint8 steps.
    assert (out_pil - out_tensor).abs().max().item() * 0.226 < 3 / 255


@pytest.mark.parametrize(
    ("img", "error", "message"),
    [
        ([[0.0]], TypeError, "expected a PIL image or a torch.Tensor, got list"),
        ("cat.jpg", TypeError, "got str"),
        (np.zeros((8, 8, 3), np.uint8), TypeError, r"got numpy.ndarray \(from an \(H, W, C\) array"),
        (torch.zeros(8, 8), ValueError, r"\(C, H, W\) image or an \(N, C, H, W\) batch, got a tensor of shape"),
        (torch.zeros(1, 2, 3, 8, 8), ValueError, r"got a tensor of shape \(1, 2, 3, 8, 8\)"),
        (torch.zeros(3, 8, 8, dtype=torch.int64), ValueError, "unsupported dtype torch.int64"),
        (torch.zeros(3, 8, 8, dtype=torch.bool), ValueError, "unsupported dtype torch.bool"),
        (torch.zeros(4, 8, 8), ValueError, r"expected 3 channels, got 4 \(RGBA\? convert to RGB first\)"),
        (torch.zeros(2, 1, 8, 8), ValueError, r"expected 3 channels, got 1 \(grayscale\?"),
        (torch.zeros(5, 8, 8), ValueError, r"expected 3 channels, got 5$"),
        (torch.zeros(8, 8, 3), ValueError, r"expected 3 channels, got 8 \(channels-last\?"),
        (torch.zeros(0, 3, 8, 8), ValueError, r"empty batch: got a tensor of shape \(0, 3, 8, 8\)"),
        (torch.zeros(3, 0, 8), ValueError, r"zero-sized image: got a tensor of shape \(3, 0, 8\)"),
        (torch.zeros(2, 3, 8, 0), ValueError, "zero-sized image"),
        (Image.new("L", (8, 8)), ValueError, r"expected 3 channels, got 1 \(PIL mode 'L'; convert to RGB first"),
        (Image.new("RGBA", (8, 8)), ValueError, r"expected 3 channels, got 4 \(PIL mode 'RGBA'; convert to RGB"),
        (Image.new("YCbCr", (8, 8)), ValueError, r"expected an RGB image, got PIL mode 'YCbCr'"),
        (Image.new("RGB", (0, 8)), ValueError, "zero-sized image: got a PIL image of size 0x8"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:30],
)
def test_image_classification_rejects_bad_input(img, error, message):
    with pytest.raises(error, match=message):
        ImageClassification(crop_size=8)(img)


def test_image_classification_grayscale_preset_accepts_l_images():
    """The channel check follows len(mean): a one-channel preset takes mode L."""
    preset = ImageClassification(crop_size=8, resize_size=10, mean=(0.5,), std=(0.25,))
    img = Image.frombytes("L", (13, 11), _uint8(11, 13).numpy().tobytes())
    expected = RefImageClassification(crop_size=8, resize_size=10, mean=(0.5,), std=(0.25,))(img)
    torch.testing.assert_close(preset(img), expected, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match=r"got 3 \(PIL mode 'RGB'; convert to L first with img.convert\('L'\)\)"):
        preset(img.convert("RGB"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crop_size": 0}, "crop_size must be a positive int, got 0"),
        ({"crop_size": 224, "resize_size": 256.0}, "resize_size must be a positive int, got 256.0"),
        ({"crop_size": 224, "mean": (0.5, 0.5), "std": (0.5,)}, "one value per channel"),
    ],
)
def test_image_classification_rejects_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageClassification(**kwargs)


# ------------------------------------------------------------------------------------ SemanticSegmentation


@pytest.mark.parametrize("name", list(_inputs()))
@pytest.mark.parametrize("mode", ["BILINEAR", "NEAREST"])
@pytest.mark.parametrize("resize", [24, 61, None])
def test_semantic_segmentation_matches_reference(name, mode, resize):
    img = _inputs()[name]
    ours = SemanticSegmentation(resize_size=resize, interpolation=InterpolationMode[mode])
    ref = RefSemanticSegmentation(resize_size=resize, interpolation=ref_T.InterpolationMode[mode])
    out, expected = ours(img), ref(img)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    if resize is not None:
        assert min(out.shape[-2:]) == resize
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("antialias", [False, None])
def test_semantic_segmentation_antialias_and_statistics_match_reference(antialias):
    img = _uint8(3, 90, 70)
    kwargs = {"resize_size": 27, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.3, 0.4), "antialias": antialias}
    torch.testing.assert_close(SemanticSegmentation(**kwargs)(img), RefSemanticSegmentation(**kwargs)(img))


def test_semantic_segmentation_attributes_repr_and_describe():
    ours, ref = SemanticSegmentation(resize_size=520), RefSemanticSegmentation(resize_size=520)
    for name in ("resize_size", "mean", "std", "antialias"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert repr(ours) == repr(ref)
    assert SemanticSegmentation(resize_size=None).resize_size is None
    text = ours.describe()
    assert "shorter side is resized to 520 pixels" in text and "nothing is cropped" in text
    assert "keeps its size" in SemanticSegmentation(resize_size=None).describe()


@pytest.mark.parametrize(
    ("img", "error", "message"),
    [
        (torch.zeros(4, 8, 8), ValueError, r"expected 3 channels, got 4"),
        (torch.zeros(0, 3, 8, 8), ValueError, "empty batch"),
        (torch.zeros(3, 8, 8, dtype=torch.int64), ValueError, "unsupported dtype torch.int64"),
        (Image.new("L", (8, 8)), ValueError, "convert to RGB first"),
        ("cat.jpg", TypeError, "got str"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:30],
)
def test_semantic_segmentation_rejects_bad_input(img, error, message):
    with pytest.raises(error, match=message):
        SemanticSegmentation(resize_size=8)(img)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize_size": 0}, "resize_size must be a positive int, got 0"),
        ({"resize_size": 8, "mean": (0.5, 0.5), "std": (0.5,)}, "one value per channel"),
    ],
)
def test_semantic_segmentation_rejects_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SemanticSegmentation(**kwargs)


@pytest.mark.parametrize("preset", [ImageClassification(crop_size=24), SemanticSegmentation(resize_size=24)])
def test_every_preset_takes_16_bit_images(preset: torch.nn.Module) -> None:
    sixteen = torch.randint(0, 65536, (3, 30, 41), dtype=torch.int32).to(torch.uint16)
    torch.testing.assert_close(preset(sixteen), preset(sixteen.to(torch.float32) / 65535))
