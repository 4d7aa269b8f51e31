"""What every quantizable family shares: eager-mode quantization, the int8 build path, and weights entries.

A quantizable model is its float family with three changes that eager-mode quantization needs: a ``QuantStub``
and a ``DeQuantStub`` around the network, additions / multiplications / concatenations done through
``FloatFunctional`` modules (they carry the output's scale and zero point once quantized), and one
non-inplace ``nn.ReLU`` module per use, so that ``fuse_model`` can fold each Conv-BN-ReLU into one module.
``quantize=True`` then runs post-training quantization (or, for MobileNet V3, converts a QAT-prepared model)
and the result runs int8 kernels on the CPU.

torch marks ``torch.ao.quantization`` as deprecated; the calls made here are wrapped so that building a model
does not print that notice (nor the related notices about quantized tensors) to the user.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

try:
    from torch.ao.nn.quantized import FloatFunctional  # noqa: F401  (the quantizable families import it from here)
    from torch.ao.quantization import (
        DeQuantStub,
        QConfig,
        QuantStub,
        convert,
        default_observer,
        default_per_channel_weight_observer,
        default_weight_observer,
        fuse_modules,
        fuse_modules_qat,
        get_default_qat_qconfig,
        prepare,
        prepare_qat,
    )
except ImportError as error:  # pragma: no cover - depends on the installed torch
    # Named after this package, so that list_models() treats the quantized family as absent, not as broken.
    raise ModuleNotFoundError(
        f"visionzoo.models.quantization needs torch's eager-mode quantization (torch.ao.quantization), which "
        f"torch {torch.__version__} does not provide; use a torch release that still ships it (see README, "
        f"'Supported versions')",
        name=__package__,
    ) from error

from ...ops.misc import Conv2dNormActivation
from .._api import Weights, WeightsEnum, register_model
from .._utils import build_model, load_weights, read_weights

__all__ = ["BACKENDS", "quantize_model"]

M = TypeVar("M", bound=nn.Module)
F = TypeVar("F", bound=Callable[..., nn.Module])

BACKENDS = ("fbgemm", "x86", "qnnpack")
"""Quantized engines a model can be built for: ``fbgemm``/``x86`` for x86 servers, ``qnnpack`` for ARM."""

# Notices torch prints from inside the calls below. Each pattern is matched against the start of the message.
_QUIET = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation"),
    # The default QAT observers still pass reduce_range, which torch says it will deprecate.
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
    # Reading a checkpoint of quantized tensors goes through torch's legacy storage class.
    (UserWarning, r"TypedStorage is deprecated"),
    # Modules that calibration does not reach (eval-mode auxiliary heads, or no calibration at all because a
    # checkpoint overwrites every scale and zero point) report default quantization parameters.
    (UserWarning, r"must run observer before calling calculate_qparams"),
)


@contextlib.contextmanager
def quiet_quantization() -> Iterator[None]:
    """Silence, within the block only, torch's deprecation notices about eager-mode quantization and the
    notices our builds trigger by design (listed in ``_QUIET``); every other warning still shows."""
    with warnings.catch_warnings():
        for category, pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        yield


# --------------------------------------------------------------------------------------------------
# Making a float model quantizable
# --------------------------------------------------------------------------------------------------


def make_quantizable(model: nn.Module) -> None:
    """Add the model's ``quant``/``dequant`` stubs and give every ReLU its own non-inplace module.

    Float families reuse one ``ReLU`` module several times and run many in place; fusion needs one module per
    Conv-BN-ReLU and observers need the pre-activation tensor intact. ``ReLU6`` becomes ``ReLU`` too: fusion
    knows Conv-BN-ReLU only, and the published int8 MobileNet V2 weights were trained that way.
    """
    model.quant = QuantStub()
    model.dequant = DeQuantStub()
    _replace_relu(model)


def _replace_relu(module: nn.Module) -> None:
    for name, child in module.named_children():
        # Exact types: a subclass of ReLU may mean something else and is left alone.
        if type(child) in (nn.ReLU, nn.ReLU6):
            setattr(module, name, nn.ReLU(inplace=False))
        else:
            _replace_relu(child)


def fuse(module: nn.Module, groups: list[list[str]], is_qat: bool | None) -> None:
    """Fuse each group of submodule names (e.g. ``["conv1", "bn1", "relu1"]``) of ``module`` in place.

    Args:
        is_qat: fuse for quantization-aware training (keeps BatchNorm as a trainable part of the fused module)
            or for post-training quantization (folds it into the convolution); ``None`` follows
            ``module.training``.
    """
    qat = module.training if is_qat is None else is_qat
    (fuse_modules_qat if qat else fuse_modules)(module, groups, inplace=True)


def fuse_conv_blocks(model: nn.Module, is_qat: bool | None, blocks: type[nn.Module]) -> None:
    """Fuse every ``Conv2dNormActivation`` of ``model`` (Conv-BN, plus its activation when that is a ReLU) and
    let each ``blocks`` module fuse its own layers with its ``fuse_model``, in place."""
    for module in model.modules():
        if type(module) is Conv2dNormActivation:
            with_relu = len(module) == 3 and type(module[2]) is nn.ReLU
            fuse(module, [["0", "1", "2"] if with_relu else ["0", "1"]], is_qat)
        elif isinstance(module, blocks):
            module.fuse_model(is_qat)


# --------------------------------------------------------------------------------------------------
# Quantizing
# --------------------------------------------------------------------------------------------------


def _check_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    available = torch.backends.quantized.supported_engines
    if backend not in available:
        raise ValueError(
            f"The quantized engine {backend!r} is not available in this torch build (available: "
            f"{', '.join(e for e in available if e != 'none')})"
        )
    return backend


def _ptq_qconfig(backend: str) -> QConfig:
    # The observers the published int8 checkpoints were produced with: per-channel weights on x86 engines,
    # per-tensor weights for qnnpack; activations in the reduced 7-bit range that avoids fbgemm overflow.
    weight = default_weight_observer if backend == "qnnpack" else default_per_channel_weight_observer
    return QConfig(activation=default_observer, weight=weight)


def quantize_model(
    model: M, backend: str = "fbgemm", calibration_data: torch.Tensor | None = None, *, calibrate: bool = True
) -> M:
    """Post-training quantization (eager mode) of a quantizable float model, in place.

    Fuses Conv-BN(-ReLU), inserts observers, runs ``calibration_data`` through the model to record activation
    ranges, and converts to int8 modules. Sets ``torch.backends.quantized.engine`` to ``backend``: weights are
    packed for, and run best on, that engine.

    Args:
        model: a model with ``fuse_model``, e.g. ``quantized_resnet50(quantize=False, weights=...)``.
        backend: ``"fbgemm"`` or ``"x86"`` (x86 CPUs), ``"qnnpack"`` (ARM).
        calibration_data: a batch of preprocessed images; representative data gives good activation ranges.
            ``None`` uses one random 224x224 image, which is only good for testing.
        calibrate: ``False`` skips the calibration pass, for when a checkpoint will overwrite every scale.

    Returns:
        The same model object, quantized and in eval mode.
    """
    if not callable(getattr(model, "fuse_model", None)):
        raise TypeError(f"{type(model).__name__} has no fuse_model(): build it with a quantized_* builder")
    torch.backends.quantized.engine = _check_backend(backend)
    with quiet_quantization():
        model.eval()
        model.qconfig = _ptq_qconfig(backend)
        model.fuse_model(is_qat=False)
        prepare(model, inplace=True)
        if calibrate:
            if calibration_data is None:
                calibration_data = random_images(224)
            with torch.no_grad():
                model(calibration_data)
        convert(model, inplace=True)
    return model


def random_images(size: int) -> torch.Tensor:
    """One normalised-looking random image, from a private generator (the global RNG is left untouched)."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def build_quantizable(
    make: Callable[..., M],
    weights: WeightsEnum | Path | None,
    progress: bool,
    quantize: bool,
    *,
    default_backend: str,
    calibration_size: int = 64,
    qat: bool = False,
    ignore_unexpected: tuple[str, ...] = (),
    **kwargs: Any,
) -> M:
    """Build a quantizable model: float (``quantize=False``, through ``build_model``) or int8.

    Args:
        make: the quantizable model class.
        weights: float weights with ``quantize=False``, int8 weights (or a path to an int8 checkpoint) with
            ``quantize=True``; already resolved by the registry.
        default_backend: the family's engine when neither ``backend=`` nor the weights name one.
        calibration_size: side of the random image that calibrates a model built without weights. Noise gives
            meaningless activation ranges at any size, so the smallest size the architecture takes is used;
            calibrate on real images with ``quantize_model`` for a useful int8 model.
        qat: the int8 checkpoints are quantization-aware-training states: prepare for QAT, load, then convert
            (MobileNet V3) instead of quantizing and then loading.
        ignore_unexpected: key prefixes of checkpoint tensors the model is built without (auxiliary heads).
        **kwargs: architecture arguments, plus ``backend``.

    Raises:
        ValueError: a backend other than the weights', an unknown backend, ``num_classes`` other than the
            int8 weights' (their head cannot be re-initialised), or a checkpoint that does not fit.
    """
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize must be True or False, got {quantize!r}")
    backend = _check_backend(_choose_backend(weights, kwargs.pop("backend", None), default_backend))
    if not quantize:
        return build_model(make, weights, progress, ignore_unexpected=ignore_unexpected, **kwargs)

    state_dict, source = None, ""
    if weights is not None:
        state_dict, source = _load_int8_checkpoint(weights, progress, kwargs)
    load = partial(_load_int8, ignore_unexpected=ignore_unexpected)

    torch.backends.quantized.engine = backend
    model = make(**kwargs)
    if qat:
        with quiet_quantization():
            model.fuse_model(is_qat=True)
            model.qconfig = get_default_qat_qconfig(backend)
            prepare_qat(model, inplace=True)
            if state_dict is not None:
                load(model, state_dict, source)
            convert(model, inplace=True)
        return model.eval()

    quantize_model(model, backend, random_images(calibration_size), calibrate=state_dict is None)
    if state_dict is not None:
        load(model, state_dict, source)
    return model


