"""Registry-driven checks of every semantic segmentation builder against the reference.

Adding a builder to ``visionzoo.models.segmentation`` adds it here: parity (state_dict strict + eval outputs, with
and without the auxiliary classifier, at a size that is not a multiple of 8), weights entries, presets, building
on ``meta`` with weights, backbone weights, a new ``num_classes`` with published weights and bad inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, assert_same_weights, build_pair
from visionzoo import models
from visionzoo.models import segmentation
from visionzoo.models._api import WeightsEnum
from visionzoo.models._features import FeatureTap, stage_boundaries
from visionzoo.transforms import SemanticSegmentation

SEGMENTERS = models.list_models(module=segmentation)
NO_AUX = {"lraspp_mobilenet_v3_large"}  # Lite R-ASPP has no auxiliary classifier
WITH_AUX = [name for name in SEGMENTERS if name not in NO_AUX]
INPUT_HW = (67, 75)  # not a multiple of 8: the upsampling must land on the input's exact size


def _aux_cases() -> list[Any]:
    return [
        pytest.param(name, aux, id=f"{name}-aux={aux}")
        for name in SEGMENTERS
        for aux in (False, True)
        if not (aux and name in NO_AUX)
    ]


@pytest.mark.parametrize(("name", "aux"), _aux_cases())
def test_parity(name: str, aux: bool) -> None:
    ref, ours = build_pair(name, weights_backbone=None, aux_loss=aux)
    x = torch.randn(1, 3, *INPUT_HW)
    assert_same_outputs(ref, ours, x)
    with torch.inference_mode():
        out = ours(x)
    assert list(out) == (["out", "aux"] if aux else ["out"])
    assert all(t.shape == (1, 21, *INPUT_HW) for t in out.values())


@pytest.mark.parametrize("name", SEGMENTERS)
def test_weights_entries(name: str) -> None:
    assert_same_weights(name)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_presets(name: str) -> None:
    from PIL import Image

    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for member in reference.models.get_model_weights(name):
        mine = models.get_model_weights(name)[member.name].transforms()
        theirs = member.transforms()
        assert isinstance(mine, SemanticSegmentation) and repr(mine) == repr(theirs)
        for attr in ("resize_size", "mean", "std", "antialias"):
            assert getattr(mine, attr) == getattr(theirs, attr), attr
        assert mine.interpolation.value == theirs.interpolation.value
        for sample in (image, image.float() / 255, torch.stack([image, image.flip(-1)]), pil):
            torch.testing.assert_close(mine(sample), theirs(sample), atol=1e-3, rtol=0)


def _checkpoint_of(name: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    """The state_dict of the reference's model, as its published weights hold it (with the aux classifier)."""
    torch.manual_seed(0)
    aux = {} if name in NO_AUX else {"aux_loss": True}
    return reference.models.get_model(name, weights=None, weights_backbone=None, **aux, **kwargs).state_dict()


