"""The one build-and-load path every builder goes through, plus small builder helpers.

``build_model`` owns everything that is not architecture: choosing ``num_classes`` from the weights,
building on the ``meta`` device when a checkpoint will overwrite every tensor, loading the checkpoint
(``load_state_dict`` with ``assign``, so there is no second copy in memory and no wasted random initialisation;
families fix old checkpoint layouts in their own ``_load_from_state_dict``), and re-creating the classification
head when the caller asks for a different number of classes than the weights were trained on.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.fx
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from torch.overrides import TorchFunctionMode

from ..transforms.functional import _count_non_finite
from ._api import WeightsEnum, caller_stacklevel

M = TypeVar("M", bound=nn.Module)

StateDict = dict[str, torch.Tensor]


def build_model(
    make: Callable[..., M],
    weights: WeightsEnum | Path | None,
    progress: bool = True,
    *,
    ignore_unexpected: tuple[str, ...] = (),
    **kwargs: Any,
) -> M:
    """Build ``make(**kwargs)`` and load ``weights`` into it.

    Args:
        make: the model class (or a function returning the model).
        weights: an enum member, a path to a local checkpoint (``.pth`` or ``.safetensors``), or None for a
            randomly initialised model.
        progress: show a progress bar while downloading.
        ignore_unexpected: key prefixes of checkpoint tensors the model was deliberately built without (e.g. the
            auxiliary heads of GoogLeNet); they are not reported as unexpected.
        **kwargs: architecture arguments. ``num_classes`` defaults to the weights' number of categories (for a
            local checkpoint: the size of its classification head, with a warning saying so); with published
            weights, a different value keeps every pretrained tensor except the classification head, which is
            built fresh (as the family's builder initialises it, see ``reset_classifier``) and named in a warning.

    Old checkpoint layouts are fixed by the families' own ``_load_from_state_dict`` (PyTorch's mechanism), which
    see the checkpoint as saved, ``_metadata`` (format versions) included.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit the architecture (lists missing, unexpected and
            mismatched keys).
    """
    if weights is None:
        return make(**kwargs)

    published = isinstance(weights, WeightsEnum)
    categories = len(weights.meta.get("categories") or ()) if published else 0
    if categories:
        kwargs.setdefault("num_classes", categories)
    state_dict, source = read_weights(weights, progress)

    if not published and "num_classes" not in kwargs:
        saved_classes = checkpoint_meta(weights).get("num_classes")
        if isinstance(saved_classes, int):  # a checkpoint of `visionzoo train` says its class count: no guessing
            kwargs["num_classes"] = saved_classes
    with torch.device("meta"), _SkipInPlaceOnMeta():
        model = make(**kwargs)
    if not published and "num_classes" not in kwargs:
        found = _classes_in_checkpoint(model, state_dict)
        if found is not None:
            key, kwargs["num_classes"] = found
            warnings.warn(
                f"num_classes={kwargs['num_classes']} taken from the checkpoint {source} (the shape of {key}); "
                "pass num_classes to choose it yourself",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
            with torch.device("meta"), _SkipInPlaceOnMeta():
                model = make(**kwargs)
    # Only published weights get a fresh head; a user's own checkpoint must fit exactly (a mismatch there is
    # far more likely a forgotten num_classes than a wish to discard the trained head).
    new_head = kwargs["num_classes"] if published and kwargs.get("num_classes", categories) != categories else None
    fresh = load_weights(model, state_dict, source, ignore_unexpected=ignore_unexpected, new_head_classes=new_head)
    if fresh:
        trained = f"{categories} categories" if categories else f"{state_dict[fresh[0]].shape[0]} outputs"
        warnings.warn(
            f"num_classes={new_head} differs from the {trained} of {source}: every pretrained "
            f"tensor was loaded except {', '.join(fresh)}, which were re-initialised for {new_head} classes "
            "(fine-tune them before use)",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    _check_materialised(model, source)
    return model


def read_weights(
    weights: WeightsEnum | Path, progress: bool = True, *, tensors_only: bool = True
) -> tuple[StateDict, str]:
    """The state_dict of a weights entry or of a local checkpoint, and a name for it in messages."""
    if isinstance(weights, WeightsEnum):
        return weights.get_state_dict(progress=progress), repr(weights)
    return load_local_checkpoint(weights, tensors_only=tensors_only), str(weights)


def _classes_in_checkpoint(model: nn.Module, state_dict: Mapping[str, Any]) -> tuple[str, int] | None:
    """``(key, n)`` when the checkpoint differs from ``model`` only in the first dimension of some tensors, all
    ``n`` there: a classification head trained for ``n`` classes. None when it fits, or differs otherwise."""
    expected = model.state_dict()
    differing = [
        (k, v.shape, expected[k].shape)
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and isinstance(expected.get(k), torch.Tensor) and v.shape != expected[k].shape
    ]
    if not differing or any(got[1:] != want[1:] or not got or not want for _, got, want in differing):
        return None
    sizes = {(got[0], want[0]) for _, got, want in differing}
    return (differing[0][0], differing[0][1][0]) if len(sizes) == 1 else None


class _SkipInPlaceOnMeta(TorchFunctionMode):
    """Turns in-place calls on ``meta`` tensors (random initialisation: ``nn.init.normal_`` and friends) into no-ops.

    A model built to receive a checkpoint has no data to initialise, yet some fills on ``meta`` tensors go
    through decompositions that import ``torch._dynamo`` (seconds on first use); skipping them keeps building
    on ``meta`` nearly free.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        target = args[0] if args else (kwargs or {}).get("tensor")  # nn.init passes `tensor=` on
        in_place = name.endswith("_") and not name.startswith("__")
        if in_place and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **(kwargs or {}))


