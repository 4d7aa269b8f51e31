"""Registry-driven checks of every classification builder against the reference.

Adding a builder to ``visionzoo.models`` adds it here: parity (state_dict strict + eval outputs),
weights entries (names, urls, meta facts), presets (on tensor and PIL input) and loading weights into a
model built on ``meta``. That the registry holds exactly the reference's builders is checked in test_api.py.
"""

from __future__ import annotations

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, assert_same_weights, build_pair
from visionzoo import models
from visionzoo.models._api import WeightsEnum

CLASSIFIERS = models.list_models(task="classification")


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


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parity(name: str) -> None:
    ref, ours = build_pair(name)  # same keys in the same order, same initialisation, strict load
    x = torch.randn(2, 3, *_input_hw(name, ours))
    batch = assert_same_outputs(ref, ours, x)
    # A batch gives what its images give one by one, and eval mode is deterministic (checked on one image:
    # the forward passes of the largest models take seconds each).
    with torch.inference_mode():
        single = ours(x[1:])
        assert torch.equal(ours(x[1:]), single)
    # Kernels may sum in another order for another batch size; randomly initialised deep nets have large
    # logits, so the tolerance follows their scale.
    scale = batch.abs().max().item()
    torch.testing.assert_close(single, batch[1:], atol=1e-4 * max(1.0, scale), rtol=1e-3)


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


def _entry_for_the_default_architecture(name: str, model: torch.nn.Module) -> WeightsEnum:
    """The first weights entry whose checkpoint fits the builder's default architecture: for a model built for
    one input size (ViT, MaxViT), the first entry trained at that size (vit_h_14's first is at 518 pixels)."""
    fixed = getattr(model, "input_size", None)
    return next(e for e in models.get_model_weights(name) if fixed is None or e.transforms().crop_size == [fixed[0]])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builds_on_meta_device_when_weights_are_given(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With weights, a builder builds on ``meta`` and loads the checkpoint into it by assignment: no random
    initialisation runs (not one draw from the random generator) and every tensor is the checkpoint's own."""
    with torch.device("meta"):
        default = models.get_model(name)
    entry = _entry_for_the_default_architecture(name, default)
    # torch.empty reserves memory lazily: the checkpoint costs nothing, and its tensors are known by their storage.
    checkpoint = {key: torch.empty(t.shape, dtype=t.dtype) for key, t in default.state_dict().items()}
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    random_state = torch.get_rng_state()
    model = models.get_model(name, weights=entry)
    assert torch.equal(torch.get_rng_state(), random_state), "building with weights drew random numbers"
    loaded = model.state_dict()
    assert set(loaded) <= set(checkpoint)  # the builder may drop parts the weights leave out (auxiliary heads)
    assert len(loaded) == len([*model.parameters(), *model.buffers()])  # every tensor is in the state_dict
    copied = [key for key, tensor in loaded.items() if tensor.data_ptr() != checkpoint[key].data_ptr()]
    assert not copied, f"not the checkpoint's tensors: {copied[:5]}"


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
