"""Registry-driven checks of every classification builder against the reference.

Adding a builder to ``visionzoo.models`` adds it here: parity (state_dict strict + eval outputs),
weights entries (names, urls, meta facts) and presets (on tensor and PIL input).
"""

from __future__ import annotations


import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, assert_same_weights, build_pair
from visionzoo import models

CLASSIFIERS = models.list_models(module=models)


def _input_hw(name: str, model: torch.nn.Module) -> tuple[int, int]:
    """(height, width) of the test inputs. Small inputs keep the suite fast: 64 pixels (or the weights' larger
    minimum size) by 8 more, so that swapped axes show; a model built for one input size (it says so in its
    ``input_size`` attribute: ViT, MaxViT) gets exactly that size."""
    fixed = getattr(model, "input_size", None)
    if fixed is not None:
        return int(fixed[0]), int(fixed[1])
    # The weights' min_size may be what they were trained at (Swin: 224) rather than what the architecture
    # needs; a shape-only run on the meta device tells which.
    with torch.device("meta"):
        probe = models.get_model(name).eval()
        try:
            probe(torch.empty(1, 3, 64, 72))
            return 64, 72
        except ValueError:
            size = max(64, *models.get_model_weights(name).DEFAULT.meta.get("min_size", (1, 1)))
            return size, size + 8


def test_registry_covers_the_reference_families_landed_so_far() -> None:
    ours = set(CLASSIFIERS)
    assert {"resnet18", "resnet50", "resnext101_64x4d", "wide_resnet101_2"} <= ours
    assert ours <= set(reference.models.list_models(module=reference.models))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parity(name: str) -> None:
    ref, ours = build_pair(name)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, *_input_hw(name, ours))
    assert_same_outputs(ref, ours, x)
    # Determinism in eval mode, and a batch gives what its images give one by one.
    with torch.inference_mode():
        batch = ours(x)
        assert torch.equal(ours(x), batch)
        # Kernels may sum in another order for another batch size; randomly initialised deep nets have large
        # logits, so the tolerance follows their scale.
        scale = batch.abs().max().item()
        torch.testing.assert_close(ours(x[1:]), batch[1:], atol=1e-4 * max(1.0, scale), rtol=1e-3)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_weights_entries(name: str) -> None:
    assert_same_weights(name)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_presets(name: str) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 190, 251), dtype=torch.uint8, generator=generator)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for member in reference.models.get_model_weights(name):
        mine = models.get_model_weights(name)[member.name].transforms()
        theirs = member.transforms()
        for attr in ("crop_size", "resize_size", "mean", "std", "antialias"):
            assert getattr(mine, attr) == getattr(theirs, attr), attr
        assert mine.interpolation.value == theirs.interpolation.value
        for sample in (image, image.unsqueeze(0), image.float() / 255, pil):
            torch.testing.assert_close(mine(sample), theirs(sample), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builds_on_meta_device_without_data(name: str) -> None:
    """Architecture hyper-parameters are plain Python, so every builder can be built on ``meta``."""
    with torch.device("meta"):
        model = models.get_model(name)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bad_inputs_raise_clear_errors(name: str) -> None:
    # The checks run before any computation, so a model on the meta device (no memory, no init) suffices.
    with torch.device("meta"):
        model = models.get_model(name, num_classes=3).eval()
    size = _input_hw(name, model)
    with pytest.raises(ValueError, match="3 channels, got 4"):
        model(torch.randn(1, 4, *size))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, *size, dtype=torch.uint8))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.randn(3, *size))