def _serve(monkeypatch: pytest.MonkeyPatch, checkpoint: dict[str, torch.Tensor]) -> None:
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_builds_on_meta_device_when_weights_are_given(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With weights, nothing is initialised (no random draw), every tensor is the checkpoint's own, the aux
    classifier comes with them, and ``weights_backbone`` is ignored (not fetched)."""
    with torch.device("meta"):
        full = models.get_model(name, weights_backbone=None, aux_loss=name not in NO_AUX)
    checkpoint = {key: torch.empty(t.shape, dtype=t.dtype) for key, t in full.state_dict().items()}
    _serve(monkeypatch, checkpoint)
    random_state = torch.get_rng_state()
    model = models.get_model(name, weights="DEFAULT", weights_backbone="IMAGENET1K_V1")
    assert torch.equal(torch.get_rng_state(), random_state), "building with weights drew random numbers"
    loaded = model.state_dict()
    assert list(loaded) == list(checkpoint)
    copied = [key for key, tensor in loaded.items() if tensor.data_ptr() != checkpoint[key].data_ptr()]
    assert not copied, f"not the checkpoint's tensors: {copied[:5]}"


def test_published_weights_load_and_compute_as_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "lraspp_mobilenet_v3_large"
    checkpoint = _checkpoint_of(name)
    _serve(monkeypatch, checkpoint)
    ours = models.get_model(name, weights="DEFAULT").eval()
    ref = reference.models.get_model(name, weights=None, weights_backbone=None).eval()
    ref.load_state_dict(checkpoint)
    assert_same_outputs(ref, ours, torch.randn(1, 3, 40, 52))


def test_weights_without_the_aux_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """``aux_loss=False`` with published weights (which the reference refuses) loads all but the aux classifier."""
    _serve(monkeypatch, _checkpoint_of("deeplabv3_mobilenet_v3_large"))
    model = models.get_model("deeplabv3_mobilenet_v3_large", weights="DEFAULT", aux_loss=False).eval()
    assert model.aux_classifier is None and not any(k.startswith("aux_") for k in model.state_dict())
    with torch.inference_mode():
        assert list(model(torch.randn(1, 3, 32, 32))) == ["out"]


@pytest.mark.parametrize(
    ("name", "heads"),
    [
        ("fcn_resnet50", ["classifier.4", "aux_classifier.4"]),
        ("lraspp_mobilenet_v3_large", ["classifier.low_classifier", "classifier.high_classifier"]),
    ],
)
def test_new_num_classes_with_published_weights(name: str, heads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor but the classifiers' last layers loads; those are rebuilt for 3 classes, with a warning
    naming them (the reference refuses this combination)."""
    checkpoint = _checkpoint_of(name)
    _serve(monkeypatch, checkpoint)
    fresh = [f"{head}.{kind}" for head in heads for kind in ("weight", "bias")]
    with pytest.warns(UserWarning, match="num_classes=3 differs from the 21 categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=3).eval()
    assert all(key in str(caught[0].message) for key in fresh)
    state = model.state_dict()
    for key, tensor in checkpoint.items():
        if key in fresh:
            assert state[key].shape[0] == 3 and not state[key].is_meta
        else:
            assert torch.equal(state[key], tensor), key
    with torch.inference_mode():
        out = model(torch.randn(1, 3, *INPUT_HW))
    assert all(t.shape == (1, 3, *INPUT_HW) for t in out.values()) and torch.isfinite(out["out"]).all()


def _publish_backbone(directory: Path, url: str) -> tuple[str, dict[str, torch.Tensor]]:
    """Save an ImageNet-style mobilenet_v3_large checkpoint named like the official ones (<stem>-<sha256>.pth)."""
    torch.manual_seed(3)
    state = reference.models.mobilenet_v3_large().state_dict()
    staging = directory / "staging.pth"
    torch.save(state, staging)
    stem = url.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    name = f"{stem}-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    staging.rename(directory / name)
    return name, state


def test_weights_backbone_loads_the_imagenet_entry_through_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backbone's ImageNet entry is fetched like any entry (here: from a VISIONZOO_WEIGHTS_DIR mirror) and its
    ``features`` land in the tap as ``backbone.*``; the heads keep their fresh initialisation."""
    from visionzoo.models import MobileNet_V3_Large_Weights

    entry = MobileNet_V3_Large_Weights.IMAGENET1K_V1
    name, state = _publish_backbone(tmp_path, entry.url)
    # The entry's real file name promises the real checkpoint's digest: point the entry at the test's file.
    monkeypatch.setattr(
        MobileNet_V3_Large_Weights, "url", property(lambda self: f"http://127.0.0.1:9/{name}"), raising=False
    )
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(tmp_path))
    model = segmentation.lraspp_mobilenet_v3_large(weights_backbone="IMAGENET1K_V1", num_classes=5)
    loaded = model.state_dict()
    backbone = {k.removeprefix("backbone."): v for k, v in loaded.items() if k.startswith("backbone.")}
    assert backbone and all(torch.equal(v, state[f"features.{k}"]) for k, v in backbone.items())
    assert loaded["classifier.low_classifier.weight"].shape == (5, 40, 1, 1)

    with pytest.warns(UserWarning, match="pretrained_backbone=False is deprecated"):
        plain = segmentation.lraspp_mobilenet_v3_large(pretrained_backbone=False)
    assert not torch.equal(plain.state_dict()["backbone.0.0.weight"], state["features.0.0.weight"])


@pytest.mark.parametrize("name", SEGMENTERS)
def test_bad_inputs_raise_clear_errors(name: str) -> None:
    # The checks run before any computation, so a model on the meta device (no memory, no init) suffices.
    with torch.device("meta"):
        model = models.get_model(name, weights_backbone=None, num_classes=3).eval()
    with pytest.raises(ValueError, match="3 channels, got 4"):
        model(torch.randn(1, 4, *INPUT_HW))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, *INPUT_HW, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.randn(0, 3, *INPUT_HW))
    with pytest.raises(ValueError, match="4-D"):
        model(torch.randn(3, *INPUT_HW))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_bad_builder_arguments_raise_clear_errors(name: str) -> None:
    build = models.get_model_builder(name)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        build(weights_backbone=None, num_classes=0)
    with pytest.raises(TypeError, match="Unexpected keyword argument.*'dropout'"):
        build(weights_backbone=None, dropout=0.3)
    with pytest.raises(ValueError, match="belongs to .*but this builder takes"):
        build(weights_backbone=models.get_model_weights(name).DEFAULT)
    if name in NO_AUX:
        with pytest.raises(ValueError, match="no auxiliary classifier"):
            build(weights_backbone=None, aux_loss=True)


def test_feature_tap_keeps_the_children_up_to_the_last_requested_one() -> None:
    network = models.resnet18()
    tap = FeatureTap(network, {"layer2": "c3", "layer1": "c2"})
    assert list(tap) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
    with torch.inference_mode():
        out = tap(torch.randn(1, 3, 64, 64))
    assert list(out) == ["c2", "c3"] and out["c3"].shape == (1, 128, 8, 8)
    with pytest.raises(ValueError, match=r"unknown: \['layer5'\].*children: conv1, bn1"):
        FeatureTap(network, {"layer5": "x"})
    assert stage_boundaries(models.mobilenet_v3_large().features) == [0, 2, 4, 7, 13, 16]
