"""Pieces shared by the command modules: the one-line error, tables, choosing weights entries, and turning
``MODEL --weights NAME|PATH --num-classes N`` into a model and its preset (one place for every command)."""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from visionzoo.hub import WeightsUnavailableError
    from visionzoo.models import WeightsEnum
    from visionzoo.models._api import ModelInfo


class CommandError(Exception):
    """A failure to report as one line, with the exit status to use (2: bad usage or input, 1: failure)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def table(rows: Sequence[Sequence[str]], align: str = "") -> str:
    """An aligned plain-text table; ``rows[0]`` is the header. ``align`` holds one 'l'/'r' per column."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    align = align.ljust(len(widths), "l")

    def line(row: Sequence[str]) -> str:
        cells = [cell.rjust(w) if a == "r" else cell.ljust(w) for cell, w, a in zip(row, widths, align)]
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])])


def number(value: Any, fmt: str = ".3f") -> str:
    """Format a metric; missing values and NaN (no published figure) read as 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def one_line(error: BaseException) -> str:
    """An error's message on one line: some span several (a heading, then indented details)."""
    parts = [part.strip() for part in str(error).splitlines() if part.strip()]
    return " ".join(parts) if parts else type(error).__name__


def device_of(name: str) -> torch.device:
    """The torch device called ``name``, checked to exist here (a CommandError otherwise)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, mps)") from None
    available = {
        "cpu": lambda: True,
        "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": lambda: torch.backends.mps.is_available(),
    }
    if device.type not in available:
        raise CommandError(f"--device {name!r}: only cpu, cuda and mps are supported")
    if not available[device.type]():
        raise CommandError(f"--device {name!r} is not available on this machine")
    return device


def unavailable(error: WeightsUnavailableError, entry: WeightsEnum | None = None) -> CommandError:
    """A one-line report of a checkpoint that is neither on disk nor downloadable, with the fix."""
    from visionzoo import hub

    name = error.file_name
    if name is None or not error.tried:  # a user's path: the message is already one line
        return CommandError(one_line(error), status=1)
    what = f"{entry!r} needs {name}" if entry is not None else f"checkpoint {name}"
    fetch = f"`visionzoo download {entry!r}`" if entry is not None else "download it"
    return CommandError(
        f"{what}, which is not available ({'; '.join(error.tried)}). To fix: {fetch} on a machine with internet "
        f"access, then copy the file into {hub.get_dir()} or into a directory named by {hub.ENV_WEIGHTS_DIR}; "
        f"or set {hub.ENV_WEIGHTS_URL} to a mirror that serves it",
        status=1,
    )


def select_entries(patterns: Sequence[str], weights: str) -> tuple[list[WeightsEnum], list[str]]:
    """The weights entries named by model patterns and a ``--weights`` choice, without duplicates.

    Args:
        patterns: fnmatch patterns of model names (``resnet*``), or full entry names
            (``ResNet50_Weights.IMAGENET1K_V2``, which ignore ``weights``).
        weights: ``DEFAULT``, ``all`` (both in any case), or an entry name such as ``IMAGENET1K_V1``.

    Returns:
        The entries, and notes about matched models that have no such entry.

    Raises:
        CommandError: a pattern matches no model, or nothing at all is selected.
    """
    from visionzoo.models import get_model_weights, get_weight, list_models

    chosen: dict[str, WeightsEnum] = {}
    notes: list[str] = []
    for pattern in patterns:
        if "_Weights." in pattern:
            entry = get_weight(pattern)
            chosen.setdefault(entry.url, entry)
            continue
        names = list_models(include=pattern.lower())
        if not names:
            raise CommandError(f"no model matches {pattern!r} (visionzoo list shows them all)")
        for name in names:
            try:
                enum = get_model_weights(name)
            except ValueError:
                notes.append(f"{name}: no pretrained weights")
                continue
            member = _entry_name(enum, weights)
            if weights.lower() == "all":
                entries = list(enum)
            elif member in enum.__members__:
                entries = [enum.verify(member)]
            elif len(names) == 1 and len(patterns) == 1:
                entries = [enum.verify(weights)]  # raises ValueError naming the valid entries
            else:
                notes.append(f"{name}: no weights named {weights} (has {', '.join(enum.__members__)})")
                continue
            for entry in entries:
                chosen.setdefault(entry.url, entry)
    if not chosen:
        raise CommandError("no weights entry selected" + (": " + "; ".join(notes) if notes else ""))
    return list(chosen.values()), notes


# ---------------------------------------------------------------------------------------------- models and weights

# The image files a directory given to `predict` or `validate --data` contributes (compared in lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def model_info(name: str) -> ModelInfo:
    """The registry's record of model ``name`` (any case); an unknown name suggests close ones and `visionzoo list`."""
    from visionzoo.models import get_model_info, list_models

    try:
        return get_model_info(name)
    except ValueError:
        close = difflib.get_close_matches(name.lower(), list_models(), n=5, cutoff=0.5)
        hint = f". Did you mean: {', '.join(close)}?" if close else ""
        raise CommandError(f"unknown model {name!r}{hint} (`visionzoo list` shows them all)") from None


