"""GoogLeNet and Inception v3: builder arguments, auxiliary outputs, and the rules for pretrained weights."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models import GoogLeNet, GoogLeNetOutputs, Inception3, InceptionOutputs, inception
from visionzoo.models._api import WeightsEnum
from visionzoo.models.googlenet import BasicConv2d, Inception, InceptionAux

# Input sizes: GoogLeNet works from 15x15; Inception v3 from 75x75 in eval mode, but its auxiliary head
# (training mode only) needs the 17x17 grid of a 299x299 input.
SMALL = {"googlenet": 64, "inception_v3": 75}

# The argument tests build with init_weights=False: the truncated normal of 27M weights is slow, and
# test_same_seed_gives_the_reference_initialisation checks it once.


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("googlenet", {"aux_logits": False, "transform_input": True}),
        ("googlenet", {"num_classes": 7, "dropout": 0.0, "dropout_aux": 0.1}),
        ("inception_v3", {"aux_logits": False, "transform_input": True, "num_classes": 7}),
    ],
)
def test_kwargs_parity_in_eval_mode(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair(name, init_weights=False, **kwargs)
    size = SMALL[name]
    assert_same_outputs(ref, ours, torch.randn(2, 3, size, size + 5))


def _train_outputs(model: torch.nn.Module, x: torch.Tensor) -> Any:
    torch.manual_seed(11)  # same dropout masks for both models
    return model.train()(x)


def test_googlenet_training_outputs_match_reference() -> None:
    ref, ours = build_pair("googlenet", init_weights=False, transform_input=True)
    x = torch.randn(2, 3, 48, 56)
    expected, actual = _train_outputs(ref, x), _train_outputs(ours, x)
    assert isinstance(actual, GoogLeNetOutputs)
    assert actual._fields == expected._fields == ("logits", "aux_logits2", "aux_logits1")
    for mine, theirs in zip(actual, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        assert isinstance(ours.eval()(x), torch.Tensor)


def test_inception_training_outputs_match_reference() -> None:
    ref, ours = build_pair("inception_v3", init_weights=False, dropout=0.0)
    x = torch.randn(2, 3, 299, 299)
    expected, actual = _train_outputs(ref, x), _train_outputs(ours, x)
    assert isinstance(actual, InceptionOutputs)
    assert actual._fields == expected._fields == ("logits", "aux_logits")
    for mine, theirs in zip(actual, expected):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_without_aux_heads_training_returns_plain_logits() -> None:
    model = GoogLeNet(aux_logits=False, num_classes=5, init_weights=False).train()
    assert model.aux1 is None and model.aux2 is None
    assert model(torch.randn(2, 3, 15, 15)).shape == (2, 5)
    inception = Inception3(aux_logits=False, num_classes=5, init_weights=False).train()
    assert inception.AuxLogits is None
    assert inception(torch.randn(2, 3, 75, 75)).shape == (2, 5)  # no auxiliary head: small inputs are fine


def test_input_size_errors_name_the_minimum() -> None:
    """The minimum sizes are the reference's (it fails deep inside the network below them); ours says so up front."""
    ref_googlenet = reference.models.googlenet(weights=None, init_weights=False, aux_logits=False).eval()
    ref_inception = reference.models.inception_v3(weights=None, init_weights=False, aux_logits=False).eval()
    with torch.no_grad():
        ref_googlenet(torch.randn(1, 3, 15, 15))
        ref_inception(torch.randn(1, 3, 75, 75))
        for model, too_small in ((ref_googlenet, (14, 20)), (ref_inception, (74, 80))):
            with pytest.raises(RuntimeError):
                model(torch.randn(1, 3, *too_small))

    with pytest.raises(ValueError, match="at least 15x15 pixels, got 14x20"):
        GoogLeNet(num_classes=3, init_weights=False).eval()(torch.randn(1, 3, 14, 20))
    inception = Inception3(num_classes=3, init_weights=False).eval()
    with pytest.raises(ValueError, match="at least 75x75 pixels, got 74x80"):
        inception(torch.randn(1, 3, 74, 80))
    with pytest.raises(ValueError, match=r"at least 299x299 pixels in training mode with aux_logits=True, got 298x299"):
        inception.train()(torch.randn(2, 3, 298, 299))
    with pytest.raises(ValueError, match="3 channels"):
        inception.train()(torch.randn(2, 1, 299, 299))


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_same_seed_gives_the_reference_initialisation(name: str) -> None:
    """``init_weights=None`` means True, silently (the reference warns): the same draws as the reference's True."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_pair(name, reference_kwargs={"init_weights": True})  # pair checks the initialisation


def test_init_weights_false_keeps_default_initialisation() -> None:
    _, ours = build_pair("googlenet", init_weights=False)  # the same draws as the reference's
    assert ours.fc.weight.abs().max() > 0.02  # nn.Linear's default, not the truncated normal of std 0.01


class ReluConv(BasicConv2d):
    """Shaped like a quantizable conv block: an explicit ReLU module (no tensors, so the keys do not change)."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, **conv_kwargs)
        self.relu = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _using_relu_conv(block: type[torch.nn.Module]) -> type[torch.nn.Module]:
    """A subclass of ``block`` that builds its convolutions with ``ReluConv`` and concatenates ``_forward``'s
    branches itself, the way the quantizable variants subclass these blocks."""

    class Swapped(block):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, conv_block=ReluConv, **kwargs)

        if hasattr(block, "_forward"):

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.cat(self._forward(x), 1)

    Swapped.__name__ = f"Swapped{block.__name__}"
    return Swapped


