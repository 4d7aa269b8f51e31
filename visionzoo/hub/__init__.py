"""The weight loading pipeline: find a checkpoint file, verify it, download it if needed, load it safely.

A checkpoint name is resolved in this order, first hit wins:

1. ``$VISIONZOO_WEIGHTS_DIR/<file_name>``: a flat directory the user fills for offline use. Read-only to us.
2. ``get_dir()/<file_name>``: the cache shared with ``torch.hub`` (``$TORCH_HOME/hub/checkpoints``).
3. The network: ``$VISIONZOO_WEIGHTS_URL/<file_name>`` when that mirror is set, else the checkpoint's own url.

One module per stage, each stating its own policies:

* :mod:`.locate`: where checkpoints live, and what their file names promise (format, sha256 prefix).
* :mod:`.verify`: sha256 checks on every hit, the memo that keeps them cheap, sidecars of converted copies.
* :mod:`.download`: :func:`fetch_checkpoint` and :func:`download_to`: locked, resumable, atomic, and what
  happens to corrupt files.
* :mod:`.load`: :func:`load_checkpoint`, with ``torch.load(weights_only=True)`` or safetensors.
* :mod:`.errors`: what all of them raise.

The names below are imported from their stage on first use, so that importing one stage (``visionzoo.models``
reads :data:`CHECKPOINT_SUFFIXES`) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_STAGES = {
    "errors": ("WeightsError", "WeightsUnavailableError", "ChecksumError", "CheckpointError"),
    "locate": (
        "ENV_WEIGHTS_DIR",
        "ENV_WEIGHTS_URL",
        "CHECKPOINT_SUFFIXES",
        "TORCH_SUFFIXES",
        "SAFETENSORS_SUFFIX",
        "get_dir",
        "weights_dir",
        "find_local",
        "expected_hash_prefix",
        "safetensors_name",
    ),
    "verify": ("MEMO_FILE_NAME", "SIDECAR_SUFFIX", "sha256_of", "read_sidecar", "write_sidecar"),
    "download": ("ENV_DOWNLOAD_TIMEOUT", "DEFAULT_DOWNLOAD_TIMEOUT", "fetch_checkpoint", "download_to"),
    "load": ("load_checkpoint", "load_state_dict_from_url"),
}
_STAGE_OF = {name: stage for stage, names in _STAGES.items() for name in names}

__all__ = list(_STAGE_OF)


def __getattr__(name: str) -> Any:
    stage = _STAGE_OF.get(name)
    if stage is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{stage}"), name)
    globals()[name] = value  # later look-ups find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_STAGE_OF})
