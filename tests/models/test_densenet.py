"""DenseNet specifics: constructor arguments, gradient checkpointing, and the official files' old key layout."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_outputs, pair
from visionzoo import models
from visionzoo.models import DenseNet, DenseNet121_Weights

# Small networks keep the argument tests fast; the registry tests cover the full-size builders.
SMALL = {"growth_rate": 8, "block_config": (2, 3), "num_init_features": 16}


def _small_pair(**kwargs: Any) -> tuple[torch.nn.Module, DenseNet]:
    """A small reference DenseNet and ours (same initial draws, its weights): see ``pair``."""
    return pair(lambda: reference.models.DenseNet(**{**SMALL, **kwargs}), lambda: DenseNet(**{**SMALL, **kwargs}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"bn_size": 2, "num_classes": 7},
        {"growth_rate": 12, "block_config": (3, 1, 2), "num_init_features": 24},
        {"drop_rate": 0.3, "memory_efficient": True},
    ],
)
def test_constructor_arguments_match_reference(kwargs: dict[str, Any]) -> None:
    ref, ours = _small_pair(**kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 40, 48))


def test_training_mode_with_dropout_matches_reference() -> None:
    ref, ours = _small_pair(drop_rate=0.5)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(7)
    expected = ref.train()(x)
    torch.manual_seed(7)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    torch.manual_seed(8)
    assert not torch.allclose(ours(x), actual), "dropout should change the output between seeds"


def test_memory_efficient_gives_same_outputs_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    torch.manual_seed(0)
    plain = DenseNet(**SMALL).train()
    efficient = DenseNet(**SMALL, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    results = []
    for model in (plain, efficient):
        inputs = x.clone().requires_grad_()
        out = model(inputs)
        out.square().sum().backward()
        results.append((out, inputs.grad, {n: p.grad for n, p in model.named_parameters()}))
    assert len(calls) == sum(SMALL["block_config"])  # every dense layer was checkpointed, in the second model only
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = results
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(dx_b, dx_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, msg=name)

    with torch.no_grad():  # nothing to save memory for: no checkpointing
        efficient(x)
    assert len(calls) == sum(SMALL["block_config"])


def test_min_size_follows_the_number_of_blocks() -> None:
    """The reference fails somewhere inside the network below the minimum; ours says so up front."""
    for block_config in [(1,), (1, 1), (1, 1, 1), (1, 1, 1, 1)]:
        torch.manual_seed(0)
        ours, ref = DenseNet(8, block_config, 8).eval(), reference.models.DenseNet(8, block_config, 8).eval()
        smallest = ours._min_size
        with torch.no_grad():
            ref(torch.randn(1, 3, smallest, smallest))
            ours(torch.randn(1, 3, smallest, smallest))
            with pytest.raises(RuntimeError):
                ref(torch.randn(1, 3, smallest - 1, smallest))
        with pytest.raises(ValueError, match=f"at least {smallest}x{smallest} pixels, got {smallest - 1}x{smallest}"):
            ours(torch.randn(1, 3, smallest - 1, smallest))
    with torch.device("meta"):
        assert DenseNet()._min_size == DenseNet121_Weights.DEFAULT.meta["min_size"][0] == 29


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="block_config"):
        DenseNet(block_config=())
    with pytest.raises(ValueError, match="drop_rate"):
        DenseNet(drop_rate=1.5)
    with pytest.raises(ValueError, match="growth_rate must be positive"):
        DenseNet(growth_rate=0)
    with pytest.raises(ValueError, match="growth_rate=32"):
        models.densenet121(growth_rate=48)
    with pytest.raises(ValueError, match="num_init_features=96"):
        models.densenet161(num_init_features=64)
    with torch.device("meta"):  # a list spelling of the builder's own block_config is fine
        assert models.densenet169(block_config=[6, 12, 32, 32]).classifier.in_features == 1664


# --------------------------------------------------------------------------------------------------
# The official checkpoints' layout: "denselayer1.norm.1.weight" for "denselayer1.norm1.weight", and no
# num_batches_tracked buffers (they predate them).
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_densenet121() -> torch.nn.Module:
    torch.manual_seed(0)
    return reference.models.densenet121(weights=None).eval()


def _legacy_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    old = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        old[re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)] = value
    return old


def test_legacy_layout_helper_writes_the_old_names(reference_densenet121: torch.nn.Module) -> None:
    old = _legacy_layout(reference_densenet121.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    assert "features.denseblock4.denselayer16.conv.2.weight" in old
    assert "features.denseblock1.denselayer1.norm1.weight" not in old
    assert "features.transition1.norm.weight" in old and "features.norm5.running_var" in old


def test_plain_load_state_dict_takes_the_legacy_layout(reference_densenet121: torch.nn.Module) -> None:
    """The renaming lives in the layers' own ``_load_from_state_dict``: a user's ``load_state_dict`` of an old
    file works too, and BatchNorm adds the counters those files lack."""
    current = reference_densenet121.state_dict()
    model = models.densenet121().eval()
    result = model.load_state_dict(_legacy_layout(current), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], current[k]) for k in current if not k.endswith("num_batches_tracked"))
    assert all(loaded[k].item() == 0 for k in current if k.endswith("num_batches_tracked"))
    model.load_state_dict(current)  # the current layout loads unchanged


def _publish_legacy_checkpoint(directory: Path, state_dict: dict[str, torch.Tensor]) -> str:
    """Save ``state_dict`` in the official layout, named like the official files: ``<stem>-<sha256 prefix>.pth``."""
    staging = directory / "staging.pth"
    torch.save(_legacy_layout(state_dict), staging)
    name = f"densenet121-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    staging.rename(directory / name)
    return name


def _point_entry_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The real entry's file name promises the official file's hash; point it at ours (same pipeline otherwise)."""
    monkeypatch.setattr(DenseNet121_Weights, "url", property(lambda self: url))


