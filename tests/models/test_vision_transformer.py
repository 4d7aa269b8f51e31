"""Vision Transformer: builder arguments, image sizes, weights entries and position-embedding resizing,
checked against the reference.

The registry tests (test_classification.py) run every builder at 224 pixels, where a freshly initialised ViT's
zero head makes every output 0; here the heads are randomised so that outputs carry the whole network.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models._api import WeightsEnum
from visionzoo.models.vision_transformer import (
    ConvStemConfig,
    VisionTransformer,
    interpolate_embeddings,
    resize_position_embeddings,
)

VITS = models.list_models(module=models, include="vit_*")
PATCH = {"vit_b_16": 16, "vit_b_32": 32, "vit_l_16": 16, "vit_l_32": 32, "vit_h_14": 14}


def _pair(name: str, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """The reference builder's model and ours holding its weights; ours is built on meta (no init cost: up to
    632M parameters here), its initialisation being checked by test_classification.py. The heads start at zero:
    ``pair`` gives them random weights, which would otherwise hide every difference before them."""
    return build_pair(name, check_init=False, **kwargs)


@pytest.mark.parametrize("name", VITS)
def test_every_builder_at_a_small_image_size(name: str) -> None:
    """Non-default image sizes work as in the reference; vit_h_14 (632M parameters) included."""
    size = 2 * PATCH[name]
    ref, ours = _pair(name, image_size=size)
    assert ours.image_size == size and ours.input_size == (size, size)
    assert ours.encoder.pos_embedding.shape[1] == 5
    assert_same_outputs(ref, ours, torch.randn(2, 3, size, size))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("vit_b_32", {"image_size": 64, "num_classes": 7, "representation_size": 48}),
        (
            "vit_b_16",
            {"image_size": 48, "norm_layer": partial(nn.LayerNorm, eps=1e-3), "dropout": 0.2, "attention_dropout": 0.1},
        ),
    ],
)
def test_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = _pair(name, **kwargs)
    assert ours.heads.head.out_features == kwargs.get("num_classes", 1000)
    assert [m.eps for m in ours.modules() if isinstance(m, nn.LayerNorm)] == [
        m.eps for m in ref.modules() if isinstance(m, nn.LayerNorm)
    ]
    size = kwargs["image_size"]
    assert_same_outputs(ref, ours, torch.randn(2, 3, size, size))


def test_conv_stem_matches_the_reference() -> None:
    ref_lib = reference.models.vision_transformer

    def stem(lib: Any) -> list[Any]:
        return [
            lib.ConvStemConfig(8, 3, 2),
            lib.ConvStemConfig(16, 3, 2, norm_layer=partial(nn.GroupNorm, 4)),
            lib.ConvStemConfig(16, 3, 2, activation_layer=nn.SiLU),
            lib.ConvStemConfig(32, 3, 2),
        ]

    args = dict(image_size=32, patch_size=16, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5)
    ref, ours = pair(
        lambda: ref_lib.VisionTransformer(conv_stem_configs=stem(ref_lib), **args),
        lambda: VisionTransformer(conv_stem_configs=stem(models.vision_transformer), **args),
    )
    assert_same_outputs(ref, ours, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="multiply to 8"):
        VisionTransformer(conv_stem_configs=[ConvStemConfig(8, 3, 2)] * 3, **args)


def test_training_mode_matches_the_reference_draw_for_draw() -> None:
    """Dropout and attention dropout (inside scaled_dot_product_attention) consume the same random numbers."""
    ref, ours = _pair("vit_b_32", image_size=64, dropout=0.3, attention_dropout=0.3)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    expected = ref.train()(x)
    torch.manual_seed(1)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_attention_gradients_match_the_reference() -> None:
    ref, ours = _pair("vit_b_32", image_size=64)
    x = torch.randn(2, 3, 64, 64)
    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    for (name, mine), theirs in zip(ours.named_parameters(), ref.parameters()):
        scale = theirs.grad.abs().max().clamp(min=1.0)  # gradients reach thousands: compare relative to the largest
        torch.testing.assert_close(mine.grad / scale, theirs.grad / scale, atol=1e-5, rtol=1e-4, msg=name)


# --------------------------------------------------------------------------------------------------
# Weights entries: image size, parameter counts, loading (SWAG included)
# --------------------------------------------------------------------------------------------------

ENTRIES = [(name, member.name) for name in VITS for member in models.get_model_weights(name)]


@pytest.mark.parametrize("name, entry", ENTRIES)
def test_entry_describes_the_model_it_loads_into(name: str, entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry's checkpoint (shape-only stand-in, never touched) loads at the entry's image size, and its
    parameter count is the model's; checkpoints with the older MLP key names load as well."""
    weights = models.get_model_weights(name)[entry]
    size = weights.meta["min_size"][0]
    with torch.device("meta"):
        shapes = reference.models.get_model(name, image_size=size).state_dict()
    # torch.empty reserves memory lazily: even ViT-H/14 at 518 pixels costs nothing until written.
    checkpoint = {
        key.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): torch.empty(v.shape)
        for key, v in shapes.items()
    }
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    model = models.get_model(name, weights=entry)
    assert model.image_size == size
    assert sum(p.numel() for p in model.parameters()) == weights.meta["num_params"]
    loaded = model.encoder.layers[0].mlp[0].weight
    assert loaded.data_ptr() == checkpoint["encoder.layers.encoder_layer_0.mlp.linear_1.weight"].data_ptr()  # no copy
    assert weights.transforms().crop_size == [size]
    with pytest.raises(ValueError, match=f"trained at image_size={size}.*resize_position_embeddings"):
        models.get_model(name, weights=entry, image_size=size + PATCH[name])