_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


def checkpoint_meta(path: Path) -> dict[str, Any]:
    """The ``meta`` a checkpoint file carries beside its weights (``visionzoo train`` writes the model's name, its
    number of classes and their names there); empty for a bare state_dict or a file that cannot be read (loading
    it reports why)."""
    from visionzoo import hub

    try:
        loaded = hub.load_checkpoint(path)  # memory-mapped where possible: reading the meta costs little
    except Exception:
        return {}
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def load_local_checkpoint(path: Path, *, tensors_only: bool = True) -> StateDict:
    """Read a user's checkpoint safely and unwrap the usual containers.

    Accepts a bare state_dict, ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers written by training
    scripts, and ``module.``-prefixed keys left by ``DistributedDataParallel``. The mapping keeps its
    ``_metadata`` (the modules' format versions) for ``load_state_dict``.

    Args:
        tensors_only: refuse values that are not tensors (int8 checkpoints hold packed parameters and dtypes).
    """
    from visionzoo import hub

    loaded: Any = hub.load_checkpoint(path)
    for wrapper_key in _WRAPPER_KEYS:
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper_key), dict):
            loaded = loaded[wrapper_key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    if tensors_only and not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    if loaded and all(k.startswith("module.") for k in loaded):
        consume_prefix_in_state_dict_if_present(loaded, "module.")  # metadata keys too
    return loaded


def load_weights(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    source: str,
    *,
    assign: bool = True,
    ignore_unexpected: tuple[str, ...] = (),
    new_head_classes: int | None = None,
    hint: str | None = None,
) -> list[str]:
    """``model.load_state_dict(state_dict, strict=False, assign=assign)`` with one error that lists every problem.

    The checkpoint goes to ``load_state_dict`` as it is (with its ``_metadata``), so the modules'
    ``_load_from_state_dict`` hooks can fix old layouts. Missing, unexpected and shape-mismatched keys are
    collected from what ``load_state_dict`` reports and raised together, with integer tensors offered for
    floating parameters. With ``assign``, floating tensors take the model's dtype afterwards, as
    ``load_state_dict``'s copy gives them (a half-precision checkpoint still makes a float32 model).

    Args:
        ignore_unexpected: key prefixes of tensors the model was built without on purpose.
        new_head_classes: the caller asked for this many classes: tensors that differ from the model's only in
            their first dimension, the class dimension (``new_head_classes`` rows, or a whole number of rows per
            class, as a detector's per-class box deltas), are not loaded but re-initialised, and their keys
            returned.
        hint: a last line for the error (e.g. how to load a checkpoint of another kind).

    Returns:
        The keys of the re-initialised head tensors (empty unless ``new_head_classes`` is given).

    Raises:
        ValueError: naming the missing, unexpected, shape-mismatched and dtype-mismatched keys.
    """
    expected = model.state_dict()
    comparable = {
        k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor) and isinstance(expected.get(k), torch.Tensor)
    }
    head = _head_keys(comparable, expected, new_head_classes) if new_head_classes is not None else []
    wrong_kind = [k for k, v in comparable.items() if expected[k].is_floating_point() and not v.is_floating_point()]
    held_back = set(head) | set(wrong_kind)
    if held_back:
        state_dict = _without(state_dict, held_back)
    dtypes = {k: t.dtype for k, t in expected.items() if isinstance(t, torch.Tensor) and t.is_floating_point()}

    # The root's post-hook sees the final missing/unexpected lists, also when size mismatches make
    # load_state_dict raise afterwards.
    reported: dict[str, list[str]] = {"missing": [], "unexpected": []}

    def record(module: nn.Module, keys: Any) -> None:
        reported.update(missing=list(keys.missing_keys), unexpected=list(keys.unexpected_keys))

    handle = model.register_load_state_dict_post_hook(record)
    mismatched: list[str] = []
    try:
        model.load_state_dict(state_dict, strict=False, assign=assign)
    except RuntimeError as error:
        mismatched = _load_errors(error)
    except KeyError:
        # Some modules (torch's quantized ones) index the checkpoint without checking: compare the key sets.
        reported["missing"] = [k for k in expected if k not in state_dict]
        reported["unexpected"] = [k for k in state_dict if k not in expected]
    finally:
        handle.remove()

    missing = [k for k in reported["missing"] if k not in held_back]
    unexpected = [k for k in reported["unexpected"] if not k.startswith(ignore_unexpected)]
    kinds = [f"{k}: checkpoint {comparable[k].dtype} vs model {expected[k].dtype}" for k in wrong_kind]
    if missing or unexpected or mismatched or kinds:
        raise CheckpointMismatchError(
            source, type(model).__name__, len(expected), missing, unexpected, mismatched, kinds, hint
        )
    if assign:
        _restore_dtypes(model, dtypes)
    if head:
        _reinitialise(model, head, new_head_classes)
    return head


