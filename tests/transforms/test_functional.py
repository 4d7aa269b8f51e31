"""Parity of visionzoo.transforms.functional with the reference's functional transforms, plus error cases."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tests.reference import functional as ref_F
from visionzoo.transforms import functional as F
from visionzoo.transforms.functional import InterpolationMode

TENSOR_MODES = ["NEAREST", "NEAREST_EXACT", "BILINEAR", "BICUBIC"]
ALL_MODES = [mode.name for mode in InterpolationMode]


def _uint8(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _float(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _pil(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    rgba = Image.frombytes("RGBA", (width, height), _uint8(height, width, 4, seed=seed).numpy().tobytes())
    return rgba.convert(mode)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    # torch < 2.5 implements few ops for uint16, torch.equal included: compare those as int32.
    if a.dtype == torch.uint16:
        a, b = a.to(torch.int32), b.to(torch.int32)
    return torch.equal(a, b)


def _pil_image_data(img: Image.Image) -> tuple[str, tuple[int, int], bytes]:
    return img.mode, img.size, img.tobytes()


def test_interpolation_mode_matches_reference():
    assert {m.name: m.value for m in InterpolationMode} == {m.name: m.value for m in ref_F.InterpolationMode}


def test_import_does_not_load_pil():
    code = "import sys, visionzoo.transforms; assert 'PIL' not in sys.modules, 'PIL imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize("mode", TENSOR_MODES)
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize(
    ("shape", "size"),
    [((3, 37, 53), 24), ((3, 53, 37), [30]), ((2, 3, 60, 45), (20, 70)), ((1, 40, 40), 100), ((3, 37, 53), 53)],
)
def test_resize_tensor_matches_reference(mode, antialias, dtype, shape, size):
    img = _uint8(*shape) if dtype == torch.uint8 else _float(*shape)
    ours = F.resize(img, size, interpolation=InterpolationMode[mode], antialias=antialias)
    ref = ref_F.resize(img, size, interpolation=ref_F.InterpolationMode[mode], antialias=antialias)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_resize_channels_last_input_matches_reference():
    img = _uint8(45, 61, 3).permute(2, 0, 1)  # what pil_to_tensor returns
    ours = F.resize(img, 32, interpolation=InterpolationMode.BICUBIC)
    ref = ref_F.resize(img, 32, interpolation=ref_F.InterpolationMode.BICUBIC)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("pil_mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [24, (50, 31), 90])
def test_resize_pil_matches_reference(mode, pil_mode, size):
    img = _pil(pil_mode, 53, 37)
    ours = F.resize(img, size, interpolation=InterpolationMode[mode])
    ref = ref_F.resize(img, size, interpolation=ref_F.InterpolationMode[mode])
    assert _pil_image_data(ours) == _pil_image_data(ref)


@pytest.mark.parametrize("max_size", [33, 40, 80])
@pytest.mark.parametrize("shape", [(3, 37, 77), (3, 77, 37)])
def test_resize_max_size_matches_reference(max_size, shape):
    img = _uint8(*shape)
    ours = F.resize(img, 32, max_size=max_size)
    ref = ref_F.resize(img, 32, max_size=max_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    pil = F.to_pil_image(img)
    assert F.resize(pil, [32], max_size=max_size).size == ref_F.resize(pil, [32], max_size=max_size).size


def test_resize_pil_integer_interpolation_code():
    img = _pil("RGB", 40, 30)
    ours = F.resize(img, 20, interpolation=Image.Resampling.LANCZOS)
    ref = ref_F.resize(img, 20, interpolation=ref_F.InterpolationMode.LANCZOS)
    assert _pil_image_data(ours) == _pil_image_data(ref)


def test_resize_same_size_returns_input():
    img = _uint8(3, 32, 48)
    assert F.resize(img, 32) is img
    pil = F.to_pil_image(img)
    assert F.resize(pil, [32, 48]) is pil


def test_resize_any_leading_dims():
    """(H, W) and (N, T, C, H, W) inputs, which the reference's resize rejects, resize per image."""
    video = _uint8(2, 3, 3, 30, 40)
    out = F.resize(video, 20, interpolation=InterpolationMode.BICUBIC)
    assert out.shape == (2, 3, 3, 20, 26)
    expected = ref_F.resize(video.flatten(0, 1), 20, interpolation=ref_F.InterpolationMode.BICUBIC)
    torch.testing.assert_close(out.flatten(0, 1), expected, rtol=0, atol=0)
    plane = video[0, 0, 0]
    torch.testing.assert_close(F.resize(plane, 20), ref_F.resize(plane[None], 20)[0], rtol=0, atol=0)


