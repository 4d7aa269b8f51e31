"""The registry API and the builder conventions shared by every family."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest
import torch

from tests import reference
from visionzoo import models
from visionzoo.models import ResNet18_Weights, ResNet50_Weights
from visionzoo.models._api import WeightsEnum, get_task, register_model


def _package_of(task: str) -> object:
    """Our package for a task, where the reference has its own: ``visionzoo.models`` for classification."""
    return models if task == "classification" else importlib.import_module(f"visionzoo.models.{task}")


@pytest.mark.parametrize("task", models.list_tasks())
def test_registry_is_the_references_for_every_landed_task(task: str) -> None:
    expected = reference.list_models_of_task(task)
    assert expected, f"the reference has no {task} models: is the task named as its package?"
    assert models.list_models(task=task) == expected
    assert models.list_models(module=_package_of(task)) == expected


def test_every_model_has_one_landed_task_and_its_family() -> None:
    by_task = [name for task in models.list_tasks() for name in models.list_models(task=task)]
    assert sorted(by_task) == models.list_models()  # each model in exactly one task, and no other task exists
    assert models.list_tasks() == [
        "classification",
        "quantization",
        "segmentation",
        "detection",
        "video",
        "optical_flow",
    ]
    for name in models.list_models():
        info = models.get_model_info(name)
        assert info.name == name and info.builder is models.get_model_builder(name)
        assert info.family == info.builder.__module__.rsplit(".", 1)[-1]
    assert {models.get_model_info(n).family for n in ("resnet50", "wide_resnet50_2", "resnext101_64x4d")} == {"resnet"}
    quantized = models.get_model_info("quantized_mobilenet_v3_large")
    assert (quantized.task, quantized.family) == ("quantization", "mobilenetv3")
    assert quantized.weights_enum is models.get_model_weights("quantized_mobilenet_v3_large")
    assert models.get_model_info("ResNet50").task == "classification"
    assert all(n.startswith("quantized_") for n in models.list_models(task="quantization"))


def test_list_models_by_task_combines_with_the_other_filters() -> None:
    assert models.list_models(task="quantization", include="*resnet*", exclude="*resnext*") == [
        "quantized_resnet18",
        "quantized_resnet50",
    ]
    assert models.list_models(module=models, task="quantization") == []


def test_tasks_record_what_their_models_need() -> None:
    assert get_task("quantization").build_kwargs == {"quantize": True} and get_task("quantization").cpu_only
    assert get_task("classification").build_kwargs == {} and not get_task("classification").cpu_only
    with pytest.raises(TypeError):
        get_task("quantization").build_kwargs["quantize"] = False  # type: ignore[index]


def test_unknown_tasks_name_the_valid_ones() -> None:
    valid = "valid tasks: classification, quantization, segmentation, detection, video, optical_flow"
    for call in (lambda: models.list_models(task="tracking"), lambda: get_task("Classification")):
        with pytest.raises(ValueError, match=f"Unknown task .*; {valid}$"):
            call()
    with pytest.raises(ValueError, match=valid):
        register_model(task="tracking")  # not a task of the zoo
    with pytest.raises(TypeError, match="task name must be a string"):
        models.list_models(task=1)  # type: ignore[arg-type]


def test_list_models_filters() -> None:
    everything = models.list_models()
    assert everything == sorted(everything)
    assert models.list_models(include="resnet1*") == ["resnet101", "resnet152", "resnet18"]
    assert models.list_models(include=["resnet18", "wide_*"]) == ["resnet18", "wide_resnet101_2", "wide_resnet50_2"]
    assert "resnet50" not in models.list_models(include="res*", exclude="resnet5*")
    assert set(models.list_models(module=models)) <= set(everything)


def test_get_model_and_builder() -> None:
    model = models.get_model("resnet18", num_classes=5)
    assert model.fc.out_features == 5
    assert models.get_model_builder("ResNet18") is models.resnet18


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(ValueError, match="Did you mean: resnet50"):
        models.get_model("resnet05")
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        models.resnet50(weights="IMAGENET1K_V3")
    with pytest.raises(ValueError, match="ResNet50_Weights"):
        models.get_weight("ResNet05_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        models.get_weight("ResNet50_Weights.IMAGENET1K")


def test_weights_lookups() -> None:
    assert ResNet50_Weights.DEFAULT is ResNet50_Weights.IMAGENET1K_V2
    assert ResNet50_Weights["IMAGENET1K_V1"] is ResNet50_Weights.IMAGENET1K_V1
    assert ResNet50_Weights.verify("ResNet50_Weights.IMAGENET1K_V1") is ResNet50_Weights.IMAGENET1K_V1
    assert models.get_weight("ResNet50_Weights.DEFAULT") is ResNet50_Weights.IMAGENET1K_V2
    assert models.get_model_weights("resnet50") is ResNet50_Weights
    assert models.get_model_weights(models.resnet50) is ResNet50_Weights
    assert repr(ResNet50_Weights.IMAGENET1K_V2) == "ResNet50_Weights.IMAGENET1K_V2"
    assert ResNet50_Weights.IMAGENET1K_V2.file_name == "resnet50-11ad3fa6.pth"
    assert list(ResNet50_Weights) == [ResNet50_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2]


def test_weights_of_another_model_are_refused() -> None:
    with pytest.raises(ValueError, match="belongs to ResNet18_Weights"):
        models.resnet50(weights=ResNet18_Weights.IMAGENET1K_V1)
    with pytest.raises(TypeError, match="ResNet50_Weights"):
        models.resnet50(weights=3)


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch) -> list[WeightsEnum]:
    """Replace the network with the reference model's state_dict (random init, fixed seed)."""
    fetched: list[WeightsEnum] = []
    checkpoints: dict[str, dict[str, torch.Tensor]] = {}

    def get_state_dict(self: WeightsEnum, progress: bool = True, check_hash: bool = True) -> dict:
        fetched.append(self)
        name = self.url.rsplit("/", 1)[1].split("-")[0]
        if name not in checkpoints:
            torch.manual_seed(0)
            checkpoints[name] = reference.models.get_model(name, weights=None).state_dict()
        return dict(checkpoints[name])

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    return fetched


