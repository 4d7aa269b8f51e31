"""Parity of the shared layers in ``visionzoo.ops.misc`` with the reference, plus their own contracts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch
import torch.fx
from torch import nn

import visionzoo.ops as ops
from tests.reference import ops as ref_ops


def _randomize_state(module: nn.Module, seed: int = 0) -> None:
    """Give every floating tensor (BatchNorm weights and statistics included) non-default values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=gen)
                # Variances must stay positive; every other tensor gets both signs.
                tensor.copy_(values + 0.5 if name.endswith("running_var") else values * 2 - 1)


def _keys_and_shapes(module: nn.Module) -> list[tuple[str, torch.Size]]:
    return [(key, tensor.shape) for key, tensor in module.state_dict().items()]


def _assert_parity(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    _randomize_state(theirs)
    assert _keys_and_shapes(ours) == _keys_and_shapes(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x.clone()), theirs(x.clone()), rtol=0, atol=0)
    assert repr(ours) == repr(theirs)


def _assert_same_signature(ours: Callable[..., Any], theirs: Callable[..., Any]) -> None:
    ours_params = [(p.name, p.default, p.kind) for p in inspect.signature(ours).parameters.values()]
    theirs_params = [(p.name, p.default, p.kind) for p in inspect.signature(theirs).parameters.values()]
    assert ours_params == theirs_params


# ---------------------------------------------------------------------------------------------------------------
# Conv-Norm-Activation
# ---------------------------------------------------------------------------------------------------------------

CONV2D_CASES = [
    dict(),
    dict(kernel_size=5, stride=2, groups=2),
    dict(kernel_size=(3, 5), dilation=(2, 1)),
    dict(kernel_size=3, dilation=2),
    dict(kernel_size=4),
    dict(kernel_size=1, norm_layer=None),
    dict(norm_layer=None, activation_layer=None),
    dict(padding=0, bias=True),
    dict(padding="same", activation_layer=nn.GELU, inplace=None),
    dict(norm_layer=partial(nn.BatchNorm2d, eps=1e-3), activation_layer=nn.Hardswish, inplace=False),
    dict(kernel_size=(1, 3), stride=(2, 1), padding=(0, 1), dilation=(1, 1), bias=False, norm_layer=None),
]


@pytest.mark.parametrize("kwargs", CONV2D_CASES, ids=str)
def test_conv2d_norm_activation_parity(kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    theirs = ref_ops.Conv2dNormActivation(4, 8, **kwargs)
    ours = ops.Conv2dNormActivation(4, 8, **kwargs)
    assert ours.out_channels == 8
    _assert_parity(ours, theirs, torch.randn(2, 4, 9, 11))


CONV3D_CASES = [
    dict(),
    dict(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
    dict(kernel_size=(3, 1, 1), dilation=(2, 1, 1), activation_layer=None),
    dict(kernel_size=3, norm_layer=None, groups=4),
]


@pytest.mark.parametrize("kwargs", CONV3D_CASES, ids=str)
def test_conv3d_norm_activation_parity(kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    theirs = ref_ops.Conv3dNormActivation(4, 8, **kwargs)
    ours = ops.Conv3dNormActivation(4, 8, **kwargs)
    _assert_parity(ours, theirs, torch.randn(2, 4, 5, 7, 6))


def test_conv_norm_activation_training_mode_matches() -> None:
    torch.manual_seed(0)
    theirs = ref_ops.Conv2dNormActivation(3, 6, stride=2)
    ours = ops.Conv2dNormActivation(3, 6, stride=2)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs)
    (grad_ours,) = torch.autograd.grad(out_ours.square().sum(), x)
    (grad_theirs,) = torch.autograd.grad(out_theirs.square().sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs)
    torch.testing.assert_close(ours.state_dict(), theirs.state_dict())  # running statistics moved alike


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=0, out_channels=8),
        dict(in_channels=4, out_channels=-1),
        dict(in_channels=4, out_channels=8, groups=0),
    ],
    ids=str,
)
def test_conv_norm_activation_rejects_bad_sizes(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ops.Conv2dNormActivation(**kwargs)


def test_conv_norm_activation_rejects_wrong_tuple_length() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        ops.Conv3dNormActivation(4, 8, kernel_size=(3, 3))


# ---------------------------------------------------------------------------------------------------------------
# Squeeze-and-Excitation
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [(16, 4), (8, 2, nn.SiLU, nn.Hardsigmoid), (6, 12, nn.ReLU, nn.Sigmoid)],
    ids=str,
)
def test_squeeze_excitation_parity(args: tuple[Any, ...]) -> None:
    torch.manual_seed(0)
    theirs = ref_ops.SqueezeExcitation(*args)
    ours = ops.SqueezeExcitation(*args)
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()]
    _assert_parity(ours, theirs, torch.randn(2, args[0], 5, 7))