def test_resize_errors():
    img = _uint8(3, 20, 30)
    with pytest.raises(ValueError, match="must be greater than the shorter-side size"):
        F.resize(img, 20, max_size=20)
    with pytest.raises(ValueError, match="max_size is only allowed"):
        F.resize(img, (20, 20), max_size=40)
    with pytest.raises(ValueError, match="sequence of 1 or 2 ints"):
        F.resize(img, (1, 2, 3))
    with pytest.raises(ValueError, match="positive ints"):
        F.resize(img, 0)
    with pytest.raises(ValueError, match="only available for PIL images"):
        F.resize(img, 10, interpolation=InterpolationMode.LANCZOS)
    with pytest.raises(TypeError, match="interpolation must be"):
        F.resize(img, 10, interpolation=2.5)
    with pytest.raises(TypeError, match="got list"):
        F.resize([[1, 2]], 10)
    with pytest.warns(UserWarning, match="PIL always antialiases"):
        F.resize(F.to_pil_image(img), 10, antialias=False)


# ----------------------------------------------------------------------------------------------- crops


CROP_CASES = [
    ((37, 53), (32, 32)),  # odd margins on both sides
    ((38, 53), (35, 50)),
    ((40, 41), 20),
    ((20, 30), (33, 30)),  # padding in height only
    ((20, 30), (26, 41)),  # padding in both
    ((21, 30), (10, 35)),  # crop height, pad width
    ((16, 16), [16]),
]


@pytest.mark.parametrize(("hw", "output_size"), CROP_CASES)
def test_center_crop_tensor_matches_reference(hw, output_size):
    img = _uint8(2, 3, *hw)
    ours, ref = F.center_crop(img, output_size), ref_F.center_crop(img, output_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize(("hw", "output_size"), CROP_CASES)
@pytest.mark.parametrize("pil_mode", ["RGB", "L", "RGBA"])
def test_center_crop_pil_matches_reference(hw, output_size, pil_mode):
    img = _pil(pil_mode, hw[1], hw[0])
    assert _pil_image_data(F.center_crop(img, output_size)) == _pil_image_data(ref_F.center_crop(img, output_size))


@pytest.mark.parametrize(("box"), [(-3, -4, 10, 12), (5, 6, 30, 40), (-50, 0, 10, 10), (2, 3, 4, 5)])
def test_crop_matches_reference(box):
    img = _uint8(3, 20, 24)
    torch.testing.assert_close(F.crop(img, *box), ref_F.crop(img, *box), rtol=0, atol=0)


def test_center_crop_errors():
    with pytest.raises(ValueError, match="must be positive"):
        F.center_crop(_uint8(3, 8, 8), 0)
    with pytest.raises(ValueError, match="sequence of 1 or 2 ints"):
        F.center_crop(_uint8(3, 8, 8), (1, 2, 3))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., H, W\)"):
        F.center_crop(torch.zeros(5), 2)


# ------------------------------------------------------------------------------------------- normalize