def _head_keys(
    checkpoint: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], num_classes: int
) -> list[str]:
    """The keys of ``checkpoint`` that are class-dimension tensors of a head the model has for ``num_classes``.

    A tensor qualifies when only its first dimension differs and the model's holds ``k * num_classes`` rows,
    ``k`` rows per class (1 for logits, 4 for per-class box deltas), with the checkpoint's a whole number of
    classes of ``k`` rows too; all of them must agree on the checkpoint's number of classes, else none qualifies
    (the checkpoint differs in more than its head).
    """
    found: dict[str, int] = {}
    for key, tensor in checkpoint.items():
        want = expected[key]
        if tensor.shape == want.shape or not tensor.dim() or not want.dim() or tensor.shape[1:] != want.shape[1:]:
            continue
        rows_per_class, remainder = divmod(want.shape[0], num_classes)
        if rows_per_class and not remainder and tensor.shape[0] % rows_per_class == 0:
            found[key] = tensor.shape[0] // rows_per_class
    return list(found) if len(set(found.values())) == 1 else []


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from checkpoint, "
    r"the shape in current model is torch\.Size\((\[.*?\])\)"
)

Mismatch = tuple[str, tuple[int, ...], tuple[int, ...]]  # key, checkpoint shape, model shape


def _load_errors(error: RuntimeError) -> list[Mismatch | str]:
    """The problems ``load_state_dict`` raised about: ``(key, checkpoint shape, model shape)`` where it reports a
    size mismatch (its wording since torch 1.x), the line verbatim otherwise."""
    lines = [line.strip() for line in str(error).split("\n\t")[1:]] or [str(error)]
    found: list[Mismatch | str] = []
    for line in lines:
        match = _SIZE_MISMATCH.search(line)
        if match:
            key, got, want = match.groups()
            found.append((key, tuple(ast.literal_eval(got)), tuple(ast.literal_eval(want))))
        else:
            found.append(line)
    return found


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the model; ``describe`` words the advice for where it is shown.

    Attributes:
        model: what the model is called in the message (the registry puts the builder's name here).
        head_classes: the number of classes the checkpoint's head was trained for, when a different head is
            all that keeps it from fitting; None otherwise.
    """

    def __init__(
        self,
        source: str,
        model: str,
        total: int,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[Mismatch | str],
        kinds: list[str],
        hint: str | None = None,
    ) -> None:
        super().__init__(source, model)
        self.source, self.model, self.total, self.hint = source, model, total, hint
        self.missing, self.unexpected, self.mismatched, self.kinds = missing, unexpected, mismatched, kinds
        heads = {m[1][0] for m in mismatched if isinstance(m, tuple) and m[1][1:] == m[2][1:] and m[1] and m[2]}
        only_heads = all(isinstance(m, tuple) and m[1][1:] == m[2][1:] for m in mismatched)
        fits_otherwise = not (missing or unexpected or kinds)
        self.head_classes = heads.pop() if mismatched and only_heads and fits_otherwise and len(heads) == 1 else None

    def describe(self, classes_option: str = "num_classes={}") -> str:
        """The message; ``classes_option`` is how to ask for a number of classes (``"--num-classes {}"`` on the
        command line)."""
        if self.missing or self.unexpected:
            counts = (
                f"{len(self.missing)} of the model's {self.total} tensors missing, {len(self.unexpected)} unexpected"
            )
            lines = [f"The checkpoint {self.source} is not a {self.model} checkpoint ({counts}):"]
        else:
            lines = [f"The checkpoint {self.source} does not fit {self.model}:"]
        shapes = [f"{m[0]}: checkpoint {m[1]} vs model {m[2]}" for m in self.mismatched if isinstance(m, tuple)]
        problems = (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            ("shape mismatches", shapes),
            ("dtype mismatches", self.kinds),
            ("other errors", [m for m in self.mismatched if isinstance(m, str)]),
        )
        for label, keys in problems:
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        if self.head_classes is not None:
            option = classes_option.format(self.head_classes)
            lines.append(
                f"  (its classification head was trained for {self.head_classes} classes: pass {option}, or leave "
                "the number of classes out to take it from the checkpoint)"
            )
        if self.hint:
            lines.append(f"  ({self.hint})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _without(state_dict: Mapping[str, Any], keys: set[str]) -> OrderedDict[str, Any]:
    """A copy of ``state_dict`` without ``keys`` that keeps its ``_metadata``."""
    kept = OrderedDict((k, v) for k, v in state_dict.items() if k not in keys)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        kept._metadata = metadata  # type: ignore[attr-defined]
    return kept


def _restore_dtypes(model: nn.Module, dtypes: dict[str, torch.dtype]) -> None:
    """Give assigned floating tensors back the dtype the model was built with."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        wanted = dtypes.get(name)
        if wanted is not None and tensor.dtype != wanted:
            tensor.data = tensor.data.to(wanted)


def _reinitialise(model: nn.Module, keys: list[str], num_classes: int | None) -> None:
    """Give the modules owning ``keys`` real storage and a fresh start: the family's own class heads (as its
    builder initialises them, see ``_heads.reset_classifier``), and for any other owner (a keypoint predictor for
    a new ``num_keypoints``) its layer's default initialisation."""
    from ._heads import reset_classifier

    device = next((t.device for t in model.parameters() if not t.is_meta), torch.device("cpu"))
    owners = {name: model.get_submodule(name) for name in dict.fromkeys(k.rsplit(".", 1)[0] for k in keys)}
    for owner in owners.values():
        owner.to_empty(device=device, recurse=False)
    if num_classes is not None and hasattr(model, "_reset_classifier"):
        reset_classifier(model, num_classes)
    for name, owner in owners.items():
        if _still_in(model, name, owner):
            if not hasattr(owner, "reset_parameters"):
                raise ValueError(f"Cannot re-initialise {name} ({type(owner).__name__}) for a new num_classes")
            owner.reset_parameters()


def _still_in(model: nn.Module, name: str, module: nn.Module) -> bool:
    try:
        return model.get_submodule(name) is module
    except AttributeError:
        return False


def _check_materialised(model: nn.Module, source: str) -> None:
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"Loading {source} left these tensors without data: {', '.join(left[:8])}")


