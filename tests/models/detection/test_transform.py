"""GeneralizedRCNNTransform against the reference: normalise, resize, batch, targets, postprocess, errors."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.models.detection.transform import GeneralizedRCNNTransform, resize_boxes, resize_keypoints

theirs = reference.models.detection.transform
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_pair(*args, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    return GeneralizedRCNNTransform(*args, **kwargs), theirs.GeneralizedRCNNTransform(*args, **kwargs)


def images_and_targets(dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[dict]]:
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, h, w, generator=generator, dtype=dtype) for h, w in [(61, 97), (120, 45), (33, 33)]]
    targets = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 50.0, 40.0], [10.5, 0.0, 96.0, 60.9]], dtype=dtype),
            "labels": torch.tensor([3, 1]),
        },
        {"boxes": torch.zeros(0, 4, dtype=dtype), "labels": torch.zeros(0, dtype=torch.int64)},  # negatives only
        {
            "boxes": torch.tensor([[0.0, 0.0, 33.0, 33.0]], dtype=dtype),
            "labels": torch.tensor([7]),
            "masks": torch.ones(1, 33, 33, dtype=torch.uint8),
            "keypoints": torch.tensor([[[3.0, 4.0, 1.0], [30.0, 20.0, 0.0]]], dtype=dtype),
        },
    ]
    return images, targets


def assert_same(ours_out: tuple, theirs_out: tuple) -> None:
    (ours_list, ours_targets), (ref_list, ref_targets) = ours_out, theirs_out
    assert torch.equal(ours_list.tensors, ref_list.tensors)
    assert [tuple(map(int, s)) for s in ours_list.image_sizes] == [tuple(map(int, s)) for s in ref_list.image_sizes]
    assert (ours_targets is None) == (ref_targets is None)
    for a, b in zip(ours_targets or [], ref_targets or [], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "config",
    [
        {"min_size": 800, "max_size": 1333},
        {"min_size": 256, "max_size": 300},  # the long side binds for the wide and tall images
        {"min_size": 320, "max_size": 320, "size_divisible": 64},
        {"min_size": 64, "max_size": 1000, "fixed_size": (50, 70)},
        {"min_size": (200, 240, 280), "max_size": 400},
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_transform_matches_the_reference(config: dict, training: bool) -> None:
    mine, ref = make_pair(image_mean=MEAN, image_std=STD, **config)
    mine.train(training), ref.train(training)
    images, targets = images_and_targets()
    for given in (None, targets):
        torch.manual_seed(3)
        ours_out = mine(images, given)
        torch.manual_seed(3)
        ref_out = ref(images, given)
        assert_same(ours_out, ref_out)
    assert torch.equal(images[0], images_and_targets()[0][0]) and "masks" in targets[2]  # inputs left untouched
    assert targets[0]["boxes"][0, 2] == 50.0


def test_transform_float64_and_skip_resize() -> None:
    mine, ref = make_pair(256, 300, MEAN, STD, _skip_resize=True)
    images, targets = images_and_targets(torch.float64)
    for training in (False, True):
        mine.train(training), ref.train(training)
        assert_same(mine(images, targets), ref(images, targets))


def test_postprocess_maps_back_to_the_original_sizes() -> None:
    mine, ref = make_pair(256, 300, MEAN, STD)
    mine.eval(), ref.eval()
    generator = torch.Generator().manual_seed(1)

    def result() -> list[dict]:
        return [
            {
                "boxes": torch.rand(5, 4, generator=generator) * 200,
                "keypoints": torch.rand(5, 17, 3, generator=generator),
            },
            {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)},
        ]

    resized, originals = [(256, 300), (199, 256)], [(600, 700), (120, 155)]
    first = result()
    second = [{k: v.clone() for k, v in r.items()} for r in first]
    for a, b in zip(
        mine.postprocess(first, resized, originals), ref.postprocess(second, resized, originals), strict=True
    ):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mine.train()
    losses = [{"loss": torch.ones(())}]
    assert mine.postprocess(losses, resized, originals) is losses


def test_resize_helpers_match_the_reference() -> None:
    boxes = torch.rand(6, 4, dtype=torch.float64) * 50
    assert torch.equal(resize_boxes(boxes, (33, 47), (101, 64)), theirs.resize_boxes(boxes, (33, 47), (101, 64)))
    points = torch.rand(2, 4, 3)
    assert torch.equal(
        resize_keypoints(points, (33, 47), (101, 64)), theirs.resize_keypoints(points, (33, 47), (101, 64))
    )


def test_batch_images_pads_to_multiples_of_size_divisible() -> None:
    mine, ref = make_pair(100, 200, MEAN, STD)
    images = [torch.rand(3, 50, 70), torch.rand(3, 65, 33)]
    assert torch.equal(mine.batch_images(images, 16), ref.batch_images(images, 16))
    assert mine.batch_images(images, 16).shape == (2, 3, 80, 80)
    assert repr(mine) == repr(ref)


def good_target() -> dict:
    return {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([1])}


@pytest.mark.parametrize(
    ("images", "targets", "error", "match"),
    [
        ([torch.rand(1, 3, 20, 20)], None, ValueError, r"3d tensors of shape \[C, H, W\].*image 0"),
        ([torch.rand(3, 20, 20), torch.rand(20, 20)], None, ValueError, "image 1"),
        ([torch.rand(4, 20, 20)], None, ValueError, "expected 3 channels"),
        ([torch.rand(3, 0, 20)], None, ValueError, "non-empty height and width"),
        ([torch.randint(0, 255, (3, 20, 20), dtype=torch.uint8)], None, TypeError, "floating type"),
        ([], None, TypeError, "non-empty list"),
        (torch.rand(2, 3, 20, 20), None, TypeError, "list"),
        (["image.jpg"], None, TypeError, "image 0 must be a Tensor"),
        ([torch.rand(3, 20, 20)], [{"labels": torch.tensor([1])}], ValueError, "target 0 has no boxes"),
        ([torch.rand(3, 20, 20)], [{"boxes": torch.zeros(0, 4)}], ValueError, "target 0 has no labels"),
        ([torch.rand(3, 20, 20)], [good_target(), good_target()], ValueError, "1 images but 2 targets"),
        ([torch.rand(3, 20, 20)], good_target(), TypeError, "list of dicts"),
        (
            [torch.rand(3, 20, 20)],
            [{"boxes": torch.zeros(2, 5), "labels": torch.zeros(2, dtype=torch.int64)}],
            ValueError,
            r"target 0: boxes must have shape \(N, 4\)",
        ),
        (
            [torch.rand(3, 20, 20)],
            [{"boxes": torch.zeros(1, 4, dtype=torch.int64), "labels": torch.tensor([1])}],
            TypeError,
            "floating point",
        ),
        (
            [torch.rand(3, 20, 20)],
            [{"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([1.0])}],
            TypeError,
            "integer",
        ),
        (
            [torch.rand(3, 20, 20)],
            [{"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([1, 2])}],
            ValueError,
            "one per box",
        ),
        (
            [torch.rand(3, 20, 20), torch.rand(3, 20, 20)],
            [
                good_target(),
                {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0], [4.0, 2.0, 4.0, 9.0]]), "labels": torch.tensor([1, 2])},
            ],
            ValueError,
            r"target 1: box 1 \[4.0, 2.0, 4.0, 9.0\] has x2 <= x1 or y2 <= y1",
        ),
        (
            [torch.rand(3, 20, 20)],
            [{"boxes": torch.tensor([[1.0, 6.0, 5.0, 5.0]]), "labels": torch.tensor([1])}],
            ValueError,
            "target 0: box 0",
        ),
    ],
)
def test_transform_rejects_bad_input(images, targets, error: type, match: str) -> None:
    transform = GeneralizedRCNNTransform(64, 100, MEAN, STD).train()
    with pytest.raises(error, match=match):
        transform(images, targets)


def test_transform_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        GeneralizedRCNNTransform(0, 100, MEAN, STD)
    with pytest.raises(ValueError, match="one value per channel"):
        GeneralizedRCNNTransform(64, 100, MEAN, STD[:2])
    with pytest.raises(TypeError, match="unexpected keyword"):
        GeneralizedRCNNTransform(64, 100, MEAN, STD, min_sizes=3)
