"""Weights entries and the model registry.

A model family file declares one :class:`WeightsEnum` per builder and registers each builder with
:func:`register_model`, which records the builder's task and family. The registry (and :data:`TASKS`, the
one list of tasks) is what ``list_models``, ``get_model``, ``get_model_weights``, ``get_weight``, the
command line, the docs generator and ``hubconf.py`` all read, so a new builder is visible everywhere as
soon as its family module is imported.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

import torch

# A `weights=` string ending in one of these (the formats the loader reads) is a path, not an entry name.
from visionzoo.hub import CHECKPOINT_SUFFIXES

__all__ = [
    "Weights",
    "WeightsEnum",
    "Task",
    "ModelInfo",
    "register_model",
    "list_tasks",
    "get_task",
    "list_models",
    "get_model_info",
    "get_model",
    "get_model_builder",
    "get_model_weights",
    "get_weight",
    "get_transforms",
]

# Families that live in sub-packages register their builders when imported; list_models() imports them
# all so that the registry is complete without making ``import visionzoo.models`` pay for them. A package
# joins this list when its code lands.
_FAMILY_PACKAGES = (
    "visionzoo.models",
    "visionzoo.models.quantization",
    "visionzoo.models.segmentation",
    "visionzoo.models.detection",
    "visionzoo.models.video",
    "visionzoo.models.optical_flow",
)


@dataclass(frozen=True)
class Task:
    """One task whose models have landed; :data:`TASKS` holds one per task.

    Attributes:
        name: the key that ``register_model(task=...)``, ``list_models(task=...)`` and ``visionzoo list --task``
            take.
        title: the heading of the task's section in ``docs/models.md``.
        build_kwargs: builder arguments that give the model users run (the quantized builders return the
            float quantizable model unless ``quantize=True``, as in the reference; segmentation models need no
            auxiliary head for inference).
        cpu_only: the task's models run on the CPU only (int8 kernels).
    """

    name: str
    title: str
    build_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    cpu_only: bool = False


# The one list of tasks, in the order the docs show them. Only tasks whose code has landed are here; a new
# task adds its line together with its builders.
TASKS: Mapping[str, Task] = MappingProxyType(
    {
        task.name: task
        for task in (
            Task("classification", "Image classification"),
            Task("quantization", "Quantized image classification", MappingProxyType({"quantize": True}), cpu_only=True),
            # Inference has no use for the auxiliary head (a training aid) that published weights carry.
            Task("segmentation", "Semantic segmentation", MappingProxyType({"aux_loss": False})),
            Task("detection", "Object detection, instance segmentation and person keypoints"),
            Task("video", "Video classification"),
            Task("optical_flow", "Optical flow"),
        )
    }
)


@dataclass(frozen=True, eq=False)
class Weights:
    """One set of pretrained weights: where the file lives, how to preprocess inputs, and what it knows.

    Args:
        url: download address of the checkpoint; its file name (with the sha256 prefix after the last
            ``-``) is also the name looked up in mirror directories and the cache.
        transforms: a callable returning the inference preset, e.g. ``partial(ImageClassification, crop_size=224)``.
        meta: facts about the weights (``categories``, ``num_params``, ``min_size``, ``_metrics``, ``_ops``
            in GFLOPS, ``_file_size`` in MB, ``recipe``, ``_docs``).
    """

    url: str
    transforms: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        """The checkpoint's file name, as stored in the cache and in mirror directories."""
        return os.path.basename(self.url.split("?", 1)[0])