def looks_like_path(value: str) -> bool:
    """Whether a ``--weights`` value names a checkpoint file rather than a weights entry."""
    from visionzoo.hub import CHECKPOINT_SUFFIXES

    return value.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in value or "/" in value or os.path.exists(value)


@dataclass
class ChosenWeights:
    """What ``MODEL --weights NAME|PATH [--num-classes N]`` amounts to, shared by predict, validate and benchmark.

    Attributes:
        model: the registered model name.
        task: its task (a key of the registry's task list).
        weights: what the builder gets: an entry, a checkpoint path, or None (random initialisation).
        entry: the published entry in use; for a checkpoint path or None, the model's DEFAULT entry (its preset
            and category names describe the architecture's training), or None without published weights.
        config: the builder arguments (the task's, plus ``num_classes`` when given).
    """

    model: str
    task: str
    weights: WeightsEnum | Path | None
    entry: WeightsEnum | None
    config: dict[str, Any]
    _saved_meta: dict[str, Any] | None = field(default=None, init=False, repr=False)

    @property
    def local(self) -> bool:
        """The weights are a user's checkpoint file."""
        return isinstance(self.weights, Path)

    @property
    def label(self) -> str:
        """The weights as messages name them."""
        return str(self.weights) if self.weights is not None else f"{self.model} (random weights)"

    def saved_meta(self) -> dict[str, Any]:
        """The ``meta`` a checkpoint file carries beside its weights (``visionzoo train`` writes the model's name
        and class names there); empty for published entries and for bare state_dicts."""
        if not self.local:
            return {}
        if self._saved_meta is None:
            from visionzoo.models._utils import checkpoint_meta

            self._saved_meta = checkpoint_meta(self.weights)  # type: ignore[arg-type]
        return self._saved_meta

    def check_trained_for(self) -> None:
        """Refuse a checkpoint whose ``meta`` names another model (a CommandError naming both)."""
        trained_for = self.saved_meta().get("model")
        if isinstance(trained_for, str) and trained_for != self.model:
            raise CommandError(
                f"{self.weights} holds weights of {trained_for}, not of {self.model} (--model {trained_for})"
            )

    def category_names(self) -> list[str]:
        """The class names of the weights: a trained checkpoint's own, else the published entry's."""
        saved = self.saved_meta().get("categories")
        if isinstance(saved, list) and all(isinstance(name, str) for name in saved):
            return list(saved)
        return list(self.entry.meta.get("categories") or []) if self.entry is not None else []

    def categories(self, outputs: int) -> list[str]:
        """The names of a model's ``outputs`` classes: the weights' categories when they are as many, else none."""
        names = self.category_names()
        return names if len(names) == outputs else []

    def build(self, progress: bool) -> torch.nn.Module:
        """Build the model in eval mode; warnings (e.g. num_classes read from a checkpoint) become notes on stderr.

        Raises:
            CommandError: the weights cannot be had (status 1) or do not fit the model (status 2; the hint names
                ``--num-classes``).
        """
        import warnings

        from visionzoo import hub
        from visionzoo.models import get_model
        from visionzoo.models._utils import CheckpointMismatchError

        self.check_trained_for()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = get_model(self.model, weights=self.weights, progress=progress, **self.config)
        except hub.WeightsUnavailableError as error:
            raise unavailable(error, None if self.local else self.entry) from None
        except CheckpointMismatchError as error:
            raise CommandError(" ".join(error.describe("--num-classes {}").split())) from None
        for warning in caught:  # e.g. num_classes read from a checkpoint: one line each
            if issubclass(warning.category, UserWarning):
                print(f"visionzoo: note: {warning.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return model.eval()


def _entry_name(enum: type[WeightsEnum], value: str) -> str:
    """``value`` as the enum spells its member (``default`` -> ``DEFAULT``, ``imagenet1k_v1`` -> ``IMAGENET1K_V1``)."""
    bare = value.removeprefix(enum.__name__ + ".")
    by_lower = {name.lower(): name for name in enum.__members__}
    return by_lower.get(bare.lower(), value)


def choose_weights(
    model: str, weights: str | None, num_classes: int | None = None, *, default: str | None = "DEFAULT"
) -> ChosenWeights:
    """Turn ``--weights NAME|PATH`` (None: ``default``) and ``--num-classes`` into a :class:`ChosenWeights`.

    ``--num-classes`` applies to a checkpoint path (without it, the checkpoint's head decides) and to random
    weights; published entries have their categories.

    Raises:
        CommandError: unknown model or entry, a missing checkpoint file (status 1), a bad ``--num-classes``.
    """
    from visionzoo.models import WeightsEnum
    from visionzoo.models._api import get_task, resolve_weights

    info = model_info(model)
    config = dict(get_task(info.task).build_kwargs)
    if num_classes is not None and num_classes < 1:
        raise CommandError(f"--num-classes must be at least 1, got {num_classes}")
    enum = info.weights_enum
    value = weights if weights is not None else default
    chosen: WeightsEnum | Path | None
    if value is None:
        chosen = None
    elif enum is None:
        if not looks_like_path(value):
            raise CommandError(f"{info.name} has no pretrained weights (pass a checkpoint path, or no --weights)")
        chosen = Path(value)
    else:
        chosen = resolve_weights(enum, _entry_name(enum, value))  # entry names first, as the builders take them
    if isinstance(chosen, Path):
        if chosen.is_dir():
            raise CommandError(f"--weights {chosen}: a directory, not a checkpoint file")
        if not chosen.is_file():
            raise CommandError(f"{chosen}: no such checkpoint file", status=1)
    entry = chosen if isinstance(chosen, WeightsEnum) else None
    if entry is None and enum is not None:
        entry = enum.__members__.get("DEFAULT")
    if num_classes is not None:
        if isinstance(chosen, WeightsEnum):
            raise CommandError(
                "--num-classes applies to a local checkpoint (--weights PATH) or random weights only; "
                f"{chosen!r} has {len(chosen.meta.get('categories') or ())} categories"
            )
        config["num_classes"] = num_classes
    return ChosenWeights(info.name, info.task, chosen, entry, config)


def preset_of(chosen: ChosenWeights, model: torch.nn.Module | None = None) -> Callable[..., Any]:
    """The inference preset for ``chosen`` (through :func:`visionzoo.models.get_transforms`)."""
    from visionzoo.models import get_transforms

    saved = chosen.saved_meta()
    if chosen.task == "classification" and isinstance(saved.get("crop_size"), int):  # trained at this size
        from visionzoo.transforms import ImageClassification

        return ImageClassification(crop_size=saved["crop_size"], resize_size=saved["resize_size"])
    return get_transforms(model if model is not None else (chosen.entry or chosen.model))


def class_count(model: torch.nn.Module, preset: Any) -> int:
    """How many classes a classifier outputs, from one forward pass on a blank input of the preset's size."""
    import torch

    fixed = getattr(model, "input_size", None)
    crop = getattr(preset, "crop_size", None)
    size = tuple(fixed) if fixed is not None else (crop[0], crop[0]) if crop else (224, 224)
    device = next((t.device for t in model.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        return int(model(torch.zeros(1, 3, *size, device=device)).shape[1])