def test_swag_e2e_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """vit_b_16 SWAG E2E: the builder runs at 384 pixels and reproduces the reference's outputs there."""
    ref, _ = _pair("vit_b_16", image_size=384)
    state = ref.state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(state))
    ours = models.vit_b_16(weights="IMAGENET1K_SWAG_E2E_V1").eval()
    assert ours.image_size == 384
    assert_same_outputs(ref, ours, torch.randn(1, 3, 384, 384))
    with pytest.raises(ValueError, match="built for 384x384 images, got 224x224"):
        ours(torch.randn(1, 3, 224, 224))


def test_legacy_pretrained_keyword() -> None:
    with pytest.raises(ValueError, match="vit_h_14 has no weights for the legacy pretrained=True"):
        models.vit_h_14(pretrained=True)
    with pytest.warns(UserWarning, match="deprecated"), torch.device("meta"):
        model = models.vit_b_16(pretrained=False, image_size=32)
    assert model.image_size == 32


def test_old_mlp_key_names_load_from_a_local_checkpoint(tmp_path: Path) -> None:
    ref, _ = _pair("vit_b_32", image_size=64)
    old = OrderedDict(
        (k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."), v)
        for k, v in ref.state_dict().items()
    )
    assert any(".mlp.linear_2.bias" in k for k in old)
    path = tmp_path / "old_vit.pth"
    torch.save(old, path)
    ours = models.vit_b_32(weights=path, image_size=64).eval()
    direct = models.vit_b_32(image_size=64).eval()
    direct.load_state_dict(old)  # plain load_state_dict understands the old names too
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(ref, ours, x)
    assert_same_outputs(ref, direct, x)


# --------------------------------------------------------------------------------------------------
# Position embeddings at another image size
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_checkpoint() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = reference.models.vision_transformer.VisionTransformer(64, 16, 1, 2, 16, 32, num_classes=3)
    return OrderedDict(model.state_dict())


@pytest.mark.parametrize("image_size", [32, 96, 128])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("reset_heads", [False, True])
def test_resize_matches_the_reference(small_checkpoint: dict, image_size: int, mode: str, reset_heads: bool) -> None:
    expected = reference.models.vision_transformer.interpolate_embeddings(
        image_size, 16, OrderedDict(small_checkpoint), mode, reset_heads
    )
    before = {k: v.clone() for k, v in small_checkpoint.items()}
    resized = resize_position_embeddings(small_checkpoint, image_size, 16, mode=mode, reset_heads=reset_heads)
    assert list(resized) == list(expected)
    torch.testing.assert_close(dict(resized), dict(expected), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(small_checkpoint, before, atol=0, rtol=0)  # the input is left alone
    assert resized["encoder.pos_embedding"].shape == (1, (image_size // 16) ** 2 + 1, 16)

    compatible = OrderedDict(small_checkpoint)
    returned = interpolate_embeddings(image_size, 16, compatible, mode, reset_heads)
    torch.testing.assert_close(dict(returned), dict(expected), atol=1e-6, rtol=1e-6)
    # Like the reference: the given mapping receives the new embeddings, and is returned unless heads were reset.
    assert compatible["encoder.pos_embedding"] is returned["encoder.pos_embedding"]
    assert (returned is compatible) is not reset_heads


def test_same_size_is_left_as_is_and_other_modes_work(small_checkpoint: dict) -> None:
    same = resize_position_embeddings(small_checkpoint, 64, 16)
    assert same["encoder.pos_embedding"] is small_checkpoint["encoder.pos_embedding"]
    assert "heads.head.weight" not in resize_position_embeddings(small_checkpoint, 64, 16, reset_heads=True)
    # As in the reference, the compatible name keeps the heads when nothing is resized.
    kept = interpolate_embeddings(64, 16, OrderedDict(small_checkpoint), reset_heads=True)
    assert kept.keys() == small_checkpoint.keys()
    # nearest-neighbour doubling repeats each position twice along each axis.
    doubled = resize_position_embeddings(small_checkpoint, 128, 16, mode="nearest")["encoder.pos_embedding"]
    grid = small_checkpoint["encoder.pos_embedding"][0, 1:].reshape(4, 4, 16)
    torch.testing.assert_close(doubled[0, 1:].reshape(8, 8, 16), grid.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_resized_checkpoint_runs_the_model_at_the_new_size(small_checkpoint: dict) -> None:
    resized = resize_position_embeddings(small_checkpoint, 96, 16)
    ours = VisionTransformer(96, 16, 1, 2, 16, 32, num_classes=3).eval()
    ours.load_state_dict(resized, strict=True)
    ref = reference.models.vision_transformer.VisionTransformer(96, 16, 1, 2, 16, 32, num_classes=3).eval()
    ref.load_state_dict(resized, strict=True)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 96, 96))


def test_resize_rejects_bad_input(small_checkpoint: dict) -> None:
    with pytest.raises(ValueError, match="multiple of patch_size=16"):
        resize_position_embeddings(small_checkpoint, 100, 16)
    with pytest.raises(ValueError, match="mode must be one of"):
        resize_position_embeddings(small_checkpoint, 96, 16, mode="cubic")
    with pytest.raises(ValueError, match="not a VisionTransformer checkpoint"):
        resize_position_embeddings({"fc.weight": torch.zeros(2, 2)}, 96, 16)
    with pytest.raises(ValueError, match="not a square grid"):
        resize_position_embeddings({"encoder.pos_embedding": torch.zeros(1, 7, 4)}, 96, 16)
    with pytest.raises(ValueError, match="shape \\(1, tokens, hidden_dim\\)"):
        resize_position_embeddings({"encoder.pos_embedding": torch.zeros(2, 5, 4)}, 96, 16)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="image_size=100 must be a multiple of patch_size=16"):
        VisionTransformer(100, 16, 1, 2, 16, 32)
    with pytest.raises(ValueError, match="hidden_dim=18 must be divisible by num_heads=4"):
        VisionTransformer(32, 16, 1, 4, 18, 32)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        VisionTransformer(32, 16, 1, 2, 16, 32, num_classes=0)
    with pytest.raises(ValueError, match="vit_b_16 fixes patch_size"):
        models.vit_b_16(patch_size=8)
    with pytest.raises(ValueError, match="at least one convolution"):
        VisionTransformer(32, 16, 1, 2, 16, 32, conv_stem_configs=[])
    model = VisionTransformer(32, 16, 1, 2, 16, 32).eval()
    with pytest.raises(ValueError, match="built for 32x32 images, got 32x48"):
        model(torch.randn(1, 3, 32, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