def test_squeeze_excitation_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="squeeze_channels"):
        ops.SqueezeExcitation(16, 0)


# ---------------------------------------------------------------------------------------------------------------
# FrozenBatchNorm2d
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.0])
def test_frozen_batchnorm_parity(eps: float) -> None:
    _assert_parity(ops.FrozenBatchNorm2d(5, eps=eps), ref_ops.FrozenBatchNorm2d(5, eps=eps), torch.randn(2, 5, 4, 3))


def test_frozen_batchnorm_repr_and_state() -> None:
    frozen = ops.FrozenBatchNorm2d(7, eps=1e-3)
    assert repr(frozen) == "FrozenBatchNorm2d(7, eps=0.001)"
    assert list(frozen.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert list(frozen.parameters()) == []


def _trained_batchnorm(num_features: int = 6, **kwargs: Any) -> nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(num_features, **kwargs)
    _randomize_state(bn)
    with torch.no_grad():
        bn(torch.randn(8, num_features, 4, 4) * 3 + 1)  # moves the statistics and the step counter
    return bn.eval()


@pytest.mark.parametrize("assign", [False, True])
def test_frozen_batchnorm_loads_batchnorm_state_dict(assign: bool) -> None:
    bn = _trained_batchnorm()
    state_dict = bn.state_dict()
    assert "num_batches_tracked" in state_dict
    # Models are built on the meta device and loaded by assignment; the plain path must work too.
    with torch.device("meta" if assign else "cpu"):
        frozen = ops.FrozenBatchNorm2d(6)
    frozen.load_state_dict(state_dict, strict=True, assign=assign)
    assert "num_batches_tracked" in state_dict  # the caller's dict is left alone
    x = torch.randn(3, 6, 5, 5)
    torch.testing.assert_close(frozen(x), bn(x))


def test_frozen_batchnorm_strict_load_still_reports_missing_keys() -> None:
    state_dict = _trained_batchnorm().state_dict()
    del state_dict["running_var"]
    with pytest.raises(RuntimeError, match="running_var"):
        ops.FrozenBatchNorm2d(6).load_state_dict(state_dict, strict=True)


def test_frozen_batchnorm_from_batchnorm() -> None:
    bn = _trained_batchnorm(eps=1e-3)
    frozen = ops.FrozenBatchNorm2d.from_batchnorm(bn)
    assert frozen.eps == 1e-3
    assert list(frozen.parameters()) == []
    x = torch.randn(3, 6, 5, 5)
    expected = bn(x)
    torch.testing.assert_close(frozen(x), expected)
    # A copy, not a view: later changes to the BatchNorm do not leak into the frozen layer.
    with torch.no_grad():
        for tensor in bn.state_dict().values():
            tensor.add_(1)
    torch.testing.assert_close(frozen(x), expected)


def test_frozen_batchnorm_from_batchnorm_without_affine() -> None:
    bn = _trained_batchnorm(affine=False)
    x = torch.randn(3, 6, 5, 5)
    torch.testing.assert_close(ops.FrozenBatchNorm2d.from_batchnorm(bn)(x), bn(x))


def test_frozen_batchnorm_from_batchnorm_needs_running_stats() -> None:
    with pytest.raises(ValueError, match="running statistics"):
        ops.FrozenBatchNorm2d.from_batchnorm(nn.BatchNorm2d(4, track_running_stats=False))


def test_convert_frozen_batchnorm_replaces_nested_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        ops.Conv2dNormActivation(3, 6),
        nn.Sequential(ops.Conv2dNormActivation(6, 6), nn.BatchNorm2d(6)),
    )
    for seed, module in enumerate(model.modules()):
        if isinstance(module, nn.BatchNorm2d):
            _randomize_state(module, seed=seed)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    keys = list(model.state_dict())

    converted = ops.convert_frozen_batchnorm(model)
    assert converted is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, ops.FrozenBatchNorm2d) for m in model.modules()) == 3
    torch.testing.assert_close(model(x), expected)
    # Only the step counters go; every other key, and so every checkpoint, still fits.
    assert list(model.state_dict()) == [k for k in keys if not k.endswith("num_batches_tracked")]
    assert isinstance(ops.convert_frozen_batchnorm(nn.BatchNorm2d(3)), ops.FrozenBatchNorm2d)
    bn1d = nn.BatchNorm1d(6)  # not a 2-d BatchNorm: left as is
    assert ops.convert_frozen_batchnorm(bn1d) is bn1d