def set_or_check(kwargs: dict[str, Any], name: str, value: Any) -> None:
    """Fix an architecture argument that a builder's name implies (``groups=32`` for resnext50_32x4d)."""
    if name in kwargs and kwargs[name] != value:
        raise ValueError(f"This builder fixes {name}={value!r}; got {name}={kwargs[name]!r}")
    kwargs[name] = value


def conv_bn_layers(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
    bn_momentum: float = 0.1,
) -> list[nn.Module]:
    """Conv (same padding, no bias), BatchNorm and optionally ReLU, as a flat list of layers.

    For families whose checkpoints keep these layers flat in a parent ``Sequential`` (ShuffleNet, MNASNet).
    Built directly rather than taken out of a ``Conv2dNormActivation``: the throw-away containers made those
    models 5-10% slower to build than the reference's.
    """
    padding = (kernel_size - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, momentum=bn_momentum),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_image_batch(x: Any, model: str, channels: int = 3, min_size: tuple[int, int] = (1, 1)) -> None:
    """Validate a model input at the public boundary so mistakes surface as clear errors.

    An empty batch is refused (as the presets refuse it): it is almost always an upstream bug, and the
    reference's answer, an empty output, hides it. NaN and infinite values are refused for CPU inputs, at the
    cost of one summing pass (about 0.1% of a forward); inputs on other devices are not scanned, because
    reading the answer would wait for the device (see ``transforms.functional._count_non_finite``).

    Raises:
        TypeError: ``x`` is not a floating point tensor.
        ValueError: wrong number of dimensions or channels, an empty batch, spatial size below ``min_size``,
            or NaN/infinite values.
    """
    if isinstance(x, torch.fx.Proxy):
        return  # symbolic tracing (feature extraction): the checks apply to the real tensors later
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, {channels}, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating point tensor, got {x.dtype}; "
            "preprocess images with weights.transforms() (it converts uint8 to float and normalises)"
        )
    if x.dim() != 4:
        raise ValueError(f"{model} expects a 4-D batch (N, {channels}, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{model} expects {channels} channels, got {x.shape[1]} (input shape {tuple(x.shape)})")
    if x.shape[0] == 0:
        raise ValueError(f"{model} got an empty batch (input shape {tuple(x.shape)}); pass at least one image")
    if x.shape[-2] < min_size[0] or x.shape[-1] < min_size[1]:
        raise ValueError(
            f"{model} needs images of at least {min_size[0]}x{min_size[1]} pixels, got {x.shape[-2]}x{x.shape[-1]}"
        )
    bad = _count_non_finite(x)
    if bad:
        raise ValueError(
            f"{model} got {bad} NaN or infinite values in its input (shape {tuple(x.shape)}); "
            "check the data source and the preprocessing (e.g. a division by a zero std)"
        )


def _small_normal(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, 0.0, 0.01)


def init_conv_net(model: nn.Module, linear: Callable[[nn.Linear], None] | None = _small_normal) -> None:
    """The initialisation most convolutional classifiers share (He et al., 2015).

    Convolutions get He-normal weights scaled by their fan-out, batch and group norms start as the
    identity, and every bias starts at zero. ``linear`` initialises the weight of each ``nn.Linear``
    (default: normal with std 0.01); pass ``None`` to leave linear layers as PyTorch built them.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
            nn.init.ones_(module.weight)
        elif isinstance(module, nn.Linear) and linear is not None:
            linear(module)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