def _assert_every_conv_is_swapped(model: torch.nn.Module) -> None:
    convs = [m for m in model.modules() if isinstance(m, BasicConv2d)]
    assert convs and all(type(m) is ReluConv for m in convs)


def test_swapped_googlenet_blocks_keep_keys_and_outputs() -> None:
    blocks = [ReluConv, _using_relu_conv(Inception), _using_relu_conv(InceptionAux)]
    ref, ours = pair(
        lambda: reference.models.googlenet(weights=None, init_weights=False),
        lambda: GoogLeNet(blocks=blocks, init_weights=False),
    )
    _assert_every_conv_is_swapped(ours)
    x = torch.randn(2, 3, 40, 48)
    for mine, theirs in zip(_train_outputs(ours, x), _train_outputs(ref, x)):  # the auxiliary heads too
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_swapped_inception3_blocks_keep_keys_and_outputs() -> None:
    blocks = [ReluConv] + [
        _using_relu_conv(block)
        for block in (
            inception.InceptionA,
            inception.InceptionB,
            inception.InceptionC,
            inception.InceptionD,
            inception.InceptionE,
            inception.InceptionAux,
        )
    ]
    ref, ours = pair(
        lambda: reference.models.inception_v3(weights=None, init_weights=False, num_classes=10),
        lambda: Inception3(inception_blocks=blocks, init_weights=False, num_classes=10),
    )
    _assert_every_conv_is_swapped(ours)
    assert_same_outputs(ref, ours, torch.randn(1, 3, 75, 80))


def test_block_lists_and_sizes_are_validated() -> None:
    expected = r"3 block classes in the order \[BasicConv2d, Inception, InceptionAux\], got 2"
    with pytest.raises(ValueError, match=expected):
        GoogLeNet(blocks=[BasicConv2d, Inception])
    with pytest.raises(ValueError, match="7 block classes"):
        Inception3(inception_blocks=[BasicConv2d] * 6)
    with pytest.raises(ValueError, match="num_classes must be positive, got 0"):
        GoogLeNet(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be positive, got -1"):
        Inception3(num_classes=-1)


# --------------------------------------------------------------------------------------------------
# Pretrained weights: the official checkpoints include the auxiliary heads and expect transform_input=True.
# Both packages' downloads are replaced by the reference model's state_dict.
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    checkpoints: dict[str, dict[str, torch.Tensor]] = {}

    def checkpoint_for(url: str) -> dict[str, torch.Tensor]:
        name = "googlenet" if "googlenet" in url else "inception_v3"
        if name not in checkpoints:
            torch.manual_seed(0)
            checkpoints[name] = reference.models.get_model(name, weights=None, init_weights=False).state_dict()
        return dict(checkpoints[name])

    def get_state_dict(self: Any, progress: bool = True, check_hash: bool = True) -> dict[str, torch.Tensor]:
        return checkpoint_for(self.url)

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    monkeypatch.setattr(reference.models.WeightsEnum, "get_state_dict", get_state_dict)
    return checkpoints


def _assert_same_model(ref: torch.nn.Module, ours: torch.nn.Module, size: int) -> None:
    assert ours.transform_input is ref.transform_input
    assert ours.aux_logits is ref.aux_logits
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert_same_outputs(ref.eval(), ours.eval(), torch.randn(1, 3, size, size))


@pytest.mark.parametrize("kwargs", [{}, {"transform_input": False}, {"aux_logits": True}])
def test_googlenet_pretrained_rules_match_reference(kwargs: dict[str, Any], fake_downloads: dict) -> None:
    with warnings.catch_warnings(record=True) as ref_warnings:
        warnings.simplefilter("always")
        ref = reference.models.googlenet(weights="DEFAULT", **kwargs)
    with warnings.catch_warnings(record=True) as our_warnings:
        warnings.simplefilter("always")
        ours = models.googlenet(weights="DEFAULT", **kwargs)
    assert ours.transform_input is kwargs.get("transform_input", True)
    keeps_aux = kwargs.get("aux_logits", False)
    assert (ours.aux1 is not None, ours.aux2 is not None) == (keeps_aux, keeps_aux)
    _assert_same_model(ref, ours, 64)
    # Kept auxiliary heads are loaded, but they were never trained: both packages say so.
    assert any("aux" in str(w.message) for w in ref_warnings) == keeps_aux
    assert [str(w.message) for w in our_warnings if "never trained" in str(w.message)] == (
        ["The auxiliary heads of GoogLeNet_Weights.IMAGENET1K_V1 were never trained; train them before relying on them"]
        if keeps_aux
        else []
    )
    if keeps_aux:
        x = torch.randn(2, 3, 32, 32)
        for mine, theirs in zip(_train_outputs(ours, x), _train_outputs(ref, x)):
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"transform_input": False}])
def test_inception_pretrained_rules_match_reference(kwargs: dict[str, Any], fake_downloads: dict) -> None:
    ref = reference.models.inception_v3(weights="DEFAULT", **kwargs)
    ours = models.inception_v3(weights="DEFAULT", **kwargs)
    assert ours.transform_input is kwargs.get("transform_input", True)
    assert ours.AuxLogits is not None  # the auxiliary head of these weights is trained: kept by default
    torch.testing.assert_close(ours.AuxLogits.fc.weight, fake_downloads["inception_v3"]["AuxLogits.fc.weight"])
    _assert_same_model(ref, ours, 75)


