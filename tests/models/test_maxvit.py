"""MaxViT: builder arguments, input sizes, partitioning and weights, checked against the reference.

Small configurations of the model class keep these fast; maxvit_t itself needs 224-pixel inputs and is run by
the registry tests (test_classification.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, pair
from visionzoo import models
from visionzoo.models._api import WeightsEnum
from visionzoo.models.maxvit import MaxVit, _grid_merge, _grid_partition, _window_merge, _window_partition

SMALL = dict(
    stem_channels=16,
    partition_size=4,
    block_channels=[16, 32],
    block_layers=[1, 2],
    head_dim=8,
    stochastic_depth_prob=0.3,
    num_classes=5,
)


def _layer_facts(model: nn.Module) -> list[tuple[Any, ...]]:
    """What the state_dict does not pin down: norms, activations, dropout and stochastic depth probabilities."""
    facts: list[tuple[Any, ...]] = []
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            facts.append(("bn", module.eps, module.momentum))
        elif isinstance(module, nn.LayerNorm):
            facts.append(("ln", module.eps))
        elif isinstance(module, nn.Dropout):
            facts.append(("dropout", module.p))
        elif type(module).__name__ == "StochasticDepth" and module.p > 0:  # the reference uses Identity for p=0
            facts.append(("sd", round(module.p, 10), module.mode))
        elif isinstance(module, (nn.GELU, nn.SiLU, nn.ReLU, nn.Tanh, nn.Hardswish)):
            facts.append((type(module).__name__,))
    return facts


def _small_pair(input_size: int | tuple[int, int] = 64, **kwargs: Any) -> tuple[nn.Module, MaxVit]:
    """A small reference MaxVit and ours (same initial draws, its weights; see ``pair``), with the same layers."""
    args = {**SMALL, **kwargs}
    ref_size = input_size if isinstance(input_size, tuple) else (input_size, input_size)
    ref, ours = pair(
        lambda: reference.models.maxvit.MaxVit(input_size=ref_size, **args),
        lambda: MaxVit(input_size=input_size, **args),
    )
    assert _layer_facts(ours) == _layer_facts(ref)
    return ref, ours


def test_builder_configuration_matches_the_reference() -> None:
    """Stochastic depth grows linearly over the 11 blocks; norms, activations and dropouts as the reference."""
    with torch.device("meta"):
        ours = models.maxvit_t(mlp_dropout=0.1, attention_dropout=0.2)
        ref = reference.models.maxvit_t(mlp_dropout=0.1, attention_dropout=0.2)
    assert _layer_facts(ours) == _layer_facts(ref)
    assert sum(p.numel() for p in ours.parameters()) == models.MaxVit_T_Weights.IMAGENET1K_V1.meta["num_params"]
    assert ours.input_size == (224, 224)
    # Unlike the reference (a TypeError), the builder's design arguments can be overridden too.
    with torch.device("meta"):
        shallow = models.maxvit_t(block_layers=[1, 1, 1, 1], stochastic_depth_prob=0.0, num_classes=10)
    assert [len(stage.layers) for stage in shallow.blocks] == [1, 1, 1, 1]
    assert shallow.classifier[-1].out_features == 10


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {
            "norm_layer": partial(nn.BatchNorm2d, eps=1e-2),
            "activation_layer": nn.SiLU,
            "squeeze_ratio": 0.5,
            "expansion_ratio": 2,
            "mlp_ratio": 2,
        },
        {"partition_size": 2, "block_layers": [2, 1], "num_classes": 3},
    ],
)
def test_kwargs_parity(kwargs: dict[str, Any]) -> None:
    ref, ours = _small_pair(**kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 64))


def test_training_mode_matches_the_reference_draw_for_draw() -> None:
    ref, ours = _small_pair(mlp_dropout=0.3, attention_dropout=0.3, stochastic_depth_prob=0.5)
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    expected = ref.train()(x)
    torch.manual_seed(1)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())  # same BatchNorm statistics afterwards


def test_other_input_sizes_match_a_reference_built_for_them() -> None:
    """Weights do not depend on the input size: a model built for 64 pixels also runs at 128, as the reference
    built for 128 does (the reference itself only runs at the size it was built for)."""
    ref, ours = _small_pair(input_size=128)
    _, at_64 = pair(
        lambda: reference.models.maxvit.MaxVit(input_size=(128, 128), **SMALL), lambda: MaxVit(input_size=64, **SMALL)
    )
    assert_same_outputs(ref, at_64, torch.randn(2, 3, 128, 128))
    assert_same_outputs(ref, ours, torch.randn(2, 3, 128, 128))


def test_non_square_inputs() -> None:
    """Windows and grids are P x P pixels either way, so the attention maps need not be square."""
    model = MaxVit(input_size=(64, 96), **SMALL).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (2, 5)
        torch.testing.assert_close(model(x[1:]), out[1:], atol=1e-5, rtol=1e-5)
        assert model.forward_features(x).shape == (2, 32, 8, 12)


def test_window_and_grid_partitions() -> None:
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    windows = _window_partition(x, 4)
    grids = _grid_partition(x, 4)
    assert windows.shape == grids.shape == (2, 6, 16, 3)
    assert torch.equal(_window_merge(windows, 4, 8, 12), x)
    assert torch.equal(_grid_merge(grids, 4, 8, 12), x)
    # A window is a contiguous 4x4 block; a grid's 4x4 pixels are 2 rows and 3 columns apart.
    assert torch.equal(windows[0, 1, :, 0], x[0, 0, 0:4, 4:8].flatten())
    assert torch.equal(grids[0, 1, :, 0], x[0, 0, 0::2, 1::3].flatten())
    # Square maps: the reference's partition + axis swap give the same tokens.
    ref_lib = reference.models.maxvit
    square = x[..., :8]
    assert torch.equal(_window_partition(square, 4), ref_lib.WindowPartition()(square, 4))
    assert torch.equal(_grid_partition(square, 4), ref_lib.SwapAxes(-2, -3)(ref_lib.WindowPartition()(square, 2)))


def test_pretrained_weights_set_the_input_size(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    state = reference.models.maxvit_t().state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(state))
    model = models.maxvit_t(weights="DEFAULT", input_size=224)
    assert model.input_size == (224, 224)
    torch.testing.assert_close(model.state_dict(), state, atol=0, rtol=0)
    with pytest.raises(ValueError, match="trained at input_size=\\(224, 224\\), got input_size=448"):
        models.maxvit_t(weights="DEFAULT", input_size=448)


def test_bad_arguments_and_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="stage 1 a 12x12 feature map, not divisible by partition_size=8"):
        MaxVit(input_size=96, **{**SMALL, "partition_size": 8})
    with pytest.raises(ValueError, match="same \\(non-zero\\) number of stages"):
        MaxVit(input_size=64, **{**SMALL, "block_layers": [1]})
    with pytest.raises(ValueError, match="divisible by head_dim=6"):
        MaxVit(input_size=64, **{**SMALL, "head_dim": 6})
    with pytest.raises(ValueError, match="input_size must be a positive int or \\(height, width\\)"):
        MaxVit(input_size=(64, 64, 3), **SMALL)  # type: ignore[arg-type]
    model = MaxVit(input_size=64, **SMALL).eval()
    with pytest.raises(ValueError, match="an input of 64x80 gives stage 1 a 8x10 feature map.*multiple of 32 pixels"):
        model(torch.randn(1, 3, 64, 80))
