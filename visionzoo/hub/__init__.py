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
"""

from __future__ import annotations

from .download import DEFAULT_DOWNLOAD_TIMEOUT, ENV_DOWNLOAD_TIMEOUT, download_to, fetch_checkpoint
from .errors import CheckpointError, ChecksumError, WeightsError, WeightsUnavailableError
from .load import load_checkpoint, load_state_dict_from_url
from .locate import (
    CHECKPOINT_SUFFIXES,
    ENV_WEIGHTS_DIR,
    ENV_WEIGHTS_URL,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    expected_hash_prefix,
    find_local,
    get_dir,
    safetensors_name,
    weights_dir,
)
from .verify import MEMO_FILE_NAME, SIDECAR_SUFFIX, read_sidecar, sha256_of, write_sidecar

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "ENV_DOWNLOAD_TIMEOUT",
    "ENV_WEIGHTS_DIR",
    "ENV_WEIGHTS_URL",
    "MEMO_FILE_NAME",
    "SAFETENSORS_SUFFIX",
    "SIDECAR_SUFFIX",
    "TORCH_SUFFIXES",
    "CheckpointError",
    "ChecksumError",
    "WeightsError",
    "WeightsUnavailableError",
    "download_to",
    "expected_hash_prefix",
    "fetch_checkpoint",
    "find_local",
    "get_dir",
    "load_checkpoint",
    "load_state_dict_from_url",
    "read_sidecar",
    "safetensors_name",
    "sha256_of",
    "weights_dir",
    "write_sidecar",
]