def test_init_weights_true_contradicts_pretrained_weights(fake_downloads: dict) -> None:
    for name in ("googlenet", "inception_v3"):
        with pytest.raises(ValueError):
            reference.models.get_model(name, weights="DEFAULT", init_weights=True)
        with pytest.raises(ValueError, match="init_weights=True"):
            models.get_model(name, weights="DEFAULT", init_weights=True)
        assert models.get_model(name, weights="DEFAULT", init_weights=False).transform_input


def test_aux_logits_false_with_published_weights_is_refused(fake_downloads: dict) -> None:
    """As in the reference: the published checkpoints hold the auxiliary heads, so aux_logits=False is a mistake."""
    for name in ("googlenet", "inception_v3"):
        with pytest.raises(ValueError, match="aux_logits"):
            reference.models.get_model(name, weights="DEFAULT", aux_logits=False)
        with pytest.raises(ValueError, match="aux_logits=False cannot be combined with weights="):
            models.get_model(name, weights="DEFAULT", aux_logits=False)


def test_aux_logits_false_with_a_local_checkpoint_drops_the_heads(tmp_path: Path) -> None:
    """A local checkpoint (not a published entry) may leave the heads out: they are dropped from the file."""
    torch.manual_seed(0)
    state = reference.models.inception_v3(weights=None, init_weights=False).state_dict()
    torch.save(state, tmp_path / "inception.pth")
    inception = models.inception_v3(weights=tmp_path / "inception.pth", aux_logits=False)
    assert inception.AuxLogits is None and inception.aux_logits is False
    torch.testing.assert_close(inception.fc.weight, state["fc.weight"])
    assert isinstance(inception.train()(torch.randn(2, 3, 80, 80)), torch.Tensor)
    no_heads = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    torch.save(no_heads, tmp_path / "fine_tuned.pth")
    assert models.inception_v3(weights=tmp_path / "fine_tuned.pth", aux_logits=False).AuxLogits is None


def test_local_checkpoint_follows_the_same_rules(tmp_path: Path) -> None:
    """A cached official file passed by path behaves like the weights entry; one saved without the auxiliary
    heads (after fine-tuning a pretrained model) loads too."""
    torch.manual_seed(0)
    official = reference.models.googlenet(weights=None, init_weights=False).state_dict()
    torch.save(official, tmp_path / "googlenet-1378be20.pth")
    model = models.googlenet(weights=tmp_path / "googlenet-1378be20.pth")
    assert model.transform_input and model.aux1 is None and model.aux2 is None
    torch.testing.assert_close(model.fc.weight, official["fc.weight"])

    torch.save(model.state_dict(), tmp_path / "finetuned.pth")
    again = models.googlenet(weights=str(tmp_path / "finetuned.pth"))
    assert list(again.state_dict()) == list(model.state_dict())
    with pytest.raises(ValueError, match="missing keys: aux1"):
        models.googlenet(weights=tmp_path / "finetuned.pth", aux_logits=True)


def test_new_num_classes_reinitialises_every_head(fake_downloads: dict) -> None:
    with pytest.warns(UserWarning, match="AuxLogits.fc.weight"):
        model = models.inception_v3(weights="DEFAULT", num_classes=10)
    assert model.fc.out_features == model.AuxLogits.fc.out_features == 10
    checkpoint = fake_downloads["inception_v3"]
    torch.testing.assert_close(model.Mixed_7c.branch_pool.conv.weight, checkpoint["Mixed_7c.branch_pool.conv.weight"])
    torch.testing.assert_close(model.AuxLogits.conv1.conv.weight, checkpoint["AuxLogits.conv1.conv.weight"])
    assert not model.AuxLogits.fc.weight.is_meta and model.AuxLogits.fc.weight.std() > 0