def test_official_layout_downloads_and_converts_through_the_weights_enum(
    reference_densenet121: torch.nn.Module,
    file_server: tuple[str, Path],
    isolated_weights_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, served = file_server
    name = _publish_legacy_checkpoint(served, reference_densenet121.state_dict())
    _point_entry_at(monkeypatch, f"{base}/{name}")
    model = models.densenet121(weights="DEFAULT", progress=False).eval()
    assert (isolated_weights_cache / name).is_file()  # downloaded over HTTP, hash checked, cached
    assert model.features.denseblock1.denselayer1.norm1.num_batches_tracked.item() == 0
    assert_same_outputs(reference_densenet121, model, torch.randn(1, 3, 64, 64))


def test_official_layout_from_a_mirror_directory(
    reference_densenet121: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = _publish_legacy_checkpoint(mirror, reference_densenet121.state_dict())
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    _point_entry_at(monkeypatch, f"http://127.0.0.1:9/{name}")  # unreachable: the mirror must answer
    with pytest.warns(UserWarning, match="classifier.weight, classifier.bias"):
        model = models.densenet121(weights=DenseNet121_Weights.IMAGENET1K_V1, num_classes=5).eval()
    assert model.classifier.out_features == 5
    expected = reference_densenet121.features.denseblock4.denselayer16.conv2.weight
    torch.testing.assert_close(model.features.denseblock4.denselayer16.conv2.weight, expected, atol=0, rtol=0)


def test_official_layout_loads_from_a_local_file(reference_densenet121: torch.nn.Module, tmp_path: Path) -> None:
    """A user may pass the cached official file by path: it gets the same conversion."""
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(_legacy_layout(reference_densenet121.state_dict()), path)
    model = models.densenet121(weights=path).eval()
    assert_same_outputs(reference_densenet121, model, torch.randn(1, 3, 64, 64))
    assert models.densenet121(weights=str(path)).classifier.out_features == 1000
