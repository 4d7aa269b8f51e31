"""torch.fx feature extraction: the reference's node names and outputs on a model of every classification family,
on detection and segmentation backbones, on optimised models; and the errors."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import pair
from visionzoo import models
from visionzoo.models import detection, segmentation
from visionzoo.models.feature_extraction import create_feature_extractor, get_graph_node_names

from_reference = reference.feature_extraction


def _builders(name: str, **kwargs: Any) -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    return (
        lambda: reference.models.get_model(name, weights=None, **kwargs),
        lambda: models.get_model(name, weights=None, **kwargs),
    )


def _classes(path: str, **kwargs: Any) -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    module, cls = path.rsplit(".", 1)
    return (
        lambda: getattr(getattr(reference.models, module), cls)(**kwargs),
        lambda: getattr(getattr(models, module), cls)(**kwargs),
    )


def _fpn_backbone() -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    return (
        lambda: reference.models.detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet18", weights=None),
        lambda: detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet18", weights=None),
    )


def _segmentation_body(name: str) -> tuple[Callable[[], nn.Module], Callable[[], nn.Module]]:
    return (
        lambda: reference.models.get_model(name, weights=None, weights_backbone=None).backbone,
        lambda: segmentation.__dict__[name](weights=None, weights_backbone=None).backbone,
    )


_TINY_VIT = {"image_size": 32, "patch_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}

# One model per family (a small configuration where the builders are large), its input size, and a module-path
# prefix to extract besides nodes picked along the graph.
CASES: dict[str, tuple[tuple[Callable[[], nn.Module], Callable[[], nn.Module]], int, str]] = {
    "alexnet": (_builders("alexnet"), 64, "features.5"),
    "vgg11": (_builders("vgg11"), 32, "features.10"),
    "squeezenet1_1": (_builders("squeezenet1_1"), 64, "features.6"),
    "resnet18": (_builders("resnet18"), 64, "layer2"),
    "resnext50_32x4d": (_builders("resnext50_32x4d"), 64, "layer3.1"),
    "wide_resnet50_2": (_builders("wide_resnet50_2"), 64, "layer1"),
    "densenet121": (_builders("densenet121"), 64, "features.denseblock2"),
    "googlenet": (_builders("googlenet"), 64, "inception4a"),
    "inception_v3": (_builders("inception_v3"), 80, "Mixed_6b"),
    "mobilenet_v2": (_builders("mobilenet_v2"), 64, "features.4"),
    "mobilenet_v3_small": (_builders("mobilenet_v3_small"), 64, "features.4.block"),
    "mnasnet0_5": (_builders("mnasnet0_5"), 64, "layers.9"),
    "shufflenet_v2_x0_5": (_builders("shufflenet_v2_x0_5"), 64, "stage3"),
    "efficientnet_b0": (_builders("efficientnet_b0"), 64, "features.3"),
    "efficientnet_v2_s": (_builders("efficientnet_v2_s"), 64, "features.2.1"),
    "regnet_y_400mf": (_builders("regnet_y_400mf"), 64, "trunk_output.block2"),
    "convnext_tiny": (_builders("convnext_tiny"), 64, "features.3"),
    "vit": (_classes("vision_transformer.VisionTransformer", **_TINY_VIT), 32, "encoder.layers.encoder_layer_1"),
    "swin_t": (_builders("swin_t"), 64, "features.3"),
    "swin_v2_t": (_builders("swin_v2_t"), 64, "features.5.1"),
}
BACKBONES = {
    "resnet_fpn_backbone": (_fpn_backbone(), 64, "body.layer3"),
    "fcn_resnet50.backbone": (_segmentation_body("fcn_resnet50"), 64, "layer3"),
    "lraspp_mobilenet_v3_large.backbone": (_segmentation_body("lraspp_mobilenet_v3_large"), 64, "4"),
}
CASES.update(BACKBONES)


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module, int, str]:
    (make_reference, make_ours), size, prefix = CASES[request.param]
    ref, ours = pair(make_reference, make_ours, check_init=False)
    return request.param, ref, ours, size, prefix


def _quietly(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # train and eval graphs differ on purpose in some families
        return function(*args, **kwargs)


def test_node_names_match_reference(case: tuple[str, nn.Module, nn.Module, int, str]) -> None:
    _, ref, ours, _, _ = case
    expected_train, expected_eval = _quietly(from_reference.get_graph_node_names, ref)
    train, evaluation = _quietly(get_graph_node_names, ours)
    assert train == expected_train
    assert evaluation == expected_eval
    assert not ours.training  # the mode the model came in


def test_features_match_reference(case: tuple[str, nn.Module, nn.Module, int, str]) -> None:
    _, ref, ours, size, prefix = case
    names = _quietly(get_graph_node_names, ours)[1]
    tensors = [name for name in names[1:] if "." in name]  # nodes inside modules, not the input
    picked = {prefix: "prefix", tensors[len(tensors) // 3]: "third", tensors[2 * len(tensors) // 3]: "two_thirds"}
    expected_extractor = _quietly(from_reference.create_feature_extractor, ref, picked)
    extractor = _quietly(create_feature_extractor, ours, picked)
    assert isinstance(extractor, torch.fx.GraphModule) and not extractor.training
    # Only what the requested nodes need is kept, under the model's own keys.
    assert list(extractor.state_dict()) == list(expected_extractor.state_dict())
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        expected, actual = expected_extractor(x), extractor(x)
    assert list(actual) == list(expected)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_large", "inception_v3"])
def test_quantizable_models_node_names_match_reference(name: str) -> None:
    torch.manual_seed(0)
    expected = _quietly(from_reference.get_graph_node_names, reference.models.quantization.__dict__[name]())
    assert _quietly(get_graph_node_names, models.quantization.__dict__[name]()) == expected


def test_maxvit_module_outputs_match_reference() -> None:
    """MaxViT's partition attention differs inside from the reference's (ours runs at any input size that the
    partitions divide, the reference's only at the size it was built for), so node names differ there; every
    module's output is the same node by its path."""
    small = {"stem_channels": 16, "partition_size": 4, "block_channels": [16, 32], "block_layers": [1, 2]}
    small |= {"head_dim": 8, "num_classes": 5, "stochastic_depth_prob": 0.2}
    ref, ours = pair(*_classes("maxvit.MaxVit", input_size=(32, 32), **small), check_init=False)
    picked = {
        "stem": "stem",
        "blocks.0.layers.0.layers.MBconv": "mbconv",
        "blocks.1.layers.0.layers.window_attention.attn_layer": "attention",
        "blocks.1.layers.0": "block",
        "blocks.1": "stage",
        "classifier": "logits",
    }
    expected_extractor = _quietly(from_reference.create_feature_extractor, ref, picked)
    extractor = _quietly(create_feature_extractor, ours, picked)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected, actual = expected_extractor(x), extractor(x)
    assert list(actual) == list(expected)
    for name, value in expected.items():
        # Deep inside an untrained MaxViT activations reach ~10: float32 rounding is relative to that.
        scale = max(1.0, value.abs().max().item())
        torch.testing.assert_close(actual[name], value, atol=1e-4 * scale, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return models.resnet18().eval()


def test_train_and_eval_graphs_are_switched_with_the_mode() -> None:
    torch.manual_seed(0)
    model = models.googlenet(weights=None, aux_logits=True, init_weights=False)
    with pytest.warns(UserWarning, match="subsequence"):
        train, evaluation = get_graph_node_names(model)
    assert "aux1.fc2" in train and "aux1.fc2" not in evaluation
    extractor = create_feature_extractor(
        model,
        train_return_nodes={"aux1.fc2": "aux", "inception5b": "last"},
        eval_return_nodes={"inception5b": "last"},
        suppress_diff_warning=True,
    )
    assert extractor.training
    x = torch.randn(2, 3, 64, 64)
    assert set(extractor(x)) == {"aux", "last"}
    extractor.eval()
    copied = copy.deepcopy(extractor)
    assert not copied.training
    with torch.inference_mode():
        assert set(extractor(x)) == {"last"}
        torch.testing.assert_close(copied(x), extractor(x))
    copied.train()
    assert set(copied(x)) == {"aux", "last"}


def test_list_form_prefixes_and_output_names(resnet18: nn.Module) -> None:
    extractor = create_feature_extractor(resnet18, ["layer1", "layer4.1.relu_1"])
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        out = extractor(x)
        assert list(out) == ["layer1", "layer4.1.relu_1"]
        torch.testing.assert_close(
            out["layer1"], resnet18.layer1(resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x)))))
        )
        assert out["layer4.1.relu_1"].shape == (1, 512, 2, 2)
    # The head is not needed, so it is gone; the remaining keys are the model's own.
    assert not any(key.startswith("fc.") for key in extractor.state_dict())
    assert set(extractor.state_dict()) <= set(resnet18.state_dict())