def test_frozen_batchnorm_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_features"):
        ops.FrozenBatchNorm2d(-3)
    with pytest.raises(ValueError, match="eps"):
        ops.FrozenBatchNorm2d(3, eps=-1.0)


# ---------------------------------------------------------------------------------------------------------------
# Stochastic Depth
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_identity_when_inactive(mode: str) -> None:
    x = torch.randn(4, 3, 2, 2)
    assert ops.stochastic_depth(x, 0.5, mode, training=False) is x
    assert ops.stochastic_depth(x, 0.0, mode, training=True) is x
    layer = ops.StochasticDepth(0.5, mode).eval()
    assert layer(x) is x


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_p_one_zeroes_everything(mode: str) -> None:
    out = ops.stochastic_depth(torch.randn(4, 3, 2, 2), 1.0, mode)
    assert torch.equal(out, torch.zeros_like(out))  # zeros, not NaN from a division by zero


def test_stochastic_depth_row_mask_is_per_sample() -> None:
    torch.manual_seed(0)
    p, n = 0.3, 4000
    out = ops.stochastic_depth(torch.ones(n, 3, 2, 2), p, "row")
    per_sample = out.flatten(1)
    # Every sample is either dropped whole or kept whole, scaled by 1 / (1 - p).
    assert torch.equal(per_sample.min(dim=1).values, per_sample.max(dim=1).values)
    values = per_sample[:, 0].unique()
    torch.testing.assert_close(values, torch.tensor([0.0, 1 / (1 - p)]))
    kept = (per_sample[:, 0] > 0).double().mean().item()
    assert abs(kept - (1 - p)) < 0.03
    assert abs(out.mean().item() - 1.0) < 0.05  # survivor scaling keeps the expectation


def test_stochastic_depth_batch_mask_is_shared() -> None:
    torch.manual_seed(0)
    p, trials = 0.3, 2000
    kept = 0
    for _ in range(trials):
        out = ops.stochastic_depth(torch.ones(5, 3), p, "batch")
        assert out.unique().numel() == 1  # one decision for the whole batch
        kept += int(out[0, 0] > 0)
    assert abs(kept / trials - (1 - p)) < 0.04


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stochastic_depth_matches_reference_under_seed(mode: str, dtype: torch.dtype) -> None:
    x = torch.randn(64, 3, 4, dtype=dtype)
    torch.manual_seed(1)
    ours = ops.StochasticDepth(0.4, mode)(x)
    torch.manual_seed(1)
    theirs = ref_ops.StochasticDepth(0.4, mode)(x)
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("p, mode", [(-0.1, "row"), (1.5, "batch"), (0.2, "column"), (0.2, "Row")])
def test_stochastic_depth_rejects_bad_arguments(p: float, mode: str) -> None:
    with pytest.raises(ValueError, match="p must be|mode must be"):
        ops.stochastic_depth(torch.ones(2, 2), p, mode)
    with pytest.raises(ValueError, match="p must be|mode must be"):
        ops.StochasticDepth(p, mode)