@pytest.mark.parametrize(
    "weights", [ResNet18_Weights.IMAGENET1K_V1, "IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.DEFAULT"]
)
def test_weights_given_as_member_or_name(weights: object, fake_download: list[WeightsEnum]) -> None:
    model = models.resnet18(weights=weights)
    assert fake_download == [ResNet18_Weights.IMAGENET1K_V1]
    assert model.fc.out_features == 1000
    assert not any(t.is_meta for t in model.state_dict().values())


def test_deprecated_pretrained_keyword_and_positional_bool(fake_download: list[WeightsEnum]) -> None:
    with pytest.warns(UserWarning, match=r"pretrained=True\) is deprecated.*ResNet50_Weights.IMAGENET1K_V1"):
        models.resnet50(pretrained=True)
    with pytest.warns(UserWarning, match="deprecated"):
        models.resnet50(True)
    assert fake_download == [ResNet50_Weights.IMAGENET1K_V1] * 2
    with pytest.warns(UserWarning, match="weights=None"):
        model = models.resnet50(pretrained=False)
    assert len(fake_download) == 2 and model.fc.out_features == 1000
    with pytest.warns(UserWarning, match="positionally"):
        models.resnet18(ResNet18_Weights.IMAGENET1K_V1)
    with pytest.raises(ValueError, match="not both"):
        models.resnet18(weights="DEFAULT", pretrained=True)
    with pytest.raises(TypeError, match="keyword only"):
        models.resnet18(True, True)


def test_weights_build_on_meta_without_random_init(
    fake_download: list[WeightsEnum], monkeypatch: pytest.MonkeyPatch
) -> None:
    models.resnet50(weights="DEFAULT")  # the fake download builds its checkpoint once, before counting
    real_inits: list[torch.Size] = []
    original = torch.nn.init.kaiming_normal_

    def counting(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if not tensor.is_meta:
            real_inits.append(tensor.shape)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", counting)
    models.resnet50(weights="DEFAULT")
    assert real_inits == []
    models.resnet50()
    assert real_inits  # without weights, the usual initialisation runs


def test_other_num_classes_keeps_backbone_and_resets_head(fake_download: list[WeightsEnum]) -> None:
    torch.manual_seed(0)
    expected = reference.models.resnet18().state_dict()
    with pytest.warns(UserWarning, match=r"num_classes=10 differs.*fc\.weight, fc\.bias"):
        model = models.resnet18(weights="DEFAULT", num_classes=10)
    state = model.state_dict()
    assert model.fc.weight.shape == (10, 512) and not model.fc.weight.is_meta
    assert torch.isfinite(model.fc.weight).all() and model.fc.weight.std() > 0
    for key, value in expected.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_same_num_classes_as_weights_is_silent(fake_download: list[WeightsEnum]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.resnet18(weights="DEFAULT", num_classes=1000)


def _save_reference(path: Path, name: str = "resnet18", **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    ref = reference.models.get_model(name, weights=None, **kwargs).eval()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(ref.state_dict(), str(path))
    else:
        torch.save(ref.state_dict(), path)
    return ref


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_checkpoint_path(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("safetensors", reason="safetensors not installed") if suffix == ".safetensors" else None
    path = tmp_path / f"finetuned{suffix}"
    ref = _save_reference(path)
    x = torch.randn(1, 3, 64, 64)
    for weights in (path, str(path)):
        model = models.resnet18(weights=weights).eval()
        torch.testing.assert_close(model(x), ref(x), atol=1e-4, rtol=1e-4)


def test_local_checkpoint_unwraps_training_containers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = reference.models.resnet18(num_classes=4).state_dict()
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = models.resnet18(weights=path, num_classes=4)
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_local_checkpoint_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "ten_classes.pth"
    _save_reference(path, num_classes=10)
    with pytest.warns(UserWarning, match=r"num_classes=10 taken from the checkpoint .*ten_classes\.pth"):
        assert models.resnet18(weights=path).fc.out_features == 10
    with pytest.raises(
        ValueError, match=r"(?s)fc\.weight: checkpoint \(10, 512\) vs model \(5, 512\).*pass num_classes=10"
    ):
        models.resnet18(weights=path, num_classes=5)
    assert models.resnet18(weights=path, num_classes=10).fc.out_features == 10

    wrong = tmp_path / "resnet34.pth"
    _save_reference(wrong, "resnet34")
    with pytest.raises(ValueError, match=r"unexpected keys: layer1\.2\.conv1\.weight"):
        models.resnet18(weights=wrong)
    _save_reference(tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"missing keys: .*layer1\.2\.conv1\.weight"):
        models.resnet34(weights=tmp_path / "r18.pth")
    with pytest.raises(Exception, match="missing.pth"):
        models.resnet18(weights=tmp_path / "missing.pth")