def _choose_backend(weights: WeightsEnum | Path | None, requested: str | None, default: str) -> str:
    trained_for = weights.meta.get("backend") if isinstance(weights, WeightsEnum) else None
    if trained_for is not None and requested is not None and requested != trained_for:
        raise ValueError(
            f"{weights!r} were quantized for the {trained_for!r} engine and cannot run as backend={requested!r}; "
            f"omit backend= (or pass {trained_for!r})"
        )
    return trained_for or requested or default


def _load_int8_checkpoint(
    weights: WeightsEnum | Path, progress: bool, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    if isinstance(weights, WeightsEnum):
        categories = len(weights.meta["categories"])
        if kwargs.setdefault("num_classes", categories) != categories:
            raise ValueError(
                f"num_classes={kwargs['num_classes']} does not fit {weights!r}, which classify {categories} "
                f"categories, and an int8 head cannot be re-initialised; fine-tune the float model "
                f"(quantize=False with its unquantized weights, {weights.meta['unquantized']!r}) and quantize that"
            )
    with quiet_quantization():
        return read_weights(weights, progress, tensors_only=False)


def _load_int8(model: nn.Module, state_dict: dict[str, Any], source: str, ignore_unexpected: tuple[str, ...]) -> None:
    with quiet_quantization():
        load_weights(
            model,
            state_dict,
            source,
            assign=False,
            ignore_unexpected=ignore_unexpected,
            hint="a float checkpoint needs quantize=False; an int8 one the architecture it was made for",
        )


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

PTQ_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification#post-training-quantized-models"
PTQ_DOCS = (
    "Eager-mode post-training quantization of the unquantized weights named in the meta data, calibrated on "
    "ImageNet training images."
)
QAT_DOCS = "Eager-mode quantization-aware training started from the unquantized weights named in the meta data."


def quantized_entry(
    url: str,
    unquantized: WeightsEnum,
    *,
    acc1: float,
    acc5: float,
    file_mb: float,
    backend: str = "fbgemm",
    recipe: str = PTQ_RECIPE,
    docs: str = PTQ_DOCS,
) -> Weights:
    """An int8 ImageNet-1k weights entry; what does not change with quantization (categories, parameter count,
    GFLOPS, minimum size and the preset) comes from the ``unquantized`` float entry.

    Args:
        acc1/acc5: ImageNet-1K validation accuracy (%) of the int8 model; file_mb: checkpoint size in MB.
        backend: the engine the weights were packed for.
    """
    source = unquantized.meta
    meta = {
        "categories": source["categories"],
        "min_size": source["min_size"],
        "num_params": source["num_params"],
        "backend": backend,
        "recipe": recipe,
        "unquantized": unquantized,
        "_metrics": {"ImageNet-1K": {"acc@1": acc1, "acc@5": acc5}},
        "_ops": source["_ops"],
        "_file_size": file_mb,
        "_docs": docs,
    }
    return Weights(url=url, transforms=unquantized.transforms, meta=meta)


def register_quantized(name: str, quantized: type[WeightsEnum], floating: type[WeightsEnum]) -> Callable[[F], F]:
    """Register a quantized builder under ``name``, task ``quantization``: ``weights`` resolves against
    ``quantized`` with ``quantize=True`` and against ``floating`` otherwise; ``pretrained=True`` means the first
    entry of the one that ``quantize`` selects."""
    first_int8, first_float = next(iter(quantized)), next(iter(floating))
    return register_model(
        name,
        task="quantization",
        weights=quantized,
        legacy_weights=lambda kwargs: first_int8 if kwargs.get("quantize") else first_float,
        weights_for=weights_enum_for(quantized, floating),
    )


def weights_enum_for(
    quantized: type[WeightsEnum], floating: type[WeightsEnum]
) -> Callable[[dict[str, Any]], type[WeightsEnum]]:
    """The registry hook of a quantized builder: the int8 enum with ``quantize=True``, else the float one.

    A member (or member name) of the other enum raises a ``ValueError`` that says which ``quantize`` it needs.
    """

    def choose(kwargs: dict[str, Any]) -> type[WeightsEnum]:
        quantize = kwargs.get("quantize", False)
        if not isinstance(quantize, bool):
            raise TypeError(f"quantize must be True or False, got {quantize!r}")
        wanted, other = (quantized, floating) if quantize else (floating, quantized)
        member = _member_of(other, kwargs.get("weights"))
        if member is None or _member_of(wanted, kwargs.get("weights")) is not None:
            return wanted
        if quantize:
            made_from = [m for m in quantized if m.meta["unquantized"] is member]
            options = ", ".join(map(repr, made_from or list(quantized)))
            raise ValueError(
                f"{member!r} are float weights, but quantize=True needs int8 weights: pass {options}, "
                f"or quantize=False to load {member!r} into the float quantizable model"
            )
        raise ValueError(
            f"{member!r} are int8 weights: pass quantize=True to load them, or use their float counterpart "
            f"{member.meta['unquantized']!r} with quantize=False"
        )

    return choose


def _member_of(enum: type[WeightsEnum], value: Any) -> WeightsEnum | None:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        return enum.__members__.get(value.removeprefix(enum.__name__ + "."))
    return None
