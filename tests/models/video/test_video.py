"""Video classifiers against the reference, driven by the registry: eval parity of every builder at its smallest
supported clip (and the MViTs at the published 16x224x224), a training step under one seed, weights entries and
their presets, a new ``num_classes`` with published weights, and bad inputs.

Each model pair is built once per module (the largest ones on ``meta`` with the reference's tensors copied in)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, assert_same_weights, build_pair, pair
from visionzoo import models
from visionzoo.models import video
from visionzoo.models._api import WeightsEnum
from visionzoo.transforms import VideoClassification

VIDEO_MODELS = models.list_models(module=video)

# The smallest clip (T, H, W) each model takes, and builder arguments shared by both sides: the MViTs are built for
# a small clip here (their published 16x224x224 is checked once below), everything else at its own sizes.
SMALLEST: dict[str, tuple[int, int, int]] = {
    "r3d_18": (4, 32, 32),
    "mc3_18": (4, 32, 32),
    "r2plus1d_18": (4, 32, 32),
    "s3d": (14, 224, 224),
    "mvit_v1_b": (4, 32, 32),
    "mvit_v2_s": (4, 32, 32),
    "swin3d_t": (3, 36, 44),  # windows clipped in time, padded in space; shifted in space only
    "swin3d_s": (3, 36, 44),
    "swin3d_b": (3, 36, 44),
}
BUILD_KWARGS: dict[str, dict[str, Any]] = {
    "mvit_v1_b": {"temporal_size": 4, "spatial_size": (32, 32)},
    "mvit_v2_s": {"temporal_size": 4, "spatial_size": (32, 32)},
}
# Their initialisation is the same code as their smaller siblings' (checked there); build them on meta.
HEAVY = {"swin3d_s", "swin3d_b"}


def test_every_video_builder_has_a_clip_size() -> None:
    assert set(VIDEO_MODELS) == set(SMALLEST)


_PAIRS: dict[str, tuple[torch.nn.Module, torch.nn.Module]] = {}


def _small_mvit_pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference's builders fix the clip size: build its MViT class with the same (published) blocks."""
    from torchvision.models.video.mvit import MSBlockConfig, MViT

    from visionzoo.models.video.mvit import _block_settings

    v2 = name == "mvit_v2_s"
    blocks = [MSBlockConfig(**vars(cnf)) for cnf in _block_settings(v2)]
    flags = {"residual_pool": v2, "residual_with_cls_embed": False, "rel_pos_embed": v2, "proj_after_attn": v2}
    return pair(
        lambda: MViT(block_setting=blocks, stochastic_depth_prob=0.2, **BUILD_KWARGS[name], **flags),
        lambda: models.get_model(name, **BUILD_KWARGS[name]),
    )


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    if name not in _PAIRS:
        if name in BUILD_KWARGS:
            _PAIRS[name] = _small_mvit_pair(name)
        else:
            _PAIRS[name] = build_pair(name, check_init=name not in HEAVY)
    return _PAIRS[name]


@pytest.fixture(scope="module", autouse=True)
def _release_pairs() -> Any:
    yield
    _PAIRS.clear()


def _clip(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *SMALLEST[name], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_parity(name: str) -> None:
    ref, ours = _pair(name)
    x = _clip(name)
    assert_same_outputs(ref, ours, x)
    with torch.inference_mode():
        assert ours(x).shape == (1, 400)


def test_mvit_parity_at_the_published_clip_size() -> None:
    """The published 16x224x224: the pooled grids and relative offsets of the real model (V2, the one with
    relative positions; V1 differs in code paths the small clip covers)."""
    ref, ours = build_pair("mvit_v2_s", check_init=False)
    assert_same_outputs(ref, ours, torch.randn(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_training_step_matches_the_reference(name: str) -> None:
    """Train mode under one seed (dropout, stochastic depth, batch statistics): equal outputs, and gradients."""
    ref, ours = _pair(name)
    x = _clip(name, seed=1)
    outputs = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(5)
        out = model(x)
        out.square().mean().backward()
        outputs.append(out.detach())
        model.eval()
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-4)
    grads = {k: p.grad for k, p in ours.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), "missing or bad gradients"
    reference_grads = dict(ref.named_parameters())
    head = next(k for k in reversed(grads) if k.endswith("weight"))
    torch.testing.assert_close(grads[head], reference_grads[head].grad, atol=1e-4, rtol=1e-3)
    for model in (ref, ours):
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_weights_entries(name: str) -> None:
    assert_same_weights(name)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_presets(name: str) -> None:
    frames = torch.randint(0, 256, (3, 3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for member in reference.models.get_model_weights(name):
        mine = models.get_model_weights(name)[member.name].transforms()
        theirs = member.transforms()
        assert isinstance(mine, VideoClassification) and repr(mine) == repr(theirs)
        for attr in ("crop_size", "resize_size", "mean", "std"):
            assert getattr(mine, attr) == getattr(theirs, attr), attr
        assert mine.interpolation.value == theirs.interpolation.value
        for clip in (frames, frames.float() / 255, torch.stack([frames, frames.flip(-1)])):
            out = mine(clip)
            torch.testing.assert_close(out, theirs(clip), atol=1e-5, rtol=0)
        assert out.shape == (2, 3, 3, *mine.crop_size) and out.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_size": (112, 112), "resize_size": (128, 171)},
        {"crop_size": (224, 224), "resize_size": (256,), "mean": (0.45,) * 3, "std": (0.225,) * 3},
    ],
)
def test_preset_equals_the_reference(kwargs: dict[str, Any]) -> None:
    from torchvision.transforms._presets import VideoClassification as ReferencePreset

    mine, theirs = VideoClassification(**kwargs), ReferencePreset(**kwargs)
    generator = torch.Generator().manual_seed(3)
    for clip in (
        torch.randint(0, 256, (5, 3, 240, 320), dtype=torch.uint8, generator=generator),  # downscaled
        torch.rand(2, 4, 3, 100, 90, generator=generator),  # upscaled, a batch of float clips
    ):
        torch.testing.assert_close(mine(clip), theirs(clip), atol=1e-5, rtol=0)
    assert "no antialiasing" in mine.describe() and "(..., C, T," in mine.describe()


@pytest.mark.parametrize(
    ("clip", "error", "match"),
    [
        (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, r"\(T, C, H, W\) or a batch of clips"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), ValueError, "channels-last"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), ValueError, "empty clip"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), ValueError, "unsupported dtype torch.int32"),
        (torch.full((2, 3, 8, 8), float("nan")), ValueError, "NaN or infinite"),
        ([[0]], TypeError, "got list"),
    ],
)
def test_preset_rejects_bad_clips(clip: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        VideoClassification(crop_size=(4, 4), resize_size=(6,))(clip)
    with pytest.raises(ValueError, match="crop_size must hold 1 or 2 ints"):
        VideoClassification(crop_size=(1, 2, 3), resize_size=(6,))


def _serve(monkeypatch: pytest.MonkeyPatch, checkpoint: dict[str, torch.Tensor]) -> None:
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))


