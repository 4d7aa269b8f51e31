"""In-place reuse of a convolution's or linear layer's output (visionzoo.ops.buffer_reuse): bit-identical
results, and the plain call wherever reuse could be observed."""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

import visionzoo.models as vz
from visionzoo.ops import FrozenBatchNorm2d
from visionzoo.ops.buffer_reuse import ReusingSequential, apply_reusing, pair_forward


def _trained_bn(channels: int = 6) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn.eval()


def _fresh(shape: tuple[int, ...] = (2, 6, 5, 5)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def test_eval_batch_norm_writes_into_fresh_tensor_bit_identically() -> None:
    bn = _trained_bn()
    fresh = _fresh()
    expected = bn(fresh)
    with torch.inference_mode():
        fresh_inference = fresh.clone()
        out = apply_reusing(bn, fresh_inference)
    assert out is fresh_inference
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_gelu_writes_into_fresh_tensor_with_its_approximation() -> None:
    for approximate in ("none", "tanh"):
        gelu = nn.GELU(approximate=approximate)
        fresh = _fresh((3, 7))
        expected = gelu(fresh)
        with torch.no_grad():
            out = apply_reusing(gelu, fresh)
        assert out is fresh
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_reuse_is_skipped_where_it_could_be_observed() -> None:
    bn = _trained_bn()

    def check_plain_call(layer: nn.Module, producer: nn.Module | None = None, grad: bool = False) -> None:
        fresh = _fresh()
        before = fresh.clone()
        with torch.set_grad_enabled(grad):
            out = apply_reusing(layer, fresh, producer)
        assert out is not fresh
        torch.testing.assert_close(fresh, before, atol=0, rtol=0)

    check_plain_call(bn, grad=True)  # autograd on
    check_plain_call(bn.train())  # batch statistics
    bn.eval()
    check_plain_call(FrozenBatchNorm2d(6))  # not a plain BatchNorm2d
    check_plain_call(nn.ReLU())  # not a layer that is ever reused

    handle = bn.register_forward_hook(lambda module, args, output: None)
    check_plain_call(bn)
    handle.remove()
    producer = nn.Conv2d(6, 6, 1)
    handle = producer.register_forward_hook(lambda module, args, output: None)
    check_plain_call(bn, producer)
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, output: None)
    try:
        check_plain_call(bn)
    finally:
        handle.remove()


def test_input_errors_are_the_layers_own() -> None:
    bn = _trained_bn()
    with torch.no_grad():
        for bad in (_fresh((6, 5, 5)), _fresh().double()):
            try:
                bn(bad.clone())
            except (ValueError, RuntimeError) as error:
                expected: type[Exception] | None = type(error)
            else:
                expected = None
            try:
                out = apply_reusing(bn, bad.clone())
            except (ValueError, RuntimeError) as error:
                assert type(error) is expected
            else:
                assert expected is None
                torch.testing.assert_close(out, bn(bad), atol=0, rtol=0)


def test_producer_hook_keeps_the_tensor_it_was_given() -> None:
    """A hook that stores a convolution's output (Grad-CAM and feature capture do) must see it unchanged."""
    model = vz.resnet18().eval()
    kept: list[torch.Tensor] = []
    model.layer1[0].conv1.register_forward_hook(lambda module, args, output: kept.append(output))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        model(x)
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        torch.testing.assert_close(kept[0], model.layer1[0].conv1(stem), atol=0, rtol=0)


def test_models_give_identical_outputs_with_and_without_reuse() -> None:
    x = torch.randn(2, 3, 64, 64)
    for name in ("resnet18", "mobilenet_v2", "densenet121", "convnext_tiny", "mnasnet0_5", "vgg11_bn"):
        model = getattr(vz, name)(num_classes=10).eval()
        assert any(isinstance(m, ReusingSequential) for m in model.modules()), name
        with torch.no_grad():
            reused = model(x)
        plain = model(x).detach()  # autograd on: every layer is called normally
        torch.testing.assert_close(reused, plain, atol=0, rtol=0, msg=name)


def test_sequential_and_pair_match_plain_calls_and_trace() -> None:
    layers = ReusingSequential(nn.Conv2d(3, 6, 3, padding=1), _trained_bn(), nn.ReLU(), nn.Flatten(), nn.Linear(150, 4))
    mlp = ReusingSequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        plain = x
        for layer in [*layers, *mlp]:
            plain = layer(plain)
        torch.testing.assert_close(mlp(layers(x)), plain, atol=0, rtol=0)
        torch.testing.assert_close(pair_forward(layers[0], layers[1], x), layers[1](layers[0](x)), atol=0, rtol=0)
        traced = torch.fx.symbolic_trace(nn.Sequential(layers, mlp))
        torch.testing.assert_close(traced(x), plain, atol=0, rtol=0)
    # A producer that is not a Conv2d or Linear may return a tensor its caller still holds: no reuse.
    identity_then_bn = ReusingSequential(nn.Identity(), _trained_bn(3))
    before = x.clone()
    with torch.no_grad():
        identity_then_bn(x)
        pair_forward(nn.Identity(), _trained_bn(3), x)
    torch.testing.assert_close(x, before, atol=0, rtol=0)


def test_squeeze_excitation_reuses_a_conv_block_output_unless_observed() -> None:
    from visionzoo.ops import Conv2dNormActivation, SqueezeExcitation

    torch.manual_seed(0)
    block = Conv2dNormActivation(3, 8, norm_layer=_trained_bn_factory).eval()
    se = SqueezeExcitation(8, 4).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = se(block(x))
        fresh = block(x)
        out = apply_reusing(se, fresh, block)
        assert out is fresh
        torch.testing.assert_close(out, expected, atol=0, rtol=0)
        torch.testing.assert_close(ReusingSequential(block, se)(x), expected, atol=0, rtol=0)

        # A hook inside the block may hold the output (the in-place activation returns the same tensor).
        handle = block[2].register_forward_hook(lambda module, args, output: None)
        fresh = block(x)
        assert apply_reusing(se, fresh, block) is not fresh
        handle.remove()

        class Doubled(SqueezeExcitation):  # a subclass with its own forward (as the quantizable one has)
            def forward(self, input: torch.Tensor) -> torch.Tensor:
                return 2 * super().forward(input)

        doubled = Doubled(8, 4).eval()
        doubled.load_state_dict(se.state_dict())
        torch.testing.assert_close(apply_reusing(doubled, block(x), block), 2 * expected, atol=0, rtol=0)

        # A block whose convolution was replaced returns what it was given: nothing may be written into it.
        pruned = Conv2dNormActivation(8, 8, norm_layer=None, activation_layer=None).eval()
        pruned[0] = nn.Identity()
        kept = torch.randn(2, 8, 6, 6)
        before = kept.clone()
        ReusingSequential(pruned, se)(kept)
        torch.testing.assert_close(kept, before, atol=0, rtol=0)


def _trained_bn_factory(channels: int) -> nn.BatchNorm2d:
    return _trained_bn(channels)


def test_regnet_shortcut_add_leaves_a_hooked_branch_output_alone() -> None:
    model = vz.regnet_y_400mf(num_classes=10).eval()
    block = model.trunk_output.block1[0]
    kept: list[torch.Tensor] = []
    block.f.register_forward_hook(lambda module, args, output: kept.append(output.clone() if not kept else output))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)  # the first call stores a copy, the second the tensor itself
        model(x)
    torch.testing.assert_close(kept[1], kept[0], atol=0, rtol=0)
