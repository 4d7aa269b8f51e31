"""Parity of visionzoo.utils with the reference's utils (drawing, grids, saving), plus error cases."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

from tests.reference import functional as ref_F
from tests.reference import utils as ref_utils
from visionzoo import utils
from visionzoo.transforms import functional as F


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(dtype: torch.dtype, height: int = 24, width: int = 31, seed: int = 0) -> torch.Tensor:
    if dtype == torch.uint8:
        return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=_generator(seed))
    return torch.rand((3, height, width), generator=_generator(seed)).to(dtype)


def _bool_masks(num: int, height: int = 24, width: int = 31, seed: int = 1) -> torch.Tensor:
    # About a third of each mask set, so that masks overlap in places and leave pixels uncovered elsewhere.
    return torch.rand((num, height, width), generator=_generator(seed)) < 0.35


def test_import_does_not_load_pil():
    code = "import sys, visionzoo.utils; assert 'PIL' not in sys.modules, 'PIL imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_utils_is_a_lazy_submodule():
    import visionzoo

    assert "utils" in dir(visionzoo) and visionzoo.utils is utils


# --------------------------------------------------------------------------------- draw_segmentation_masks

COLOR_FORMS = {
    "default": None,
    "name": "dodgerblue",
    "hex": "#FF8000",
    "tuple": (240, 10, 157),
    "list": ["red", "#00FF7F", (12, 34, 56), "gold", "navy"],
}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("num_masks", [1, 5])
@pytest.mark.parametrize("colors", COLOR_FORMS.values(), ids=COLOR_FORMS.keys())
@pytest.mark.parametrize("alpha", [0.8, 0.35, 0.9, 1.0, 0.0])
def test_draw_segmentation_masks_matches_reference(dtype, num_masks, colors, alpha):
    image, masks = _image(dtype), _bool_masks(num_masks)
    ours = utils.draw_segmentation_masks(image, masks, alpha=alpha, colors=colors)
    ref = ref_utils.draw_segmentation_masks(image, masks, alpha=alpha, colors=colors)
    assert ours.dtype == ref.dtype == dtype
    # The reference divides its default palette by 255 in float32 even for float64 images; ours divides in
    # float64, so those colours differ in the 9th digit.
    atol = 1e-7 if colors is None and dtype == torch.float64 else 0
    torch.testing.assert_close(ours, ref, rtol=0, atol=atol)


def test_draw_segmentation_masks_single_hw_mask_and_defaults():
    image, mask = _image(torch.uint8), _bool_masks(1)[0]
    torch.testing.assert_close(
        utils.draw_segmentation_masks(image, mask), ref_utils.draw_segmentation_masks(image, mask), rtol=0, atol=0
    )


def test_draw_segmentation_masks_keeps_the_input():
    image, masks = _image(torch.uint8), _bool_masks(3)
    before = image.clone()
    utils.draw_segmentation_masks(image, masks)
    assert torch.equal(image, before)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.float64, torch.float16])
def test_binary_float_masks_draw_as_bool_masks(dtype, mask_dtype):
    image, masks = _image(dtype), _bool_masks(4)
    ours = utils.draw_segmentation_masks(image, masks.to(mask_dtype), alpha=0.9)
    ref = ref_utils.draw_segmentation_masks(image, masks, alpha=0.9)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_soft_mask_blends_in_proportion():
    image = torch.full((3, 2, 3), 0.5)
    mask = torch.tensor([[0.0, 0.25, 0.5], [0.75, 1.0, 1.0]])
    out = utils.draw_segmentation_masks(image, mask, alpha=0.8, colors=(255, 0, 0))
    opacity = 0.8 * mask
    expected = torch.stack([0.5 + opacity * 0.5, 0.5 - opacity * 0.5, 0.5 - opacity * 0.5])
    torch.testing.assert_close(out, expected)


def test_soft_masks_take_the_strongest_colour():
    image = torch.zeros(3, 1, 3)
    # Pixel 0: mask 0 leads; pixel 1: mask 1 leads; pixel 2: a tie, drawn black like an overlap.
    masks = torch.tensor([[[0.7, 0.2, 0.5]], [[0.3, 0.6, 0.5]]])
    out = utils.draw_segmentation_masks(image, masks, alpha=1.0, colors=[(255, 0, 0), (0, 0, 255)])
    expected = torch.tensor([[[0.7, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 0.6, 0.0]]])
    torch.testing.assert_close(out, expected)


def test_no_masks_warns_and_returns_the_image():
    image = _image(torch.uint8)
    with pytest.warns(UserWarning, match="no mask"):
        assert utils.draw_segmentation_masks(image, torch.zeros(0, 24, 31, dtype=torch.bool)) is image


@pytest.mark.parametrize(
    ("image", "masks", "kwargs", "error", "match"),
    [
        ("not a tensor", torch.ones(4, 4, dtype=torch.bool), {}, TypeError, "image must be a torch.Tensor"),
        (torch.zeros(3, 4, 4, dtype=torch.int32), torch.ones(4, 4, dtype=torch.bool), {}, TypeError, "int32"),
        (torch.zeros(1, 3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {}, ValueError, r"\(3, H, W\)"),
        (torch.zeros(4, 4, 4), torch.ones(4, 4, dtype=torch.bool), {}, ValueError, r"shape \(4, 4, 4\)"),
        (torch.zeros(3, 4, 4), [[True]], {}, TypeError, "masks must be a torch.Tensor"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.uint8), {}, TypeError, "masks must be bool.*uint8"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.int64), {}, TypeError, "int64"),
        (torch.zeros(3, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), {}, ValueError, r"\(N, H, W\)"),
        (torch.zeros(3, 4, 4), torch.ones(2, 4, 5, dtype=torch.bool), {}, ValueError, r"\(4, 5\).*\(4, 4\)"),
        (torch.zeros(3, 4, 4), torch.full((4, 4), 1.5), {}, ValueError, r"\[0, 1\].*1\.5"),
        (torch.zeros(3, 4, 4), torch.full((4, 4), float("nan")), {}, ValueError, r"\[0, 1\]"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"alpha": 1.5}, ValueError, "alpha"),
        (torch.zeros(3, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool), {"colors": ["red"]}, ValueError, "1 colours"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": "reddish"}, ValueError, "reddish"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": "#12345"}, ValueError, "#12345"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": "#FF000080"}, ValueError, "alpha"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": (1, 2)}, ValueError, "three ints"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": (0, 0, 300)}, ValueError, "255"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": [[255, 0, 0]]}, TypeError, "colour"),
        (torch.zeros(3, 4, 4), torch.ones(4, 4, dtype=torch.bool), {"colors": 7}, TypeError, "colors"),
    ],
)
def test_draw_segmentation_masks_errors(image, masks, kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.draw_segmentation_masks(image, masks, **kwargs)


# ------------------------------------------------------------------------------------------ draw_bounding_boxes
_DEJAVU = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _boxes(num: int, height: int = 24, width: int = 31, seed: int = 2) -> torch.Tensor:
    # Corners partly outside the image, and some degenerate boxes (x1 == x2), so that clipping is covered too.
    corners = torch.rand((num, 2), generator=_generator(seed)) * torch.tensor([width + 6.0, height + 6.0]) - 3
    sizes = torch.rand((num, 2), generator=_generator(seed + 1)) * 15
    sizes[::3, 0] = 0
    return torch.cat([corners, corners + sizes], dim=1)


_BOX_OPTIONS = {
    "defaults": {},
    "one_name": {"colors": "red"},
    "hex_list": {"colors": ["#00ff00", "#123", "blue", "rgb(10, 200, 30)", "navy"]},
    "tuples_fill": {"colors": [(240, 10, 157), (0, 0, 0), (255, 255, 255), (9, 99, 199), (1, 2, 3)], "fill": True},
    "tuple_wide": {"colors": (30, 60, 90), "width": 3},
    "width0_fill": {"width": 0, "fill": True},
    "labels": {"labels": ["cat", "dog", "a", "person", ""]},
    "labels_coloured": {"labels": ["cat", "dog", "a", "person", "x"], "label_colors": "yellow", "width": 2},
    "labels_fill": {"labels": ["cat", "dog", "a", "person", "x"], "label_colors": ["red"] * 5, "fill": True},
    "fill_labels": {"labels": ["cat", "dog", "a", "person", "x"], "fill_labels": True},
    "fill_labels_colours": {
        "labels": ["cat", "dog", "a", "person", "x"],
        "fill_labels": True,
        "label_colors": "white",
        "label_background_colors": ["navy", "olive", "teal", "maroon", "purple"],
    },
}


@pytest.mark.parametrize("options", _BOX_OPTIONS.values(), ids=_BOX_OPTIONS.keys())
@pytest.mark.parametrize("box_dtype", [torch.float32, torch.int64])
@pytest.mark.parametrize(("dtype", "channels"), [(torch.uint8, 3), (torch.float32, 3), (torch.uint8, 1)])
def test_draw_bounding_boxes_matches_reference(dtype, channels, box_dtype, options):
    image = _image(dtype)[:channels]
    boxes = _boxes(5).to(box_dtype)
    expected = ref_utils.draw_bounding_boxes(image, boxes, **options)
    actual = utils.draw_bounding_boxes(image, boxes, **options)
    assert actual.shape == expected.shape == (3, 24, 31)
    assert actual.dtype == expected.dtype == dtype
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_draw_bounding_boxes_float_dtypes_match_reference(dtype):
    # Float images are drawn at 8 bits: the round trip through uint8 must be the reference's, bit for bit.
    image, boxes = _image(dtype)[:1], _boxes(4)
    options = {"labels": ["a", "b", "c", "d"], "fill": True}
    expected = ref_utils.draw_bounding_boxes(image, boxes, **options)
    torch.testing.assert_close(utils.draw_bounding_boxes(image, boxes, **options), expected, rtol=0, atol=0)


def test_draw_bounding_boxes_keeps_the_input():
    image, boxes = _image(torch.uint8), _boxes(3)
    image_before, boxes_before = image.clone(), boxes.clone()
    utils.draw_bounding_boxes(image, boxes, fill=True, labels=["a", "b", "c"])
    assert torch.equal(image, image_before) and torch.equal(boxes, boxes_before)


def test_draw_bounding_boxes_font_size_without_font_warns_like_the_reference():
    image, boxes = _image(torch.uint8), _boxes(2)
    with pytest.warns(UserWarning, match="font_size"):
        expected = ref_utils.draw_bounding_boxes(image, boxes, labels=["a", "b"], font_size=30)
    with pytest.warns(UserWarning, match="font_size is ignored"):
        actual = utils.draw_bounding_boxes(image, boxes, labels=["a", "b"], font_size=30)
    assert torch.equal(actual, expected)


@pytest.mark.skipif(not os.path.exists(_DEJAVU), reason="needs the DejaVu Sans font file")
@pytest.mark.parametrize("font_size", [None, 14])
def test_draw_bounding_boxes_truetype_font_matches_reference(font_size):
    image, boxes = _image(torch.uint8, 48, 64), _boxes(3, 48, 64) * 2
    options = {"labels": ["Ag", "dog", "x"], "font": _DEJAVU, "font_size": font_size, "fill_labels": True}
    expected = ref_utils.draw_bounding_boxes(image, boxes, **options)
    assert torch.equal(utils.draw_bounding_boxes(image, boxes, **options), expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_no_boxes_warns_and_returns_the_image(channels):
    image = _image(torch.uint8)[:channels]
    with pytest.warns(UserWarning, match="no box"):
        assert utils.draw_bounding_boxes(image, torch.zeros(0, 4)) is image
    with pytest.warns(UserWarning, match="doesn't contain any box"):
        assert ref_utils.draw_bounding_boxes(image, torch.zeros(0, 4)) is image


_BOX = torch.tensor([[1.0, 2.0, 5.0, 6.0]])


@pytest.mark.parametrize(
    ("image", "boxes", "kwargs", "error", "match"),
    [
        ("not a tensor", _BOX, {}, TypeError, "image must be a torch.Tensor"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), _BOX, {}, TypeError, "int32"),
        (torch.zeros(1, 3, 8, 8), _BOX, {}, ValueError, r"\(3, H, W\) or \(1, H, W\).*\(1, 3, 8, 8\)"),
        (torch.zeros(2, 8, 8), _BOX, {}, ValueError, r"shape \(2, 8, 8\)"),
        (torch.zeros(3, 8, 8), [[1, 2, 5, 6]], {}, TypeError, "boxes must be a torch.Tensor"),
        (torch.zeros(3, 8, 8), _BOX.bool(), {}, TypeError, "boxes must hold.*bool"),
        (torch.zeros(3, 8, 8), _BOX[0], {}, ValueError, r"\(N, 4\).*\(4,\)"),
        (torch.zeros(3, 8, 8), torch.zeros(1, 8), {}, ValueError, r"\(N, 4\).*\(1, 8\)"),
        (torch.zeros(3, 8, 8), torch.tensor([[0, 0, 2, 2], [5.0, 1, 4, 3]]), {}, ValueError, r"x1 <= x2.*box 1"),
        (torch.zeros(3, 8, 8), torch.tensor([[0, 3, 2, 2.5]]), {}, ValueError, r"y1 <= y2.*box 0"),
        (torch.zeros(3, 8, 8), torch.tensor([[0, 0, float("nan"), 2]]), {}, ValueError, "finite"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": ["a", "b"]}, ValueError, "2 labels for 1 boxes"),
        (torch.zeros(3, 8, 8), _BOX.repeat(2, 1), {"labels": ["a"]}, ValueError, "1 labels for 2 boxes"),
        (torch.zeros(3, 8, 8), torch.zeros(0, 4), {"labels": ["a"]}, ValueError, "1 labels for 0 boxes"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": "a"}, TypeError, "labels must be a list of strings"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": [1]}, TypeError, "labels must be a list of strings"),
        (torch.zeros(3, 8, 8), _BOX.repeat(3, 1), {"colors": ["red", "blue"]}, ValueError, "2 colours for 3"),
        (torch.zeros(3, 8, 8), _BOX.repeat(2, 1), {"label_colors": ["red"]}, ValueError, "1 colours for 2"),
        (torch.zeros(3, 8, 8), _BOX, {"colors": "reddish"}, ValueError, "reddish"),
        (torch.zeros(3, 8, 8), _BOX, {"colors": (1, 2)}, ValueError, "three ints"),
        (torch.zeros(3, 8, 8), _BOX, {"colors": 7}, TypeError, "colors"),
        (torch.zeros(3, 8, 8), _BOX, {"width": -1}, ValueError, "width"),
        (torch.zeros(3, 8, 8), _BOX, {"width": 1.5}, ValueError, "width"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": ["a"], "font_size": 0}, ValueError, "font_size"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": ["a"], "font": 3}, TypeError, "font must be the path"),
        (torch.zeros(3, 8, 8), _BOX, {"labels": ["a"], "font": "no/such/font.ttf"}, ValueError, "no/such/font"),
    ],
)
def test_draw_bounding_boxes_errors(image, boxes, kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.draw_bounding_boxes(image, boxes, **kwargs)


def test_draw_bounding_boxes_reference_refuses_reversed_corners_too():
    # The condition for reversed corners is the reference's: equal corners are drawn, x1 > x2 is refused.
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    flat = torch.tensor([[2.0, 2.0, 2.0, 6.0]])
    assert torch.equal(utils.draw_bounding_boxes(image, flat), ref_utils.draw_bounding_boxes(image, flat))
    reversed_box = torch.tensor([[3.0, 2.0, 2.9, 6.0]])
    with pytest.raises(ValueError):
        ref_utils.draw_bounding_boxes(image, reversed_box)
    with pytest.raises(ValueError, match="x1 <= x2"):
        utils.draw_bounding_boxes(image, reversed_box)


# ------------------------------------------------------------------------------------------- draw_keypoints

_SKELETON = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 3)]


def _keypoints(num: int = 3, k: int = 5, height: int = 24, width: int = 31) -> torch.Tensor:
    points = torch.rand((num, k, 2), generator=_generator(4)) * torch.tensor([width + 6.0, height + 6.0]) - 3
    points[0, 0] = torch.tensor([-2.7, 5.5])  # partly off the image, truncated toward zero
    return points


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"colors": "red"},
        {"connectivity": _SKELETON, "colors": (20, 200, 60), "radius": 3, "width": 2},
        {"connectivity": _SKELETON, "colors": "#0af", "visibility": torch.rand(3, 5, generator=_generator(5)) > 0.4},
        {"connectivity": _SKELETON, "visibility": (torch.rand(3, 5, 1, generator=_generator(6)) > 0.3).float()},
        {"radius": 0, "width": 1, "colors": "blue", "connectivity": [(4, 0)]},
    ],
)
def test_draw_keypoints_matches_reference(dtype, kwargs):
    image = _image(dtype)
    keypoints = _keypoints()
    got = utils.draw_keypoints(image, keypoints, **kwargs)
    expected = ref_utils.draw_keypoints(image, keypoints, **kwargs)
    assert got.dtype == image.dtype and got.shape == image.shape
    assert torch.equal(got, expected)
    if kwargs.get("connectivity") or kwargs.get("colors"):
        assert not torch.equal(got, image)  # something was drawn
    with_scores = torch.cat([keypoints, torch.ones(3, 5, 1)], dim=-1)  # a model's (N, K, 3) output
    assert torch.equal(utils.draw_keypoints(image, with_scores, **kwargs), got)


@pytest.mark.parametrize(
    ("image", "keypoints", "kwargs", "error", "match"),
    [
        (torch.zeros(1, 8, 8, dtype=torch.uint8), torch.zeros(1, 2, 2), {}, ValueError, r"shape \(3, H, W\)"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), torch.zeros(1, 2, 2), {}, TypeError, "uint8"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(2, 2), {}, ValueError, r"\(N, K, 2\)"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), [[[1, 2]]], {}, TypeError, "keypoints must be"),
        (
            torch.zeros(3, 8, 8, dtype=torch.uint8),
            torch.zeros(1, 2, 2),
            {"visibility": torch.ones(1, 3, dtype=torch.bool)},
            ValueError,
            r"visibility must have shape \(N, K\) = \(1, 2\)",
        ),
        (
            torch.zeros(3, 8, 8, dtype=torch.uint8),
            torch.zeros(1, 2, 2),
            {"connectivity": [(0, 2)]},
            ValueError,
            "connection",
        ),
        (
            torch.zeros(3, 8, 8, dtype=torch.uint8),
            torch.zeros(1, 2, 2),
            {"colors": "nocolour"},
            ValueError,
            "unknown colour",
        ),
    ],
)
def test_draw_keypoints_errors(image, keypoints, kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.draw_keypoints(image, keypoints, **kwargs)


# ------------------------------------------------------------------------------------------------ make_grid

GRID_CASES = [
    {},
    {"nrow": 3},
    {"nrow": 4, "padding": 0},
    {"nrow": 20, "padding": 5, "pad_value": 0.5},
    {"normalize": True},
    {"normalize": True, "scale_each": True},
    {"normalize": True, "value_range": (-0.5, 0.5)},
    {"normalize": True, "value_range": (-1, 1), "scale_each": True, "nrow": 2},
    {"normalize": True, "value_range": (0.2, 0.2)},  # an empty range: divided by 1e-5, not by zero
]


def _grid_input(form: str) -> torch.Tensor | list[torch.Tensor]:
    batch = torch.randn((7, 3, 9, 11), generator=_generator(2))
    return {
        "4d": batch,
        "4d-gray": batch[:, :1],
        "3d": batch[0],
        "3d-gray": batch[0, :1],
        "2d": batch[0, 0],
        "list": list(batch),
        "4d-single": batch[:1],
        "4d-two-channels": batch[:, :2],
    }[form]


@pytest.mark.parametrize("kwargs", GRID_CASES, ids=str)
@pytest.mark.parametrize("form", ["4d", "4d-gray", "3d", "3d-gray", "2d", "list", "4d-single", "4d-two-channels"])
def test_make_grid_matches_reference(form, kwargs):
    ours = utils.make_grid(_grid_input(form), **kwargs)
    ref = ref_utils.make_grid(_grid_input(form), **kwargs)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_make_grid_uint8_and_input_untouched():
    batch = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8, generator=_generator(3))
    before = batch.clone()
    torch.testing.assert_close(
        utils.make_grid(batch, nrow=2, pad_value=255), ref_utils.make_grid(batch, nrow=2, pad_value=255), rtol=0, atol=0
    )
    floats = batch.float()
    utils.make_grid(floats, normalize=True)
    assert torch.equal(batch, before) and torch.equal(floats, before.float())


@pytest.mark.parametrize(
    ("tensor", "kwargs", "error", "match"),
    [
        ("images", {}, TypeError, "tensor or a list of tensors"),
        ([torch.zeros(3, 4, 4), "x"], {}, TypeError, "list holding str"),
        ([], {}, ValueError, "at least one image"),
        (torch.zeros(0, 3, 4, 4), {}, ValueError, "at least one image"),
        ([torch.zeros(3, 4, 4), torch.zeros(3, 4, 5)], {}, ValueError, "same shape"),
        (torch.zeros(2, 2, 3, 4, 4), {}, ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(2, 3, 4, 4), {"nrow": 0}, ValueError, "nrow"),
        (torch.zeros(2, 3, 4, 4), {"padding": -1}, ValueError, "padding"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), {"normalize": True}, TypeError, "floating-point"),
        (torch.zeros(2, 3, 4, 4), {"normalize": True, "value_range": [0, 1]}, TypeError, "value_range"),
        (torch.zeros(2, 3, 4, 4), {"normalize": True, "value_range": (0, 1, 2)}, ValueError, "two numbers"),
    ],
)
def test_make_grid_errors(tensor, kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.make_grid(tensor, **kwargs)


# ----------------------------------------------------------------------------------------------- save_image


def _saved(save, tensor, **kwargs) -> bytes:
    buffer = io.BytesIO()
    save(tensor, buffer, format="png", **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [((6, 3, 10, 12), {"nrow": 4}), ((3, 10, 12), {}), ((4, 1, 10, 12), {"padding": 1}), ((5, 4, 8, 8), {})],
)
def test_save_image_writes_the_reference_bytes(shape, kwargs):
    # Values past [0, 1] check the clamping; normalize is left to make_grid's tests.
    tensor = torch.rand(shape, generator=_generator(4)) * 1.2 - 0.1
    assert _saved(utils.save_image, tensor, **kwargs) == _saved(ref_utils.save_image, tensor, **kwargs)


def test_save_image_to_a_path_by_extension(tmp_path):
    batch = [torch.rand((3, 5, 6), generator=_generator(seed)) for seed in range(3)]
    utils.save_image(batch, tmp_path / "ours.png", normalize=True)
    ref_utils.save_image(batch, tmp_path / "ref.png", normalize=True)
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "ref.png").read_bytes()
    utils.save_image(batch[0], str(tmp_path / "ours.jpg"))
    with Image.open(tmp_path / "ours.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (6, 5)


@pytest.mark.parametrize(
    ("tensor", "fp", "kwargs", "error", "match"),
    [
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "x.png", {}, TypeError, "float images"),
        (torch.zeros(3, 4, 4), io.BytesIO(), {}, ValueError, "format is needed"),
        (torch.zeros(3, 4, 4), "picture", {}, ValueError, "picture'; pass format"),
        (torch.zeros(3, 4, 4), "picture.xyz", {}, ValueError, "picture.xyz"),
        (torch.zeros(3, 4, 4), io.BytesIO(), {"format": "nope"}, ValueError, "'nope'"),
        (torch.zeros(3, 4, 4), io.BytesIO(), {"format": "png", "nrow": 0}, ValueError, "nrow"),
    ],
)
def test_save_image_errors(tmp_path, tensor, fp, kwargs, error, match):
    if isinstance(fp, str):
        fp = str(tmp_path / fp)
    with pytest.raises(error, match=match):
        utils.save_image(tensor, fp, **kwargs)
    if isinstance(fp, str):
        assert not (tmp_path / fp).exists()


# ------------------------------------------------------------------------------------ to_pil_image of a mask


@pytest.mark.parametrize("shape", [(17, 23), (1, 17, 23)])
def test_to_pil_image_of_a_float_mask_matches_reference(shape):
    mask = torch.rand(shape, generator=_generator(5))
    ours, ref = F.to_pil_image(mask), ref_F.to_pil_image(mask)
    assert (
        (ours.mode, ours.size, ours.tobytes()) == (ref.mode, ref.size, ref.tobytes()) == ("L", (23, 17), ref.tobytes())
    )


def test_to_pil_image_of_a_float_mask_with_mode_f():
    mask = torch.rand((17, 23), generator=_generator(6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the reference's use of Image.fromarray(mode=)
        ref = ref_F.to_pil_image(mask, mode="F")
    ours = F.to_pil_image(mask, mode="F")
    assert (ours.mode, ours.size, ours.tobytes()) == (ref.mode, ref.size, ref.tobytes())