def test_optimised_and_inplace_paths_still_trace(resnet18: nn.Module) -> None:
    expected = _quietly(from_reference.get_graph_node_names, reference.models.resnet18())
    optimised = models.optimize_for_inference(resnet18, compile=False, onednn_linear=True)
    # The plain model is untouched and still gives the reference's graph; the optimised one (folded BatchNorms,
    # oneDNN linear layers) traces too and extracts the same features.
    assert get_graph_node_names(resnet18) == expected
    assert get_graph_node_names(optimised.module)[1] == expected[1]
    plain = create_feature_extractor(resnet18, {"layer3": "c4", "fc": "logits"})
    fast = create_feature_extractor(optimised.module, {"layer3": "c4", "fc": "logits"})
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-4, rtol=1e-4)


def test_bad_return_nodes(resnet18: nn.Module) -> None:
    with pytest.raises(ValueError, match="give return_nodes"):
        create_feature_extractor(resnet18)
    with pytest.raises(ValueError, match="not both"):
        create_feature_extractor(resnet18, ["layer1"], train_return_nodes=["layer1"], eval_return_nodes=["layer1"])
    with pytest.raises(ValueError, match="eval_return_nodes is missing"):
        create_feature_extractor(resnet18, train_return_nodes=["layer1"])
    with pytest.raises(ValueError, match=r"'layer1\.0\.relu_2' is not in the train-mode graph.*layer1\.0\.relu_1"):
        create_feature_extractor(resnet18, ["layer1.0.relu_2"])
    with pytest.raises(ValueError, match="'lay' is not in"):  # a prefix must be whole path components
        create_feature_extractor(resnet18, ["lay"])
    with pytest.raises(TypeError, match="list of node names or a dict"):
        create_feature_extractor(resnet18, "layer1")
    with pytest.raises(ValueError, match="return_nodes is empty"):
        create_feature_extractor(resnet18, [])
    assert not resnet18.training