class WeightsEnum(Enum):
    """Base class of every ``*_Weights`` enum.

    Members hold a :class:`Weights` value and proxy its fields (``url``, ``transforms``, ``meta``).
    ``DEFAULT`` is an alias of the best entry. ``verify`` turns a member, its name (``"IMAGENET1K_V2"``
    or ``"ResNet50_Weights.IMAGENET1K_V2"``) or ``None`` into a member or ``None``.
    """

    @classmethod
    def verify(cls, obj: Any) -> WeightsEnum | None:
        """Return the member ``obj`` names (a member, a member name string, or None)."""
        if obj is None or isinstance(obj, cls):
            return obj
        if isinstance(obj, str):
            name = obj.removeprefix(cls.__name__ + ".")
            if name in cls.__members__:
                return cls.__members__[name]
            raise ValueError(
                f"Unknown weights {obj!r} for {cls.__name__}. Valid names: {', '.join(cls.__members__)}"
                + _suggest(name, cls.__members__)
            )
        if isinstance(obj, WeightsEnum):
            raise ValueError(
                f"{obj!r} belongs to {type(obj).__name__}, but this builder takes {cls.__name__} "
                f"(valid: {', '.join(f'{cls.__name__}.{n}' for n in cls.__members__)})"
            )
        raise TypeError(f"Expected a {cls.__name__} member, its name or None, got {type(obj).__name__}: {obj!r}")

    def get_state_dict(self, progress: bool = True, check_hash: bool = True) -> dict[str, torch.Tensor]:
        """Fetch (mirror dir, cache, then network) and load this entry's checkpoint safely."""
        from visionzoo import hub

        return hub.load_state_dict_from_url(self.url, progress=progress, check_hash=check_hash)

    @property
    def url(self) -> str:
        return self.value.url

    @property
    def transforms(self) -> Callable[..., Any]:
        return self.value.transforms

    @property
    def meta(self) -> dict[str, Any]:
        return self.value.meta

    @property
    def file_name(self) -> str:
        return self.value.file_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What the registry records about one builder when it registers.

    Attributes:
        name: the registered name, e.g. ``"quantized_resnet50"``.
        task: a key of :data:`TASKS`.
        family: the architecture family, i.e. the module the builder is defined in: ``resnet`` for ``resnet50``
            and ``wide_resnet50_2``. Quantized builders keep their float family's name (``mobilenetv3`` for
            ``quantized_mobilenet_v3_large``); their task tells them apart.
        builder: the registered builder (with the weights conventions applied).
        weights_enum: the builder's weights enum, or None for a builder without pretrained weights.
    """

    name: str
    task: str
    family: str
    builder: Callable[..., torch.nn.Module] = field(repr=False)
    weights_enum: type[WeightsEnum] | None = None


_REGISTRY: dict[str, ModelInfo] = {}
_WEIGHTS_ENUMS: dict[str, type[WeightsEnum]] = {}

F = TypeVar("F", bound=Callable[..., torch.nn.Module])


def list_tasks() -> list[str]:
    """The names of the tasks whose models have landed, in the order the docs show them."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise a ``ValueError`` that lists the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"A task name must be a string, got {type(name).__name__}: {name!r}")
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def register_model(
    name: str | None = None,
    *,
    task: str = "classification",
    weights: type[WeightsEnum] | None = None,
    legacy_weights: str | Callable[[dict[str, Any]], WeightsEnum] | None = None,
    weights_for: Callable[[dict[str, Any]], type[WeightsEnum]] | None = None,
) -> Callable[[F], F]:
    """Register a builder under ``name`` (default: its function name) and apply the builder conventions.

    The registry records the builder's ``task`` (a key of :data:`TASKS`) and its family (the module it is
    defined in; see :class:`ModelInfo`).

    Classification builders also take ``features_only=True`` (with ``out_indices``, default all stages;
    negative indices count from the last): the model is built and loaded as usual, then cut down to a
    :class:`~visionzoo.models._features.FeatureMaps` whose forward returns the selected stages' (N, C, H, W)
    maps and whose ``feature_info`` gives their module names, channels and strides.

    The wrapped builder accepts ``weights`` as a member of ``weights``, a member name, ``None`` or a path to
    a local checkpoint, and still honours the deprecated ``pretrained=`` keyword and a positional bool (with a
    ``UserWarning``). ``pretrained=True`` means ``legacy_weights``: a member name, a callable of the builder's
    keyword arguments (for builders whose legacy default depends on them), or by default the first member.
    ``weights_for`` serves builders that take two enums (the quantized ones: int8 weights with
    ``quantize=True``, float weights otherwise): called with the keyword arguments, it returns the enum that
    resolves ``weights`` (or raises a ``ValueError`` for a combination that cannot work); ``weights`` stays the
    enum that ``get_model_weights`` reports.

    Raises:
        ValueError: ``task`` is not a known task, or the name is already registered.
    """
    get_task(task)

    def decorator(builder: F) -> F:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"A model named {key!r} is already registered")

        @functools.wraps(builder)
        def wrapper(*args: Any, **kwargs: Any) -> torch.nn.Module:
            _fold_positional_weights(key, args, kwargs)
            features_only, out_indices = _take_features_request(key, task, kwargs)
            if weights is not None:
                _fold_legacy_pretrained(key, weights, legacy_weights, kwargs)
                enum = weights if weights_for is None else weights_for(kwargs)
                kwargs["weights"] = resolve_weights(enum, kwargs.get("weights"))
            try:
                model = builder(**kwargs)
            except ValueError as error:
                from ._utils import CheckpointMismatchError

                if isinstance(error, CheckpointMismatchError):
                    error.model = key  # users know the builder's name, not the class's
                raise
            if weights is not None:
                # What get_transforms(model) returns the preset of: the entry loaded, else (a checkpoint path,
                # random weights) the default entry, whose preset is the one the architecture was trained with.
                chosen = kwargs["weights"] if isinstance(kwargs["weights"], WeightsEnum) else _default_entry(enum)
                model.__dict__[_PRESET_SOURCE] = chosen  # a plain attribute: not in the state_dict
            if features_only:
                from ._features import FeatureMaps

                preset = model.__dict__.get(_PRESET_SOURCE)
                model = FeatureMaps(model, out_indices, name=key)
                if preset is not None:
                    model.__dict__[_PRESET_SOURCE] = preset
            return model

        family = builder.__module__.rsplit(".", 1)[-1]
        _REGISTRY[key] = ModelInfo(key, task, family, wrapper, weights)
        if weights is not None:
            _WEIGHTS_ENUMS[weights.__name__] = weights
        return wrapper  # type: ignore[return-value]

    return decorator


