"""``features_only=True`` on every classification builder: the maps, their ``feature_info``, pretrained loading, errors.

The shape checks run every builder on ``meta`` (shapes only), at two input sizes whose difference is a multiple of
every stride, so that the difference of the map sizes measures each map's stride exactly; the value checks run one
builder per family, small, against the intermediate outputs of the full model (forward hooks).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from visionzoo import models
from visionzoo.models import get_model
from visionzoo.models._features import FeatureMaps
from visionzoo.models._utils import _SkipInPlaceOnMeta
from visionzoo.models.detection.backbone_utils import BackboneWithFPN, mobilenet_backbone, resnet_fpn_backbone

CLASSIFIERS = models.list_models(module=models)
_STEP = 64  # a multiple of every stride (at most 32)


def _side(model: nn.Module) -> tuple[int, bool]:
    """The input side to test at, and whether the model takes other sizes."""
    fixed = getattr(model, "input_size", None)  # ViT, MaxViT
    if fixed is not None:
        return int(fixed[0]), False
    try:
        model(torch.empty(1, 3, 64, 64, device="meta"))
        return 64, True
    except ValueError:  # a larger minimum (Inception v3: 75)
        return 96, True


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_maps_match_feature_info(name: str) -> None:
    with torch.device("meta"), _SkipInPlaceOnMeta():
        model = get_model(name, features_only=True).eval()
    assert isinstance(model, FeatureMaps)
    info = model.feature_info
    assert [i["index"] for i in info] == list(range(len(info))) and len(info) >= 4
    assert len({i["name"] for i in info}) == len(info)
    assert [i["stride"] for i in info] == sorted(i["stride"] for i in info)
    side, resizable = _side(model)
    width = 2 * side if resizable else side  # non-square where allowed, so that swapped axes show
    maps = model(torch.empty(2, 3, side, width, device="meta"))
    assert [m.shape[:2] for m in maps] == [(2, i["channels"]) for i in info]
    sizes = [tuple(m.shape[2:]) for m in maps]
    if sizes != [(side // i["stride"], width // i["stride"]) for i in info]:
        # Unpadded convolutions and poolings (AlexNet, Inception) round sizes down: then a larger input, by a
        # multiple of every stride, must grow each map by exactly that multiple over its stride.
        assert resizable, sizes
        larger = model(torch.empty(1, 3, side + _STEP, width + _STEP, device="meta"))
        grown = [(b.shape[2] - h, b.shape[3] - w) for (h, w), b in zip(sizes, larger)]
        assert grown == [(_STEP // i["stride"],) * 2 for i in info]


# One builder per family, small: (builder, kwargs, input side).
_FAMILIES = [
    ("alexnet", {}, 64),
    ("vgg11_bn", {}, 64),
    ("squeezenet1_0", {}, 64),
    ("resnet18", {}, 64),
    ("densenet121", {}, 64),
    # init_weights=False: PyTorch's default initialisation, much faster to draw than their truncated normals.
    ("googlenet", {"transform_input": True, "init_weights": False}, 64),
    ("inception_v3", {"transform_input": True, "aux_logits": True, "init_weights": False}, 80),
    ("mobilenet_v2", {}, 64),
    ("mobilenet_v3_small", {}, 64),
    ("mnasnet0_5", {}, 64),
    ("shufflenet_v2_x0_5", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("regnet_y_400mf", {}, 64),
    ("convnext_tiny", {}, 64),
    ("vit_b_32", {"image_size": 64}, 64),
    ("swin_v2_t", {}, 64),
    ("maxvit_t", {}, 224),
]


def _as_map(name: str, output: torch.Tensor) -> torch.Tensor:
    """A full model's intermediate output as the (N, C, H, W) map features_only returns."""
    if name.startswith("swin"):
        return output.permute(0, 3, 1, 2)
    if name.startswith("vit"):
        patches = output[:, 1:]
        side = int(patches.shape[1] ** 0.5)
        return patches.transpose(1, 2).reshape(len(output), -1, side, side)
    return output


@pytest.mark.parametrize(("name", "kwargs", "side"), _FAMILIES, ids=[f[0] for f in _FAMILIES])
def test_maps_equal_the_full_models_intermediate_outputs(name: str, kwargs: dict, side: int) -> None:
    torch.manual_seed(0)
    full = get_model(name, **kwargs).eval()
    with torch.device("meta"), _SkipInPlaceOnMeta():
        features = get_model(name, features_only=True, **kwargs).eval()
        picked = get_model(name, features_only=True, out_indices=(-1, 1), **kwargs)
    expected_state = full.state_dict()
    kept = list(features.state_dict())
    assert set(kept) < set(expected_state)  # the checkpoint's names; the head and what follows the last stage gone
    features.load_state_dict({k: expected_state[k] for k in kept}, strict=True, assign=True)
    assert [i["index"] for i in picked.feature_info] == [len(features.feature_info) - 1, 1]

    captured: dict[str, torch.Tensor] = {}
    for info in features.feature_info:
        module = full.get_submodule(info["name"])
        module.register_forward_hook(lambda _m, _i, out, key=info["name"]: captured.__setitem__(key, out.clone()))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        full(x)
        maps = features(x)
    for info, got in zip(features.feature_info, maps):
        torch.testing.assert_close(got, _as_map(name, captured[info["name"]]), rtol=1e-5, atol=1e-5)


