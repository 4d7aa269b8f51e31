"""Verify: is a file the one its name (or its sidecar) promises?

Names of the form ``<stem>-<hex>.<ext>`` promise a sha256 digest starting with ``<hex>`` (the torch.hub
convention). Unlike torch.hub, the promise is checked on every hit, not only on download; a small memo of
verified digests (``get_dir()/.visionzoo-verified.json``, keyed by absolute path, size, mtime and ctime) keeps
repeated loads of an unchanged file cheap.

A safetensors copy made by `visionzoo convert` keeps its original's name, so its own digest lives in a
sidecar ``<name>.sha256`` (sha256sum format) instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ChecksumError
from .locate import ENV_WEIGHTS_DIR, PARTIAL_SUFFIX, get_dir, prefers_converted, safetensors_name

MEMO_FILE_NAME = ".visionzoo-verified.json"
SIDECAR_SUFFIX = ".sha256"  # `<name>.safetensors.sha256`: the converted file's digest, sha256sum format
_MEMO_MAX_ENTRIES = 1000
CHUNK_SIZE = 1 << 20


def read_chunks(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The bytes of a file in chunks of :data:`CHUNK_SIZE`, so that large checkpoints need little memory."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk


def sha256_of(path: str | os.PathLike[str], *, on_chunk: Callable[[bytes], object] | None = None) -> str:
    """Return the hex sha256 digest of a file, read in chunks.

    Args:
        on_chunk: called with each chunk after it is hashed: to copy the file while hashing it, or to advance
            a progress bar (``lambda chunk: bar.update(len(chunk))``).
    """
    hasher = hashlib.sha256()
    for chunk in read_chunks(path):
        hasher.update(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return hasher.hexdigest()


# ---------------------------------------------------------------------------------------------- the memo


def _memo_path() -> Path:
    return get_dir() / MEMO_FILE_NAME


def _read_memo() -> dict[str, list[Any]]:
    """Entries ``abs path -> [size, mtime_ns, ctime_ns, sha256]``; a missing or unreadable memo is just empty."""
    try:
        data = json.loads(_memo_path().read_text(encoding="utf-8"))
        files = data["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _memo_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _memo_lookup(path: Path, stat: os.stat_result) -> str | None:
    entry = _read_memo().get(os.path.abspath(path))
    if isinstance(entry, list) and len(entry) == 4 and entry[:3] == _memo_key(stat):
        return str(entry[3])
    return None


def memo_record(path: Path, stat: os.stat_result, digest: str) -> None:
    """Remember a verified digest. Best effort: the memo is an optimisation, so failures are ignored.

    Keyed by path, size, mtime and ctime: a rewrite changes the key, so the file is hashed again. The ctime
    matters because tools copy or restore mtimes (``cp -p``, ``rsync -t``, ``os.utime``) but nothing short of
    the system clock sets a POSIX ctime, so a replaced file never inherits the memo of the one it replaced,
    in the cache or in a shared ``VISIONZOO_WEIGHTS_DIR`` (on Windows ctime is the creation time).
    Concurrent writers may drop each other's entries; that only costs a re-hash later.
    """
    memo = _memo_path()
    files = _read_memo()
    files[os.path.abspath(path)] = [*_memo_key(stat), digest]
    # Keep the memo small: forget files that are gone, then the oldest entries.
    files = {p: e for p, e in files.items() if os.path.exists(p)}
    files = dict(list(files.items())[-_MEMO_MAX_ENTRIES:])
    tmp = memo.with_name(f"{memo.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "files": files}, indent=0), encoding="utf-8")
        os.replace(tmp, memo)  # atomic: readers see the old memo or the new one, never half of one
    except OSError:
        tmp.unlink(missing_ok=True)


def mismatched_digest(path: Path, expected: str | None) -> str | None:
    """Verify ``path`` against the ``expected`` digest prefix (memo first).

    Returns:
        The file's digest when it does not start with ``expected``; None when it does, or when nothing is
        expected.
    """
    if expected is None:
        return None
    stat = path.stat()
    digest = _memo_lookup(path, stat)
    if digest is None:
        digest = sha256_of(path)
        if digest.startswith(expected):
            memo_record(path, stat, digest)
    return None if digest.startswith(expected) else digest


# ---------------------------------------------------------------------------------------------- sidecars


def read_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The digest recorded in ``<path>.sha256`` (sha256sum format), or None when there is no usable sidecar."""
    try:
        text = Path(f"{os.fspath(path)}{SIDECAR_SUFFIX}").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def write_sidecar(path: str | os.PathLike[str], digest: str) -> Path:
    """Write ``<path>.sha256`` in sha256sum format (``sha256sum -c`` can check it) and return its path."""
    sidecar = Path(f"{os.fspath(path)}{SIDECAR_SUFFIX}")
    tmp = sidecar.with_name(sidecar.name + PARTIAL_SUFFIX)
    tmp.write_text(f"{digest}  {Path(path).name}\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar


def converted_copy(directory: Path, file_name: str, *, check_hash: bool) -> Path | None:
    """The verified safetensors copy of ``file_name`` in the mirror directory, or None when none is preferred.

    Raises:
        ChecksumError: the copy has no sidecar digest, or its content does not match it.
    """
    if not prefers_converted(directory, file_name):
        return None
    path = directory / safetensors_name(file_name)
    if not check_hash:
        return path
    expected = read_sidecar(path)
    if expected is None:
        raise ChecksumError(
            f"Checkpoint {path} (in {ENV_WEIGHTS_DIR}) has no readable digest file {path.name}{SIDECAR_SUFFIX}, "
            f"so it cannot be verified. To fix: re-create both with `visionzoo convert`, or remove {path.name}."
        )
    bad = mismatched_digest(path, expected)
    if bad is not None:
        raise ChecksumError(
            f"Checkpoint {path} (in {ENV_WEIGHTS_DIR}) has sha256 {bad}, but {path.name}{SIDECAR_SUFFIX} records "
            f"{expected}: the file is corrupt or was replaced. To fix: re-create it with `visionzoo convert`, "
            f"or remove it (and its digest file) to use {file_name}."
        )
    return path
