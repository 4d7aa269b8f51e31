"""RAFT against the reference, driven by the registry: the flows of every builder after 1, 4 and 12 updates
(eval and train mode), weights entries and presets, published weights through the loading path, the correlation
block and the upsampling on their own, replaced parts, and bad inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_weights, build_pair
from visionzoo import models
from visionzoo.models import optical_flow
from visionzoo.models._api import WeightsEnum
from visionzoo.models.optical_flow import CorrBlock
from visionzoo.models.optical_flow._blocks import upsample_flow
from visionzoo.transforms import OpticalFlow

BUILDERS = models.list_models(module=optical_flow)
REF_RAFT = reference.models.optical_flow.raft


def _frames(batch: int = 2, height: int = 128, width: int = 136, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches in [-1, 1], the second the first shifted by a few pixels plus noise: a flow worth estimating."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.rand(batch, 3, height, width + 8, generator=generator) * 2 - 1
    second = first.roll(shifts=(2, 5), dims=(-2, -1)) + 0.1 * torch.randn(first.shape, generator=generator)
    return first[..., :width].contiguous(), second[..., :width].clamp(-1, 1).contiguous()


@pytest.fixture(scope="module", params=BUILDERS)
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module]:
    """(name, reference, ours): seeded alike, ours loaded with the reference's state_dict (strict)."""
    ref, ours = build_pair(request.param)
    return request.param, ref, ours


def test_every_reference_builder_is_registered() -> None:
    assert BUILDERS == ["raft_large", "raft_small"] == reference.list_models_of_task("optical_flow")


def test_flows_after_1_4_and_12_updates_equal_the_reference(built: tuple[str, nn.Module, nn.Module]) -> None:
    _, ref, ours = built
    image1, image2 = _frames()
    with torch.inference_mode():
        expected = ref(image1, image2, num_flow_updates=12)  # its first 1 and 4 are its 1- and 4-update answers
        for updates in (1, 4, 12):
            got = ours(image1, image2, num_flow_updates=updates)
            assert isinstance(got, list) and len(got) == updates
            for mine, theirs in zip(got, expected[:updates], strict=True):
                assert mine.shape == (2, 2, 128, 136) and mine.dtype == torch.float32
                torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    assert expected[-1].abs().mean() > 0.1, "flows near zero compare nothing"


def test_train_mode_flows_and_gradients_equal_the_reference(built: tuple[str, nn.Module, nn.Module]) -> None:
    _, ref, ours = built
    image1, image2 = _frames(batch=1, seed=1)
    grads = []
    try:
        for model in (ref, ours):
            model.train()
            flows = model(image1, image2, num_flow_updates=2)
            # RAFT's sequence loss: later estimates weigh more.
            loss = sum(0.8 ** (len(flows) - 1 - i) * flow.abs().mean() for i, flow in enumerate(flows))
            model.zero_grad()
            loss.backward()
            grads.append((flows, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    finally:  # the module-scoped pair goes back to eval mode for the other tests
        ref.eval()
        ours.eval()
    (ref_flows, ref_grads), (our_flows, our_grads) = grads
    for mine, theirs in zip(our_flows, ref_flows, strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    assert our_grads.keys() == ref_grads.keys() and len(our_grads) > 20
    for key, grad in our_grads.items():
        torch.testing.assert_close(grad, ref_grads[key], atol=1e-4, rtol=1e-3, msg=key)


@pytest.mark.parametrize("name", BUILDERS)
def test_weights_entries_and_presets(name: str) -> None:
    from PIL import Image

    assert_same_weights(name)
    generator = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=generator)
    other = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=generator)
    pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in (image, other)]
    for member in reference.models.get_model_weights(name):
        mine, theirs = models.get_model_weights(name)[member.name].transforms(), member.transforms()
        assert isinstance(mine, OpticalFlow) and repr(mine) == repr(theirs)
        assert mine.describe() == theirs.describe()
        for pair in ((image, other), (image.double() / 255, other.double() / 255), (image[None], other[None]), pil):
            got, expected = mine(*pair), theirs(*pair)
            for g, e in zip(got, expected, strict=True):
                assert g.dtype == torch.float32 and g.is_contiguous()
                torch.testing.assert_close(g, e, atol=0, rtol=0)


