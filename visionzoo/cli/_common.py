"""Pieces shared by the command modules: the one-line error, tables, and choosing weights entries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from visionzoo.hub import WeightsUnavailableError
    from visionzoo.models import WeightsEnum


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
    if weights.upper() == "DEFAULT":
        weights = "DEFAULT"
    for pattern in patterns:
        if "_Weights." in pattern:
            entry = get_weight(pattern)
            chosen.setdefault(entry.url, entry)
            continue
        names = list_models(include=pattern)
        if not names:
            raise CommandError(f"no model matches {pattern!r} (visionzoo list shows them all)")
        for name in names:
            try:
                enum = get_model_weights(name)
            except ValueError:
                notes.append(f"{name}: no pretrained weights")
                continue
            if weights.lower() == "all":
                entries = list(enum)
            elif weights in enum.__members__ or weights.removeprefix(enum.__name__ + ".") in enum.__members__:
                entries = [enum.verify(weights)]
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