def test_train_mode_gradients_reach_every_kept_parameter() -> None:
    model = get_model("resnet18", features_only=True, out_indices=(1, 2)).train()
    assert [name for name, _ in model.named_children()] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
    sum(m.mean() for m in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_published_weights_load_strictly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A published entry's checkpoint (made here, served from VISIONZOO_WEIGHTS_DIR) loads into the features model:
    every tensor it keeps comes from the checkpoint under the checkpoint's own key."""
    from visionzoo.models.mobilenetv3 import MobileNet_V3_Small_Weights

    torch.manual_seed(0)
    checkpoint = {k: v.clone() for k, v in models.mobilenet_v3_small().state_dict().items()}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    staging = mirror / "staging.pth"
    torch.save(checkpoint, staging)
    name = f"mobilenet_v3_small-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    staging.rename(mirror / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    monkeypatch.delenv("VISIONZOO_WEIGHTS_URL", raising=False)
    # The real entry's file name promises the official file's hash: point it at ours (unreachable host).
    monkeypatch.setattr(MobileNet_V3_Small_Weights, "url", property(lambda self: f"http://127.0.0.1:9/{name}"))

    model = models.mobilenet_v3_small(weights="DEFAULT", features_only=True, out_indices=(1, 3))
    kept = model.state_dict()
    assert set(kept) == {k for k in checkpoint if k.startswith(tuple(f"features.{i}." for i in range(5)))}
    model.load_state_dict({k: checkpoint[k] for k in kept}, strict=True)
    assert all(torch.equal(kept[k], checkpoint[k]) for k in kept)
    assert models.get_transforms(model).crop_size == [224]
    assert [(i["name"], i["stride"]) for i in model.feature_info] == [("features.1", 4), ("features.4", 16)]


def test_bad_requests_raise_clear_errors() -> None:
    with torch.device("meta"), _SkipInPlaceOnMeta():
        _bad_requests()


def _bad_requests() -> None:
    with pytest.raises(ValueError, match=r"out_indices \[5\] of resnet18: each must lie in \[-5, 4\].*0: relu"):
        get_model("resnet18", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match=r"\[-6, 5\]"):
        models.vgg11(features_only=True, out_indices=[-7])
    with pytest.raises(ValueError, match="name a stage twice"):
        models.resnet18(features_only=True, out_indices=(1, -4))
    with pytest.raises(ValueError, match="each must lie"):
        models.resnet18(features_only=True, out_indices=())
    with pytest.raises(TypeError, match="sequence of stage indices"):
        models.resnet18(features_only=True, out_indices=3)
    with pytest.raises(TypeError, match="must hold ints"):
        models.resnet18(features_only=True, out_indices=(1.0,))
    with pytest.raises(ValueError, match="pass features_only=True too"):
        models.resnet18(out_indices=(1,))
    with pytest.raises(TypeError, match="features_only must be True or False"):
        models.resnet18(features_only="yes")
    for other in ("fasterrcnn_resnet50_fpn", "fcn_resnet50", "quantized_resnet18", "r3d_18"):
        with pytest.raises(ValueError, match=f"classification builders.*{other} is a"):
            get_model(other, features_only=True)


def test_bad_inputs_raise_clear_errors() -> None:
    with torch.device("meta"), _SkipInPlaceOnMeta():
        resnet = models.resnet18(features_only=True)
        vit = models.vit_b_16(features_only=True)
        inception = models.inception_v3(features_only=True)
    with pytest.raises(ValueError, match="expects 3 channels"):
        resnet(torch.empty(1, 1, 64, 64, device="meta"))
    with pytest.raises(TypeError, match="floating point"):
        resnet(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="built for 224x224"):
        vit(torch.empty(1, 3, 64, 64, device="meta"))
    with pytest.raises(ValueError, match="at least 75x75"):
        inception(torch.empty(1, 3, 64, 64, device="meta"))


def test_detection_backbones_take_out_indices_and_feature_maps() -> None:
    torch.manual_seed(0)
    by_alias = resnet_fpn_backbone(backbone_name="resnet18", weights=None, out_indices=(2, -1))
    torch.manual_seed(0)
    by_name = resnet_fpn_backbone(backbone_name="resnet18", weights=None, returned_layers=[2, 4])
    assert list(by_alias.state_dict()) == list(by_name.state_dict())
    assert [(i["name"], i["channels"], i["stride"]) for i in by_alias.feature_info] == [
        ("layer2", 128, 8),
        ("layer4", 512, 32),
    ]
    with pytest.raises(ValueError, match="either returned_layers or out_indices"):
        resnet_fpn_backbone(backbone_name="resnet18", weights=None, returned_layers=[2], out_indices=(3,))
    with pytest.raises(ValueError, match=r"range \[1,4\]"):
        resnet_fpn_backbone(backbone_name="resnet18", weights=None, out_indices=(0, 1))

    mobile = mobilenet_backbone(backbone_name="mobilenet_v3_small", weights=None, fpn=True, out_indices=(-3, -1))
    assert [(i["name"], i["stride"]) for i in mobile.feature_info] == [("features.4", 16), ("features.12", 32)]

    # A features-only body feeds a pyramid directly: its maps, its channels.
    body = models.resnet18(features_only=True, out_indices=(2, 3, 4))
    fpn = BackboneWithFPN(body, out_channels=32)
    assert fpn.feature_info == body.feature_info
    levels = fpn(torch.randn(1, 3, 64, 64))
    assert list(levels) == ["0", "1", "2", "pool"] and [v.shape[1] for v in levels.values()] == [32] * 4
    assert levels["0"].shape[-1] == 8
