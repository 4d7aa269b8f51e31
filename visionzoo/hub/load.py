"""Load: read a checkpoint file safely.

Loading always uses ``torch.load(weights_only=True)``, memory-mapped for torch's zip format, and
``safetensors`` for ``.safetensors`` files. Both are imported on first use, so that the other stages (and
``import visionzoo.hub``) work and import fast without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .download import fetch_checkpoint, move_aside
from .errors import CheckpointError, WeightsUnavailableError
from .locate import CHECKPOINT_SUFFIXES, SAFETENSORS_SUFFIX, TORCH_SUFFIXES, expected_hash_prefix, get_dir

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    import torch

    MapLocation: TypeAlias = str | torch.device | Callable[..., Any] | dict[str, str] | None

_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: MapLocation = "cpu", mmap: bool | None = None
) -> dict[str, torch.Tensor]:
    """Load a checkpoint file safely and return its top-level dict as is.

    ``.safetensors`` files need the optional ``safetensors`` package; every other supported file goes through
    ``torch.load(weights_only=True)``, which refuses pickles that would import or call arbitrary code.

    Args:
        map_location: as for ``torch.load``; for safetensors only a device (or its name) is accepted.
        mmap: memory-map the file instead of reading it. None (default) means "when possible": torch's zip
            format can be mapped, the legacy format cannot and is always read normally.

    Raises:
        WeightsUnavailableError: the file does not exist.
        CheckpointError: unsupported extension, corrupt file, unsafe pickle, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"Checkpoint file {path} does not exist. To fix: check the path.")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        state = _load_safetensors(path, map_location)
    elif suffix in TORCH_SUFFIXES:
        state = _load_torch(path, map_location, mmap)
    else:
        supported = ", ".join(CHECKPOINT_SUFFIXES)
        raise CheckpointError(
            f"Cannot load checkpoint {path}: unsupported extension {path.suffix!r} (supported: {supported}). "
            f"To fix: convert it to a state dict saved with torch.save or safetensors."
        )
    if not isinstance(state, dict):
        raise CheckpointError(
            f"Checkpoint {path} holds a {type(state).__name__}, not a dict of tensors. "
            f"To fix: save `model.state_dict()` rather than the object itself."
        )
    return state


def _load_torch(path: Path, map_location: Any, mmap: bool | None) -> Any:
    import pickle

    import torch

    use_mmap = mmap is not False and _is_zip(path)  # also proves the file is readable
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=use_mmap)
    except (PermissionError, FileNotFoundError):
        raise  # access problems (e.g. the file vanished meanwhile) already name the path
    except Exception as exc:  # torch reports unsafe pickles and corrupt archives with many exception types
        text = str(exc).split("\n", 1)[0]
        if isinstance(exc, pickle.UnpicklingError) or "weights only" in str(exc).lower():
            cause = (
                f"it contains Python objects that a safe load refuses to create ({text}). It may be malicious, "
                f"or a whole pickled model or training state rather than a state dict. To fix: if you trust its "
                f"source, re-save `model.state_dict()` (plain tensors) from it on a machine you can risk"
            )
        else:
            cause = (
                f"the file is corrupt or not a PyTorch checkpoint ({type(exc).__name__}: {text}). "
                f"To fix: delete it and download it again"
            )
        raise CheckpointError(f"Cannot load checkpoint {path}: {cause}.") from exc


def _load_safetensors(path: Path, map_location: Any) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise CheckpointError(
            f"Cannot load checkpoint {path}: reading .safetensors files needs the optional 'safetensors' "
            f"package. To fix: pip install safetensors"
        ) from exc
    import torch

    if map_location is None:
        map_location = "cpu"
    if not isinstance(map_location, (str, torch.device)):
        raise CheckpointError(
            f"Cannot load checkpoint {path}: for .safetensors files map_location must be a device, "
            f"got {map_location!r}."
        )
    try:
        return load_file(path, device=str(map_location))
    except Exception as exc:  # SafetensorError for corrupt headers, and friends
        raise CheckpointError(
            f"Cannot load checkpoint {path}: the file is corrupt or not a safetensors file "
            f"({type(exc).__name__}: {exc}). To fix: delete it and download it again."
        ) from exc


def load_state_dict_from_url(
    url: str,
    *,
    file_name: str | None = None,
    progress: bool = True,
    check_hash: bool = True,
    map_location: MapLocation = "cpu",
) -> dict[str, torch.Tensor]:
    """Fetch a checkpoint (:func:`fetch_checkpoint`) and load it (:func:`load_checkpoint`)."""
    path = fetch_checkpoint(url, file_name=file_name, progress=progress, check_hash=check_hash)
    try:
        return load_checkpoint(path, map_location=map_location)
    except CheckpointError as exc:
        # A name without a hash cannot prove the download complete (a server that closes early without a
        # Content-Length looks like success): an unreadable file of that kind in the cache is moved aside,
        # so the cache never keeps a broken file under its final name and the next call downloads it again.
        if path.parent != get_dir() or expected_hash_prefix(path.name) is not None:
            raise
        aside = move_aside(path)
        raise CheckpointError(f"{exc} It was moved to {aside}; the next attempt downloads it again.") from exc
