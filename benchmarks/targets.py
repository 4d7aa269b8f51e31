"""What the benchmarks measure: tasks (how to build and feed a model of that kind) and the models to time.

Adding a task later (detection, segmentation, video, optical flow) means one ``Task`` entry that says where
both registries live and how to make an input, plus its targets in a list; the benchmark scripts stay as
they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


def _image_batch(batch: int, size: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)),)


def _image_list(batch: int, size: int) -> tuple[Any, ...]:
    """Detection models take a list of (3, H, W) images with values in [0, 1]: one positional argument."""
    gen = torch.Generator().manual_seed(0)
    return ([torch.rand(3, size, size, generator=gen) for _ in range(batch)],)


@dataclass(frozen=True)
class Task:
    """A kind of model: the registry module of each side and how to make a batch of inputs."""

    ours_module: str
    reference_module: str
    make_input: Callable[[int, int], tuple[Any, ...]]
    default_size: int


TASKS: dict[str, Task] = {
    "classification": Task("visionzoo.models", "torchvision.models", _image_batch, 224),
    "quantization": Task("visionzoo.models.quantization", "torchvision.models.quantization", _image_batch, 224),
    # The published weights' preset resizes the shorter side to 520 pixels.
    "segmentation": Task("visionzoo.models.segmentation", "torchvision.models.segmentation", _image_batch, 520),
    # Square images; the models resize them with their own transform (the shorter side to 800 for Faster R-CNN).
    "detection": Task("visionzoo.models.detection", "torchvision.models.detection", _image_list, 512),
}


@dataclass(frozen=True)
class Target:
    """One model to benchmark: its registry name (the same on both sides), task and builder arguments."""

    name: str
    task: str = "classification"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name

    def _registry(self, side: str) -> Any:
        task = TASKS[self.task]
        module = importlib.import_module(task.ours_module if side == "ours" else task.reference_module)
        # Both sides expose the registry API at the top of their models package.
        return importlib.import_module(module.__name__.split(".")[0] + ".models")

    def missing(self) -> str | None:
        """Why this target cannot run now (a side has not registered the model), or None."""
        for side in ("ours", "reference"):
            try:
                self._registry(side).get_model_builder(self.name)
            except (ValueError, ModuleNotFoundError, ImportError) as error:
                return f"{self.name}: not available in {side} ({type(error).__name__}: {str(error)[:120]})"
        return None

    def build(self, side: str, **extra: Any) -> nn.Module:
        return self._registry(side).get_model(self.name, **{**self.config, **extra})

    def input_size(self) -> int:
        """The crop size of the model's default weights (its native resolution), else the task's default."""
        try:
            weights = self._registry("ours").get_model_weights(self.name).DEFAULT
            return int(weights.transforms.keywords.get("crop_size", TASKS[self.task].default_size))
        except (ValueError, AttributeError):
            return TASKS[self.task].default_size

    def inputs(self, batch: int, size: int | None = None) -> tuple[Any, ...]:
        return TASKS[self.task].make_input(batch, size or self.input_size())


REPRESENTATIVES: list[Target] = [
    Target("resnet50"),
    Target("mobilenet_v3_large"),
    Target("efficientnet_b0"),
    Target("densenet121"),
    Target("inception_v3"),
    Target("regnet_y_800mf"),
    Target("convnext_tiny"),
    Target("vit_b_16"),
    Target("swin_t"),
    Target("maxvit_t"),
    Target("quantized_resnet50", task="quantization", config={"quantize": True}),
    # Randomly initialised backbones: the reference's default would download its ImageNet weights.
    Target("deeplabv3_resnet50", task="segmentation", config={"weights_backbone": None}),
    Target("lraspp_mobilenet_v3_large", task="segmentation", config={"weights_backbone": None}),
]

# Loading a pretrained model: (target, weights entry whose architecture is the builder's default). The
# entries are chosen so that one checkpoint file fits both the path and the enum way of loading.
LOADING: list[tuple[Target, str]] = [
    (Target("resnet50"), "IMAGENET1K_V2"),
    (Target("vit_l_16"), "IMAGENET1K_V1"),
    (Target("vit_h_14"), "IMAGENET1K_SWAG_LINEAR_V1"),
    (Target("regnet_y_128gf"), "IMAGENET1K_SWAG_LINEAR_V1"),
]


def all_targets(task: str = "classification") -> list[Target]:
    """Every builder of ``task`` registered by visionzoo (the reference may lack some; ``missing`` says)."""
    ours = importlib.import_module(TASKS[task].ours_module)
    return [Target(name, task=task) for name in ours.list_models(module=ours)]


@dataclass
class Pair:
    """Our model and the reference's, in eval mode, holding the same weights (when ``synced``)."""

    ours: nn.Module
    reference: nn.Module
    synced: bool
    note: str = ""


def build_pair(target: Target, seed: int = 0) -> Pair:
    """Build both sides; ours gets the reference's state_dict so both compute the same function."""
    torch.manual_seed(seed)
    reference = target.build("reference").eval()
    torch.manual_seed(seed)
    ours = target.build("ours").eval()
    try:
        ours.load_state_dict(reference.state_dict(), strict=True)
        return Pair(ours, reference, synced=True)
    except (RuntimeError, ValueError) as error:  # e.g. quantized packed params with a different layout
        return Pair(ours, reference, synced=False, note=f"weights not synced: {str(error)[:160]}")


def calibrate_batch_norm(model: nn.Module, inputs: tuple[Any, ...], rounds: int = 2) -> int:
    """Give a randomly initialised model realistic BatchNorm statistics: each BatchNorm's running mean and
    variance become those of its input over ``rounds`` forward passes on ``inputs`` (train mode for the
    BatchNorms only, no autograd). Returns how many BatchNorms were calibrated.

    Freshly built, every BatchNorm is the identity in eval mode, and the activations of a deep network can then
    shrink layer by layer into float32's subnormal range (mobilenet_v3_large's logits come out near 1e-9):
    kernels that do not flush subnormals to zero slow down many times over, so runtimes that flush them (ONNX
    Runtime, OpenVINO) would look far faster than on a trained model. Calibrated, activations have the scale of
    a trained network's and the timings mean what they would with real weights.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m, m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration passes
        m.train()
    try:
        with torch.no_grad():
            for _ in range(rounds):
                model(*inputs)
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
    return len(norms)


def fill_zero_weights(model: nn.Module, std: float = 0.02, seed: int = 0) -> int:
    """Give weight matrices that are initialised to zero (ViT's classification head) small random values, so that
    the outputs, and the deviations of other runtimes from them, are not all zero. Returns how many were filled."""
    gen = torch.Generator().manual_seed(seed)
    filled = 0
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2 and parameter.is_floating_point() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=gen) * std)
                filled += 1
    return filled


def build_calibrated_pair(target: Target, inputs: tuple[Any, ...], seed: int = 0) -> Pair:
    """:func:`build_pair`, with the reference's zero-initialised weights filled (:func:`fill_zero_weights`) and
    its BatchNorm statistics calibrated on ``inputs`` (:func:`calibrate_batch_norm`), then copied into ours: random
    weights that behave like trained ones where speed and deviations are concerned."""
    pair = build_pair(target, seed)
    changed = fill_zero_weights(pair.reference, seed=seed) + calibrate_batch_norm(pair.reference, inputs)
    if changed and pair.synced:
        pair.ours.load_state_dict(pair.reference.state_dict(), strict=True)
    return pair
