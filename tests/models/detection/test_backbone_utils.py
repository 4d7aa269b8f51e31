"""Detection backbones against the reference: state_dict keys, outputs, trainable_layers, errors."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.models.detection import backbone_utils as ours
from visionzoo.ops import FrozenBatchNorm2d, LastLevelP6P7

theirs = reference.models.detection.backbone_utils


def build_pair(function: str, per_side: dict | None = None, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Both sides' ``function(weights=None, **kwargs)`` under one seed; ``per_side`` maps an argument to its
    (reference, ours) values, for arguments that are themselves modules of either library."""
    per_side = per_side or {}
    torch.manual_seed(0)
    ref = getattr(theirs, function)(weights=None, **kwargs, **{k: v[0] for k, v in per_side.items()}).eval()
    torch.manual_seed(0)
    mine = getattr(ours, function)(weights=None, **kwargs, **{k: v[1] for k, v in per_side.items()}).eval()
    assert list(mine.state_dict()) == list(ref.state_dict())
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def trainable(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def assert_same_outputs(mine: torch.nn.Module, ref: torch.nn.Module, size: tuple[int, int] = (64, 96)) -> None:
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = mine(x), ref(x)
    if isinstance(b, torch.Tensor):
        assert torch.equal(a, b)
        return
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resnet_fpn_backbone_matches_the_reference() -> None:
    mine, ref = build_pair("resnet_fpn_backbone", backbone_name="resnet18")
    assert trainable(mine) == trainable(ref)
    assert mine.out_channels == ref.out_channels == 256
    assert_same_outputs(mine, ref)


def build_on_meta(function: str, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Ours and the reference's without running or initialising them: for keys and frozen parameters."""
    with torch.device("meta"):
        return getattr(ours, function)(weights=None, **kwargs), getattr(theirs, function)(weights=None, **kwargs)


@pytest.mark.parametrize("trainable_layers", range(6))
def test_resnet_trainable_layers_freeze_what_the_reference_freezes(trainable_layers: int) -> None:
    for norm_layer in (FrozenBatchNorm2d, torch.nn.BatchNorm2d):
        mine, ref = build_on_meta(
            "resnet_fpn_backbone", backbone_name="resnet50", trainable_layers=trainable_layers, norm_layer=norm_layer
        )
        assert list(mine.state_dict()) == list(ref.state_dict())
        assert trainable(mine) == trainable(ref)


@pytest.mark.parametrize("trainable_layers", range(7))
def test_mobilenet_trainable_layers_freeze_what_the_reference_freezes(trainable_layers: int) -> None:
    for name, fpn in (("mobilenet_v3_large", True), ("mobilenet_v2", False)):
        mine, ref = build_on_meta("mobilenet_backbone", backbone_name=name, fpn=fpn, trainable_layers=trainable_layers)
        assert list(mine.state_dict()) == list(ref.state_dict())
        assert trainable(mine) == trainable(ref)


def test_resnet_fpn_backbone_options() -> None:
    mine, ref = build_pair(
        "resnet_fpn_backbone",
        backbone_name="resnet18",
        returned_layers=[2, 4],
        per_side={
            "extra_blocks": (reference.ops.feature_pyramid_network.LastLevelP6P7(256, 256), LastLevelP6P7(256, 256))
        },
        norm_layer=torch.nn.BatchNorm2d,
        trainable_layers=5,
    )
    assert trainable(mine) == trainable(ref)  # with a trainable norm, bn1 trains too
    assert_same_outputs(mine, ref)
    big, _ = build_on_meta("resnet_fpn_backbone", backbone_name="resnet50")
    assert isinstance(big.body.bn1, FrozenBatchNorm2d) and isinstance(big.body.layer4[2].bn3, FrozenBatchNorm2d)


@pytest.mark.parametrize(
    ("backbone_name", "fpn", "trainable_layers"),
    [("mobilenet_v3_large", True, 3), ("mobilenet_v2", False, 0), ("mobilenet_v3_small", True, 6)],
)
def test_mobilenet_backbone_matches_the_reference(backbone_name: str, fpn: bool, trainable_layers: int) -> None:
    mine, ref = build_pair(
        "mobilenet_backbone", backbone_name=backbone_name, fpn=fpn, trainable_layers=trainable_layers
    )
    assert trainable(mine) == trainable(ref)
    assert mine.out_channels == ref.out_channels == 256
    assert_same_outputs(mine, ref)


def test_mobilenet_backbone_returned_layers() -> None:
    mine, ref = build_pair(
        "mobilenet_backbone", backbone_name="mobilenet_v3_small", fpn=True, returned_layers=[1, 3, 5]
    )
    assert_same_outputs(mine, ref, size=(96, 64))


def test_validate_trainable_layers_matches_the_reference() -> None:
    for args in [(True, None, 5, 3), (True, 0, 5, 3), (True, 5, 5, 3), (False, None, 6, 3)]:
        assert ours._validate_trainable_layers(*args) == theirs._validate_trainable_layers(*args)
    with pytest.warns(UserWarning, match="has no effect"):
        assert ours._validate_trainable_layers(False, 2, 5, 3) == 5
    with pytest.raises(ValueError, match=r"range \[0,5\]"):
        ours._validate_trainable_layers(True, 6, 5, 3)


def test_backbone_errors() -> None:
    with pytest.raises(ValueError, match="Unknown backbone_name 'resnet5'.*resnet50"):
        ours.resnet_fpn_backbone(backbone_name="resnet5", weights=None)
    with pytest.raises(ValueError, match=r"range \[0,5\]"):
        ours.resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=6)
    with pytest.raises(ValueError, match=r"range \[1,4\]"):
        ours.resnet_fpn_backbone(backbone_name="resnet18", weights=None, returned_layers=[0, 1])
    with pytest.raises(ValueError, match=r"range \[0,6\]"):
        ours.mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=7)
    with pytest.raises(ValueError, match=r"range \[0,5\]"):
        ours.mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, returned_layers=[6])
    with pytest.raises(TypeError, match="unexpected keyword"):
        ours.resnet_fpn_backbone(backbone_name="resnet18", weights=None, pretrained_backbone=True)
    with pytest.raises(ValueError, match="in_channels_list"):
        ours.BackboneWithFPN(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), {"0": "0"}, [4, 8], 16)


def test_legacy_pretrained_false_builds_random_weights() -> None:
    with pytest.warns(UserWarning, match="pretrained"):
        model = ours.resnet_fpn_backbone(backbone_name="resnet18", pretrained=False)
    assert model.out_channels == 256