_PRESET_SOURCE = "_visionzoo_weights"


def _take_features_request(model: str, task: str, kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """Pop ``features_only`` and ``out_indices`` from a builder's arguments, refusing them where they cannot work."""
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    if not isinstance(features_only, bool):
        raise TypeError(f"{model}(): features_only must be True or False, got {features_only!r}")
    if features_only and task != "classification":
        raise ValueError(
            f"{model}(): features_only=True works with the classification builders "
            f"(list_models(task='classification')); {model} is a {task} model"
        )
    if out_indices is not None and not features_only:
        raise ValueError(f"{model}(): out_indices selects the maps of features_only=True; pass features_only=True too")
    return features_only, out_indices


def _default_entry(enum: type[WeightsEnum]) -> WeightsEnum:
    return enum.__members__.get("DEFAULT") or next(iter(enum))


def get_transforms(source: Any) -> Callable[..., Any]:
    """The inference preset for a model, a weights entry, or a model name.

    Works wherever ``weights.transforms()`` does not: for a model built with ``weights=None`` or from a local
    checkpoint it is the preset of the model's default entry (the preprocessing the architecture was trained
    with); for a model built with an entry, that entry's preset.

    Args:
        source: a model returned by a registered builder (also wrapped by ``optimize_for_inference`` or
            ``torch.compile``), a weights entry or its name (``"ResNet50_Weights.IMAGENET1K_V2"``), or a model name.

    Raises:
        ValueError: the model or name has no published weights, hence no known preset.
        TypeError: ``source`` is none of the above.
    """
    if isinstance(source, WeightsEnum):
        return source.transforms()
    if isinstance(source, str):
        if "." in source:
            return get_weight(source).transforms()
        return _default_entry(get_model_weights(source)).transforms()
    if isinstance(source, torch.nn.Module):
        module: Any = source
        while _PRESET_SOURCE not in module.__dict__ and isinstance(
            getattr(module, "_orig_mod", getattr(module, "module", None)), torch.nn.Module
        ):
            module = getattr(module, "_orig_mod", None) or module.module  # torch.compile, optimize_for_inference
        entry = module.__dict__.get(_PRESET_SOURCE)
        if entry is None:
            raise ValueError(
                f"No preset is known for this {type(source).__name__}: it was not built by a visionzoo builder with "
                "pretrained weights; pass a weights entry or a model name instead"
            )
        return entry.transforms()
    raise TypeError(f"Expected a model, a weights entry or a model name, got {type(source).__name__}: {source!r}")


# Frames a warning should look past to reach the user's line: visionzoo's own, and torch's (a family's
# _load_from_state_dict runs inside torch's load_state_dict).
_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules["visionzoo"], torch))


def caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside visionzoo and torch (the user's line),
    however many library frames (``get_model``, hubconf helpers, ``load_state_dict``) lie between."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame = frame.f_back
        level += 1
    return level


def _fold_positional_weights(model: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Builders are keyword-only; the reference once took ``pretrained`` positionally, so map it."""
    if not args:
        return
    if len(args) > 1 or "weights" in kwargs or "pretrained" in kwargs:
        raise TypeError(f"{model}() takes its arguments by keyword only (weights=..., progress=..., ...)")
    (value,) = args
    if isinstance(value, bool):
        kwargs["pretrained"] = value
    else:
        warnings.warn(
            f"Passing weights to {model}() positionally is deprecated; use {model}(weights=...)",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
        kwargs["weights"] = value


def _fold_legacy_pretrained(
    model: str,
    enum: type[WeightsEnum],
    legacy: str | Callable[[dict[str, Any]], WeightsEnum] | None,
    kwargs: dict[str, Any],
) -> None:
    if "pretrained" not in kwargs:
        return
    pretrained = kwargs.pop("pretrained")
    if kwargs.get("weights") is not None:
        raise ValueError(f"{model}(): pass either weights=... or the deprecated pretrained=..., not both")
    if pretrained:
        if callable(legacy):
            chosen = legacy({**kwargs, "pretrained": pretrained})  # e.g. pretrained="legacy" picks another entry
        else:
            chosen = enum[legacy] if legacy else next(iter(enum))
        advice = (
            f"weights={chosen!r} (the same weights) or weights={type(chosen).__name__}.DEFAULT (the best available)"
        )
    else:
        chosen = None
        advice = "weights=None"
    warnings.warn(
        f"{model}(pretrained={pretrained}) is deprecated and may be removed; use {advice} instead.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    kwargs["weights"] = chosen


def resolve_weights(enum: type[WeightsEnum], value: Any) -> WeightsEnum | Path | None:
    """Turn a builder's ``weights`` argument into an enum member, a checkpoint path, or None."""
    if isinstance(value, os.PathLike):
        return Path(value)
    if isinstance(value, str) and value.removeprefix(enum.__name__ + ".") not in enum.__members__:
        if value.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in value or os.path.exists(value):
            return Path(value)
    return enum.verify(value)


def _suggest(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    return f". Did you mean: {', '.join(close)}?" if close else ""


def _import_all_families() -> None:
    for package in _FAMILY_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as error:
            # A family package that cannot work with the installed torch raises an error named after itself
            # (the quantized family without torch.ao.quantization) and simply contributes nothing.
            if error.name != package:
                raise


def list_models(
    module: ModuleType | None = None,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    *,
    task: str | None = None,
) -> list[str]:
    """Sorted names of the registered models.

    Args:
        module: only models whose builder lives directly in this package, e.g.
            ``visionzoo.models`` (classification) or ``visionzoo.models.quantization``.
        include: fnmatch pattern(s) a name must match (any of them).
        exclude: fnmatch pattern(s) that remove a name.
        task: only models of this task (see :func:`list_tasks`).

    Raises:
        ValueError: ``task`` is not a known task (the message lists the valid ones).
    """
    if task is not None:
        get_task(task)
    _import_all_families()
    names = [
        key
        for key, info in _REGISTRY.items()
        if (module is None or info.builder.__module__.rsplit(".", 1)[0] == module.__name__)
        and (task is None or info.task == task)
    ]
    if include is not None:
        patterns = [include] if isinstance(include, str) else list(include)
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if exclude is not None:
        patterns = [exclude] if isinstance(exclude, str) else list(exclude)
        names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    return sorted(names)


def get_model_info(name: str) -> ModelInfo:
    """What the registry records about the model called ``name`` (case-insensitive): task, family, builder, weights.

    Raises:
        ValueError: no model has that name (the message suggests close ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        _import_all_families()
    if key not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}{_suggest(key, _REGISTRY)} (visionzoo.models.list_models() lists all)")
    return _REGISTRY[key]


def get_model_builder(name: str) -> Callable[..., torch.nn.Module]:
    """The registered builder called ``name`` (case-insensitive)."""
    return get_model_info(name).builder


def get_model(name: str, **config: Any) -> torch.nn.Module:
    """Build the model called ``name``; ``config`` goes to its builder (e.g. ``weights="DEFAULT"``).

    Classification models also take ``features_only=True`` and ``out_indices`` (see :func:`register_model`): a
    module returning the selected stages' (N, C, H, W) maps, described by its ``feature_info``.
    """
    return get_model_builder(name)(**config)


def get_model_weights(name: str | Callable[..., Any]) -> type[WeightsEnum]:
    """The weights enum of a model, given its name or its builder."""
    if isinstance(name, str):
        info: ModelInfo | None = get_model_info(name)
    else:
        info = next((i for i in _REGISTRY.values() if i.builder is name), None)
    if info is None or info.weights_enum is None:
        label = name if isinstance(name, str) else getattr(name, "__name__", repr(name))
        raise ValueError(f"{label!r} is not a registered visionzoo builder with pretrained weights")
    return info.weights_enum


def get_weight(name: str) -> WeightsEnum:
    """The weights entry called ``"<Enum>.<MEMBER>"``, e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``."""
    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"Expected a name like 'ResNet50_Weights.IMAGENET1K_V2', got {name!r}")
    enum_name, member = name.split(".", 1)
    if enum_name not in _WEIGHTS_ENUMS:
        _import_all_families()
    if enum_name not in _WEIGHTS_ENUMS:
        raise ValueError(f"Unknown weights enum {enum_name!r}{_suggest(enum_name, _WEIGHTS_ENUMS)}")
    enum = _WEIGHTS_ENUMS[enum_name]
    result = enum.verify(member)
    assert result is not None
    return result


def builder_signature(name: str) -> inspect.Signature:
    """The signature of a registered builder (used by the command line's model card)."""
    return inspect.signature(get_model_builder(name))