class _ScaledSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv(x)
        logits.mul_(3.0).add_(1.0)  # results unused: only the change to ``logits`` matters
        return logits.softmax(dim=1)


def test_in_place_ops_that_later_nodes_read_are_kept() -> None:
    model = _ScaledSoftmax().eval()
    x = torch.randn(2, 3, 4, 4)
    extractor = create_feature_extractor(model, ["softmax"])
    assert [node.target for node in extractor.graph.nodes if node.op == "call_method"] == ["mul_", "add_", "softmax"]
    with torch.inference_mode():
        torch.testing.assert_close(extractor(x)["softmax"], model(x))
        # Nothing needs the in-place ops after the convolution when it is the only output.
        conv_only = create_feature_extractor(model, ["conv"])
        torch.testing.assert_close(conv_only(x)["conv"], model.conv(x))
    assert not any(node.op == "call_method" for node in conv_only.graph.nodes)


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gate = _DataDependent()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))


def test_untraceable_module_is_named_with_a_way_out() -> None:
    model = _Wrapper()
    with pytest.raises(RuntimeError, match=r"module 'gate' \(.*_DataDependent\).*leaf_modules.*_DataDependent"):
        get_graph_node_names(model)
    with pytest.raises(RuntimeError, match="could not trace _Wrapper in train mode"):
        create_feature_extractor(model, ["conv"])
    assert model.training
    # As a leaf, the module is one node and the model traces.
    extractor = create_feature_extractor(model, ["conv", "gate"], tracer_kwargs={"leaf_modules": [_DataDependent]})
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(extractor(x)["gate"], model(x))