@pytest.mark.parametrize("name", ["r3d_18", "s3d", "swin3d_t"])
def test_published_weights_load_and_a_new_num_classes_rebuilds_the_head(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _ = _pair(name)
    checkpoint = ref.state_dict()
    _serve(monkeypatch, checkpoint)
    loaded = models.get_model(name, weights="DEFAULT").eval()
    if name != "s3d":  # its smallest clip is costly; test_parity covers its outputs
        assert_same_outputs(ref, loaded, _clip(name))

    with pytest.warns(UserWarning, match="num_classes=7 differs from the 400 categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=7).eval()
    state = model.state_dict()
    fresh = [key for key in checkpoint if state[key].shape != checkpoint[key].shape]
    assert fresh and all(key in str(caught[0].message) for key in fresh)
    assert all(state[key].shape[0] == 7 for key in fresh)
    assert all(torch.equal(state[k], v) for k, v in checkpoint.items() if k not in fresh)
    if name != "s3d":
        with torch.inference_mode():
            assert model(_clip(name)).shape == (1, 7)


def test_mvit_weights_fix_the_clip_size() -> None:
    with pytest.raises(ValueError, match="fixes temporal_size=16; got temporal_size=8"):
        video.mvit_v2_s(weights="DEFAULT", temporal_size=8)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_bad_inputs_raise_clear_errors(name: str) -> None:
    _, model = _pair(name)
    t, h, w = SMALLEST[name]
    with pytest.raises(ValueError, match="3 channels in dimension 1, got 4"):
        model(torch.randn(1, 4, t, h, w))
    with pytest.raises(ValueError, match="frames first"):
        model(torch.randn(1, 5, 3, h, w))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, t, h, w, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty input"):
        model(torch.randn(0, 3, t, h, w))
    if not name.startswith("mvit"):  # MViT reads a 4-D batch as images (one-frame clips), as the reference does
        with pytest.raises(ValueError, match="5-D batch of clips.*add the batch dimension"):
            model(torch.randn(3, t, h, w))


def test_clips_too_small_for_s3d_or_of_another_size_for_mvit() -> None:
    _, s3d = _pair("s3d")
    with pytest.raises(ValueError, match="at least 14 frames of 224x224.*smaller than the \\(2, 7, 7\\) pooling"):
        s3d(torch.randn(1, 3, 8, 224, 224))
    _, mvit = _pair("mvit_v2_s")
    with pytest.raises(ValueError, match=r"built for clips of 4x32x32 .*gives \(2, 16, 8\) patches"):
        mvit(torch.randn(1, 3, 4, 64, 32))
    with pytest.raises(ValueError, match="5-D batch"):
        _pair("r3d_18")[1](torch.randn(1, 3, 4, 8, 8, 1))


def test_zero_init_residual_starts_every_block_as_the_identity() -> None:
    model = video.r2plus1d_18(zero_init_residual=True)
    blocks = [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert len(blocks) == 8 and all(not block.conv2[1].weight.any() for block in blocks)
    assert video.r2plus1d_18().layer1[0].conv2[1].weight.all()


def test_bad_architecture_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_classes must be positive, got 0"):
        video.r3d_18(num_classes=0)
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\], got 1.5"):
        video.s3d(dropout=1.5)
    with pytest.raises(ValueError, match="window_size must be an int or a sequence of 3 ints"):
        video.SwinTransformer3d([2, 4, 4], 8, [1], [1], window_size=[8, 7])
    with pytest.raises(ValueError, match="block_setting must describe at least one block"):
        video.MViT((32, 32), 4, [], False, False, False, False)
