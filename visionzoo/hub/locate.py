"""Locate: where checkpoint files live and what their names promise.

A file name says what the file is: its suffix the format (:data:`CHECKPOINT_SUFFIXES`, the one list of them),
and a tail ``<stem>-<hex>.<ext>`` the start of its sha256 digest (the torch.hub convention).

`visionzoo convert` turns ``<stem>.pth`` into ``<stem>.safetensors`` (the same stem, so the hash in the name
still identifies the original checkpoint it was made from) plus a sidecar ``<stem>.safetensors.sha256`` that
holds the converted file's own digest. In ``VISIONZOO_WEIGHTS_DIR`` such a copy is preferred to the ``.pth``
(when the safetensors package is installed, or when it is the only copy) and is verified against its sidecar.

Nothing here reads a file's content: that is :mod:`.verify`'s job.
"""

from __future__ import annotations

import os
import posixpath
import re
import urllib.parse
from pathlib import Path

ENV_WEIGHTS_DIR = "VISIONZOO_WEIGHTS_DIR"
ENV_WEIGHTS_URL = "VISIONZOO_WEIGHTS_URL"

# The formats `load_checkpoint` reads. Builders take a `weights=` string with one of these endings for a
# path, and `visionzoo verify` checks the files that have one.
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".pkl")
SAFETENSORS_SUFFIX = ".safetensors"
CHECKPOINT_SUFFIXES = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)

PARTIAL_SUFFIX = ".partial"  # `<name>.partial`: a file being written, renamed to `<name>` when complete

# At least 6 hex digits: torch.hub accepts any length, but a short tail such as `model-2.pth` is far more
# likely a version number than a digest, and every torchvision checkpoint uses 8 or more.
_HASH_TAIL = re.compile(r"[0-9a-f]{6,64}")


def get_dir() -> Path:
    """Return the checkpoint cache directory, ``$TORCH_HOME/hub/checkpoints`` (not created here).

    ``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``: the directory torch.hub
    uses, so checkpoints already downloaded by the reference are reused.
    """
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        torch_home = os.path.join(cache_home, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def weights_dir() -> Path | None:
    """The directory named by ``VISIONZOO_WEIGHTS_DIR`` (``~`` expanded), or None when it is not set."""
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(os.path.expanduser(value)) if value else None


def mirror_url(file_name: str) -> str | None:
    """``$VISIONZOO_WEIGHTS_URL/<file_name>``, or None when no mirror is set."""
    mirror = os.environ.get(ENV_WEIGHTS_URL)
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(file_name)}" if mirror else None


def file_name_from(url: str, file_name: str | None) -> str:
    """The checkpoint's file name: ``file_name`` if given, else the basename of ``url``.

    Raises:
        ValueError: the name is empty or would leave its directory (``..``, a path separator).
    """
    name = file_name if file_name is not None else posixpath.basename(urllib.parse.urlsplit(url).path)
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name:
        raise ValueError(
            f"cannot use {name!r} as a checkpoint file name (from url {url!r}): pass file_name='<name>.pth'"
        )
    return name


def expected_hash_prefix(file_name: str) -> str | None:
    """The digest prefix promised by ``<stem>-<hex>.<ext>``, or None when the name promises nothing."""
    if "-" not in file_name:
        return None
    tail = file_name.rsplit("-", 1)[1].split(".", 1)[0]
    return tail if _HASH_TAIL.fullmatch(tail) else None


def safetensors_name(file_name: str) -> str:
    """The file name of a checkpoint's safetensors conversion: ``resnet50-11ad3fa6.pth`` -> ``resnet50-11ad3fa6.safetensors``."""
    stem, suffix = os.path.splitext(file_name)
    return (stem if suffix.lower() in TORCH_SUFFIXES else file_name) + SAFETENSORS_SUFFIX


def prefers_converted(directory: Path, file_name: str) -> bool:
    """Whether a safetensors copy of ``file_name`` in ``directory`` should be used instead of the original."""
    if os.path.splitext(file_name)[1].lower() not in TORCH_SUFFIXES:
        return False
    if not (directory / safetensors_name(file_name)).is_file():
        return False
    import importlib.util

    return importlib.util.find_spec("safetensors") is not None or not (directory / file_name).is_file()


def find_local(file_name: str) -> Path | None:
    """Where ``file_name`` already sits on disk (mirror directory first, then the cache), or None.

    Only looks: nothing is hashed or downloaded. Used by model cards and ``visionzoo download`` to report
    what is available offline.
    """
    directory = weights_dir()
    candidates = []
    if directory is not None:
        if prefers_converted(directory, file_name):
            candidates.append(directory / safetensors_name(file_name))
        candidates.append(directory / file_name)
    candidates.append(get_dir() / file_name)
    return next((path for path in candidates if path.is_file()), None)