@pytest.mark.parametrize("shape", [(3, 9, 7), (2, 3, 9, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_matches_reference(shape, dtype):
    img = _float(*shape).to(dtype)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    torch.testing.assert_close(F.normalize(img, mean, std), ref_F.normalize(img, mean, std), rtol=0, atol=0)


def test_normalize_inplace():
    img = _float(3, 4, 4)
    before = img.clone()
    out = F.normalize(img, [0.5] * 3, [0.25] * 3)
    torch.testing.assert_close(img, before, rtol=0, atol=0)
    same = F.normalize(img, [0.5] * 3, [0.25] * 3, inplace=True)
    assert same is img
    torch.testing.assert_close(img, out, rtol=0, atol=0)


def test_normalize_errors():
    with pytest.raises(TypeError, match="floating-point tensor, got torch.uint8"):
        F.normalize(_uint8(3, 4, 4), [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match="std evaluated to zero"):
        F.normalize(_float(3, 4, 4), [0.5] * 3, [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="mean must hold 1 or 3 values"):
        F.normalize(_float(3, 4, 4), [0.5] * 4, [0.5] * 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        F.normalize(_float(4, 4), [0.5], [0.5])


# ----------------------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"])
def test_pil_to_tensor_matches_reference(mode):
    if mode in ("I", "F", "I;16"):
        values = _uint8(13, 17).numpy().astype(np.int32) * 250 - 1000 * (mode != "I;16")
        img = Image.fromarray(values.astype({"I": np.int32, "F": np.float32, "I;16": np.uint16}[mode]))
        assert img.mode == mode
    else:
        img = _pil(mode, 17, 13)
    ours, ref = F.pil_to_tensor(img), ref_F.pil_to_tensor(img)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert _same(ours, ref)


def test_pil_to_tensor_big_endian_16_bit():
    values = (_uint8(5, 7).to(torch.int32) * 257).numpy().astype(">u2")
    img = Image.frombytes("I;16B", (7, 5), values.tobytes())
    assert torch.equal(F.pil_to_tensor(img)[0].to(torch.int32), torch.from_numpy(values.astype(np.int32)))


def test_pil_to_tensor_errors():
    with pytest.raises(TypeError, match="expected a PIL image, got torch.Tensor"):
        F.pil_to_tensor(_uint8(3, 4, 4))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_pil_round_trip_matches_reference(mode):
    img = _pil(mode, 29, 31)
    tensor = F.pil_to_tensor(img)
    assert _pil_image_data(F.to_pil_image(tensor)) == _pil_image_data(img)
    assert _pil_image_data(F.to_pil_image(tensor)) == _pil_image_data(ref_F.to_pil_image(tensor))


def test_pil_round_trip_16_bit():
    """The reference cannot turn the uint16 tensor back into an image; visionzoo maps it to I;16."""
    img = Image.fromarray(_uint8(11, 13).numpy().astype(np.uint16) * 257)
    assert img.mode == "I;16"
    tensor = F.pil_to_tensor(img)
    assert _same(tensor, ref_F.pil_to_tensor(img))
    assert _pil_image_data(F.to_pil_image(tensor)) == _pil_image_data(img)


@pytest.mark.parametrize(
    ("pic", "mode"),
    [
        (_float(1, 9, 11), None),
        (_float(3, 9, 11), None),
        (_float(4, 9, 11), None),
        (_float(9, 11), None),
        (_float(1, 9, 11), "F"),
        (_uint8(2, 9, 11), None),
        (_uint8(3, 9, 11), "YCbCr"),
        (_uint8(4, 9, 11), "CMYK"),
        (_uint8(4, 9, 11), "RGBX"),
        (_uint8(9, 11), None),
        ((_uint8(1, 9, 11).to(torch.int16) - 100) * 100, None),
        (_uint8(1, 9, 11).to(torch.int32) * 100000, None),
        (_uint8(9, 11, 3).numpy(), None),
        (_float(9, 11, 4).numpy(), None),
        (_float(9, 11).numpy(), "F"),
    ],
    ids=lambda v: str(tuple(v.shape)) + str(v.dtype) if hasattr(v, "shape") else str(v),
)
def test_to_pil_image_matches_reference(pic, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the reference's Pillow mode workaround
        ref = ref_F.to_pil_image(pic, mode)
    assert _pil_image_data(F.to_pil_image(pic, mode)) == _pil_image_data(ref)


def test_to_pil_image_errors():
    with pytest.raises(TypeError, match="expected a torch.Tensor or numpy.ndarray, got list"):
        F.to_pil_image([[0, 1]])
    with pytest.raises(ValueError, match="at most 4 channels, got 5"):
        F.to_pil_image(_uint8(5, 4, 4))
    with pytest.raises(ValueError, match=r"got shape \(1, 3, 4, 4\)"):
        F.to_pil_image(_uint8(1, 3, 4, 4))
    with pytest.raises(ValueError, match="mode 'RGBA' does not fit 3-channel data"):
        F.to_pil_image(_uint8(3, 4, 4), mode="RGBA")
    with pytest.raises(ValueError, match="mode 'F' does not fit single-channel torch.uint8"):
        F.to_pil_image(_uint8(4, 4), mode="F")
    with pytest.raises(TypeError, match="must be uint8"):
        F.to_pil_image(_uint8(3, 4, 4).to(torch.int32))
    with pytest.raises(TypeError, match="no PIL mode holds single-channel torch.bool"):
        F.to_pil_image(torch.zeros(4, 4, dtype=torch.bool))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (torch.uint8, torch.float32),
        (torch.uint8, torch.float64),
        (torch.float32, torch.uint8),
        (torch.float64, torch.int32),
        (torch.float32, torch.float16),
        (torch.uint8, torch.int16),
        (torch.uint8, torch.int32),
        (torch.int32, torch.uint8),
        (torch.int16, torch.int32),
    ],
)
def test_convert_image_dtype_matches_reference(src, dst):
    img = _uint8(3, 8, 8).to(src) if not src.is_floating_point else _float(3, 8, 8).to(src)
    if src == torch.int32:
        img = img * 8_000_000
    ours, ref = F.convert_image_dtype(img, dst), ref_F.convert_image_dtype(img, dst)
    assert ours.dtype == ref.dtype == dst
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_convert_image_dtype_identity_and_errors():
    img = _float(3, 4, 4)
    assert F.convert_image_dtype(img, torch.float32) is img
    with pytest.raises(ValueError, match="cannot be performed safely"):
        F.convert_image_dtype(img, torch.int32)
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        F.convert_image_dtype(np.zeros((3, 4, 4)), torch.float32)


def test_dimensions_helpers():
    img = _uint8(2, 3, 5, 7)
    pil = F.to_pil_image(img[0])
    for x in (img, pil):
        assert F.get_dimensions(x) == ref_F.get_dimensions(x) == [3, 5, 7]
        assert F.get_image_size(x) == ref_F.get_image_size(x) == [7, 5]
        assert F.get_image_num_channels(x) == 3
    with pytest.raises(TypeError, match="got str"):
        F.get_dimensions("image.png")