def test_stochastic_depth_repr_and_symbolic_trace() -> None:
    layer = ops.StochasticDepth(0.25, "row")
    assert repr(layer) == repr(ref_ops.StochasticDepth(0.25, "row"))

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.drop = ops.StochasticDepth(0.25, "row")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.drop(self.body(x))

    # Feature extraction traces models symbolically; the mask's shape must not break the trace.
    original = Residual()
    x = torch.randn(64, 4)
    for training in (True, False):
        # Tracing records the training flag as a constant, as for any module; trace once per mode.
        traced = torch.fx.symbolic_trace(original.train(training))
        assert any(node.target is ops.stochastic_depth for node in traced.graph.nodes)
        torch.manual_seed(0)
        expected = original(x)
        torch.manual_seed(0)
        torch.testing.assert_close(traced(x), expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# MLP and Permute
# ---------------------------------------------------------------------------------------------------------------

MLP_CASES = [
    (4, [8, 2], dict()),
    (4, [8, 6, 3], dict(norm_layer=nn.LayerNorm, activation_layer=nn.GELU, dropout=0.1)),
    (5, [7], dict(bias=False)),
    (4, [8, 3], dict(norm_layer=nn.BatchNorm1d, inplace=False, dropout=0.5)),
    (4, [16, 4], dict(activation_layer=nn.ReLU, inplace=True)),
]


@pytest.mark.parametrize("in_channels, hidden, kwargs", MLP_CASES, ids=str)
def test_mlp_parity(in_channels: int, hidden: list[int], kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    theirs = ref_ops.MLP(in_channels, hidden, **kwargs)
    ours = ops.MLP(in_channels, hidden, **kwargs)
    _assert_parity(ours, theirs, torch.randn(6, in_channels))


def test_mlp_training_dropout_matches_reference_under_seed() -> None:
    torch.manual_seed(0)
    theirs = ref_ops.MLP(4, [8, 8, 3], dropout=0.5)
    ours = ops.MLP(4, [8, 8, 3], dropout=0.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(16, 4)
    torch.manual_seed(3)
    out_theirs = theirs(x)
    torch.manual_seed(3)
    out_ours = ours(x)
    torch.testing.assert_close(out_ours, out_theirs, rtol=0, atol=0)
    assert (out_ours == 0).any()  # dropout really ran


def test_mlp_without_activation() -> None:
    mlp = ops.MLP(4, [8, 3], activation_layer=None)
    assert [type(m) for m in mlp] == [nn.Linear, nn.Dropout, nn.Linear, nn.Dropout]


@pytest.mark.parametrize(
    "args, match",
    [((4, []), "at least one"), ((4, [8, 0]), "hidden_channels"), ((0, [8]), "in_channels"), ((4, [8]), "dropout")],
    ids=str,
)
def test_mlp_rejects_bad_arguments(args: tuple[Any, ...], match: str) -> None:
    kwargs = dict(dropout=1.5) if match == "dropout" else {}
    with pytest.raises(ValueError, match=match):
        ops.MLP(*args, **kwargs)


@pytest.mark.parametrize("dims", [[0, 2, 3, 1], [0, 3, 1, 2], [3, 2, 1, 0], [0, -1, 1, 2]])
def test_permute_parity(dims: list[int]) -> None:
    x = torch.randn(2, 3, 4, 5)
    ours, theirs = ops.Permute(dims), ref_ops.Permute(dims)
    assert torch.equal(ours(x), theirs(x))
    assert ours.state_dict() == theirs.state_dict() == {}
    assert repr(ours) == f"Permute(dims={dims})"


def test_permute_rejects_repeated_dims() -> None:
    with pytest.raises(ValueError, match="repeat"):
        ops.Permute([0, 1, 1, 2])


# ---------------------------------------------------------------------------------------------------------------
# Whole-API contracts
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Conv2dNormActivation",
        "Conv3dNormActivation",
        "SqueezeExcitation",
        "FrozenBatchNorm2d",
        "StochasticDepth",
        "stochastic_depth",
        "MLP",
        "Permute",
    ],
)
def test_signature_matches_reference(name: str) -> None:
    _assert_same_signature(getattr(ops, name), getattr(ref_ops, name))


# name -> (builder, input shape to run on meta, or None for layers without a fixed input layout)
META_BUILDERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...] | None]] = {
    "Conv2dNormActivation": (lambda: ops.Conv2dNormActivation(3, 8, kernel_size=(3, 5), dilation=2), (2, 3, 6, 6)),
    "Conv3dNormActivation": (lambda: ops.Conv3dNormActivation(3, 8, kernel_size=(1, 3, 3)), (2, 3, 4, 6, 6)),
    "SqueezeExcitation": (lambda: ops.SqueezeExcitation(16, 4), (2, 16, 6, 6)),
    "FrozenBatchNorm2d": (lambda: ops.FrozenBatchNorm2d(8), (2, 8, 6, 6)),
    "StochasticDepth": (lambda: ops.StochasticDepth(0.1, "row"), (4, 3)),
    "MLP": (lambda: ops.MLP(8, [16, 4], norm_layer=nn.LayerNorm), (2, 8)),
    "Permute": (lambda: ops.Permute([0, 2, 3, 1]), (2, 3, 6, 6)),
    "convert_frozen_batchnorm": (lambda: ops.convert_frozen_batchnorm(ops.Conv2dNormActivation(3, 8)), (2, 3, 6, 6)),
}


@pytest.mark.parametrize("name", list(META_BUILDERS))
def test_constructs_on_meta_device(name: str) -> None:
    build, input_shape = META_BUILDERS[name]
    with torch.device("meta"):
        module = build()
    assert all(t.is_meta for t in module.state_dict().values())
    # Shapes still propagate, which is what a meta-built model is used for before loading.
    assert module(torch.empty(input_shape, device="meta")).is_meta


def test_exports() -> None:
    assert set(ops.__all__) >= set(META_BUILDERS) | {"stochastic_depth"}
    assert all(hasattr(ops, name) for name in ops.__all__)