def test_preset_rejects_frames_of_different_shapes_and_bad_images() -> None:
    preset = OpticalFlow()
    with pytest.raises(ValueError, match=r"same shape, got \(3, 24, 32\) and \(3, 24, 40\)"):
        preset(torch.zeros(3, 24, 32, dtype=torch.uint8), torch.zeros(3, 24, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected 3 channels, got 4"):
        preset(torch.zeros(4, 24, 32), torch.zeros(4, 24, 32))
    with pytest.raises(TypeError, match="PIL image or a torch.Tensor"):
        preset([0.0], [0.0])


@pytest.mark.parametrize("name", BUILDERS)
def test_published_weights_load_through_the_pipeline(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    ref = reference.models.get_model(name, weights=None).eval()
    checkpoint = ref.state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    ours = models.get_model(name, weights="DEFAULT").eval()
    assert not any(t.is_meta for t in ours.state_dict().values())
    image1, image2 = _frames(batch=1)
    with torch.inference_mode():
        torch.testing.assert_close(ours(image1, image2, 1)[0], ref(image1, image2, 1)[0], atol=1e-4, rtol=1e-4)
    legacy = {"raft_large": "C_T_SKHT_V2", "raft_small": "C_T_V2"}[name]
    with pytest.warns(UserWarning, match=f"weights=.*{legacy}"):
        models.get_model(name, pretrained=True)


def test_correlation_block_equals_the_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    fmap1, fmap2 = torch.randn(2, 2, 32, 17, 19, generator=generator).unbind(0)
    # Matches inside, on the border of and outside the feature map.
    coords = torch.rand(2, 2, 17, 19, generator=generator) * torch.tensor([26.0, 24.0]).view(1, 2, 1, 1) - 3
    for radius in (3, 4):
        ours, theirs = CorrBlock(num_levels=4, radius=radius), REF_RAFT.CorrBlock(num_levels=4, radius=radius)
        ours.build_pyramid(fmap1, fmap2)
        theirs.build_pyramid(fmap1, fmap2)
        assert [t.shape for t in ours.corr_pyramid] == [t.shape for t in theirs.corr_pyramid]
        for mine, expected in zip(ours.corr_pyramid, theirs.corr_pyramid, strict=True):
            torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-4)
        features = ours.index_pyramid(coords)
        assert features.shape == (2, ours.out_channels, 17, 19) == (2, 4 * (2 * radius + 1) ** 2, 17, 19)
        torch.testing.assert_close(features, theirs.index_pyramid(coords), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        ours.build_pyramid(fmap1, fmap2[..., :-1])
    with pytest.raises(ValueError, match=r"at least 16 positions, i\.e\. input images of at least 128x128"):
        ours.build_pyramid(fmap1[..., :15, :], fmap2[..., :15, :])
    with pytest.raises(RuntimeError, match="before build_pyramid"):
        CorrBlock().index_pyramid(coords)


def test_upsampling_equals_the_reference() -> None:
    generator = torch.Generator().manual_seed(4)
    flow = torch.randn(2, 2, 5, 7, generator=generator)
    mask = torch.randn(2, 8 * 8 * 9, 5, 7, generator=generator)
    ref_upsample = reference.models.optical_flow._utils.upsample_flow
    for up_mask in (mask, None):
        got = upsample_flow(flow, up_mask=up_mask)
        assert got.shape == (2, 2, 40, 56)
        torch.testing.assert_close(got, ref_upsample(flow, up_mask=up_mask), atol=1e-5, rtol=1e-5)


def test_public_classes_match_the_references_names() -> None:
    for name in ("RAFT", "FeatureEncoder", "ResidualBlock", "BottleneckBlock", "MotionEncoder", "ConvGRU"):
        assert hasattr(optical_flow, name) and hasattr(REF_RAFT, name)
    for name in ("RecurrentBlock", "FlowHead", "UpdateBlock", "MaskPredictor", "CorrBlock"):
        assert hasattr(optical_flow, name) and hasattr(REF_RAFT, name)
    assert set(REF_RAFT.__all__) <= set(dir(optical_flow))


def test_replaced_parts_are_used_and_unknown_arguments_rejected() -> None:
    corr_block = CorrBlock(num_levels=4, radius=2)
    model = models.get_model("raft_small", corr_block=corr_block)
    assert model.corr_block is corr_block
    assert model.update_block.motion_encoder.convcorr1[0].in_channels == 4 * 5 * 5
    with pytest.raises(TypeError, match="Unexpected keyword argument.*'radius'"):
        models.get_model("raft_small", radius=2)


@pytest.fixture(scope="module")
def small() -> nn.Module:
    torch.manual_seed(0)
    return models.get_model("raft_small").eval()


@pytest.mark.parametrize(
    ("image1", "image2", "kwargs", "error", "match"),
    [
        (
            torch.zeros(1, 3, 128, 132),
            torch.zeros(1, 3, 128, 132),
            {},
            ValueError,
            r"divisible by 8, got 128x132.*128x136",
        ),
        (torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 136), {}, ValueError, "same shape"),
        (torch.zeros(1, 3, 128, 128), torch.zeros(2, 3, 128, 128), {}, ValueError, "same shape"),
        (torch.zeros(1, 3, 128, 128, dtype=torch.uint8), torch.zeros(1, 3, 128, 128), {}, TypeError, "floating point"),
        (torch.zeros(3, 128, 128), torch.zeros(3, 128, 128), {}, ValueError, r"4-D batch"),
        (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), {}, ValueError, "at least 128x128"),
        (torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 128), {"num_flow_updates": 0}, ValueError, "positive"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    small: nn.Module, image1: torch.Tensor, image2: torch.Tensor, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        small(image1, image2, **kwargs)
