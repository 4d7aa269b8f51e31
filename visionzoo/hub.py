"""The weight loading pipeline: find a checkpoint file, verify it, download it if needed, load it safely.

A checkpoint name is resolved in this order, first hit wins:

1. ``$VISIONZOO_WEIGHTS_DIR/<file_name>``: a flat directory the user fills for offline use. Read-only to us.
2. ``get_dir()/<file_name>``: the cache shared with ``torch.hub`` (``$TORCH_HOME/hub/checkpoints``).
3. The network: ``$VISIONZOO_WEIGHTS_URL/<file_name>`` when that mirror is set, else the checkpoint's own url.

Names of the form ``<stem>-<hex>.<ext>`` promise a sha256 digest starting with ``<hex>`` (the torch.hub
convention). Unlike torch.hub, the promise is checked on every hit, not only on download; a small memo of
verified digests (``get_dir()/.visionzoo-verified.json``, keyed by absolute path, size, mtime and ctime) keeps
repeated loads of an unchanged file cheap.

Policies:

* A corrupt file in the cache is renamed to ``<name>.corrupt-<timestamp>`` (kept for inspection, with a
  warning that names it) and downloaded again.
* A corrupt file in ``VISIONZOO_WEIGHTS_DIR`` raises :class:`ChecksumError`: that directory is the user's
  deliberate choice, so a bad file there is a deployment mistake that should be loud, and it is never modified.
* A download interrupted mid-body leaves ``<name>.partial`` in the cache when the name carries a hash, and the
  next attempt resumes it with an HTTP Range request (the hash check vets the spliced result). Without a hash
  to vet it, or after a hash mismatch, the partial file is deleted.

Loading always uses ``torch.load(weights_only=True)``, memory-mapped for torch's zip format, and
``safetensors`` for ``.safetensors`` files.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import posixpath
import re
import sys
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily so that `fetch_checkpoint` works (and imports fast) without it
    from collections.abc import Callable
    from typing import TypeAlias

    import torch

    MapLocation: TypeAlias = str | torch.device | Callable[..., Any] | dict[str, str] | None

__all__ = [
    "WeightsError",
    "WeightsUnavailableError",
    "ChecksumError",
    "CheckpointError",
    "get_dir",
    "fetch_checkpoint",
    "load_checkpoint",
    "load_state_dict_from_url",
    "sha256_of",
    "find_local",
    "download_to",
    "safetensors_name",
    "read_sidecar",
    "write_sidecar",
]

ENV_WEIGHTS_DIR = "VISIONZOO_WEIGHTS_DIR"
ENV_WEIGHTS_URL = "VISIONZOO_WEIGHTS_URL"
ENV_DOWNLOAD_TIMEOUT = "VISIONZOO_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before a download counts as stalled

MEMO_FILE_NAME = ".visionzoo-verified.json"
_MEMO_MAX_ENTRIES = 1000
_PARTIAL_SUFFIX = ".partial"
_LOCK_SUFFIX = ".lock"
_CHUNK = 1 << 20

# At least 6 hex digits: torch.hub accepts any length, but a short tail such as `model-2.pth` is far more
# likely a version number than a digest, and every torchvision checkpoint uses 8 or more.
_HASH_TAIL = re.compile(r"[0-9a-f]{6,64}")
_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".pkl")
_SAFETENSORS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".sha256"  # `<name>.safetensors.sha256`: the converted file's digest, sha256sum format

class WeightsError(RuntimeError):
    """Base class of every error raised by the weight loading pipeline."""


class WeightsUnavailableError(WeightsError):
    """The checkpoint is not on disk and could not be downloaded.

    Attributes:
        file_name: the checkpoint's file name (None when the error is about a path given by the user).
        tried: one line per place that was tried, in order (what the message lists).
    """

    file_name: str | None = None
    tried: tuple[str, ...] = ()


class ChecksumError(WeightsError):
    """A checkpoint's sha256 digest does not start with the prefix promised by its file name."""


class CheckpointError(WeightsError, ValueError):
    """A checkpoint file cannot be loaded safely: corrupt, unsupported format, or unsafe pickle."""


class _DownloadFailed(Exception):
    """Internal: one download attempt failed for a network reason; the caller builds the full message."""


# ---------------------------------------------------------------------------------------------- locations


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


def _expected_hash_prefix(file_name: str) -> str | None:
    """The digest prefix promised by ``<stem>-<hex>.<ext>``, or None when the name promises nothing."""
    if "-" not in file_name:
        return None
    tail = file_name.rsplit("-", 1)[1].split(".", 1)[0]
    return tail if _HASH_TAIL.fullmatch(tail) else None


def _download_timeout() -> float:
    raw = os.environ.get(ENV_DOWNLOAD_TIMEOUT, "")
    if not raw:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise ValueError(f"{ENV_DOWNLOAD_TIMEOUT} must be a positive number of seconds, got {raw!r}")
    return timeout


# ---------------------------------------------------------------------------------------------- hashing


def _update_hash(hasher: Any, path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 digest of a file, read in chunks so large checkpoints need little memory."""
    hasher = hashlib.sha256()
    _update_hash(hasher, path)
    return hasher.hexdigest()


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


def _memo_record(path: Path, stat: os.stat_result, digest: str) -> None:
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
        _remove(tmp)


def _digest_if_mismatch(path: Path, expected: str) -> str | None:
    """Verify ``path`` against ``expected`` (memo first); return the bad digest, or None when it matches."""
    stat = path.stat()
    digest = _memo_lookup(path, stat)
    if digest is None:
        digest = sha256_of(path)
        if digest.startswith(expected):
            _memo_record(path, stat, digest)
    return None if digest.startswith(expected) else digest


# ---------------------------------------------------------------------------------------------- file helpers


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); directories cannot be opened this way on Windows."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``lock_path`` (created if needed, never deleted).

    The lock file is left in place: deleting it would let a third process lock a fresh inode while a second
    still waits on the old one.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # a shared cache made by another user: a read-only descriptor can still flock
        fd = os.open(lock_path, os.O_RDONLY)
    try:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            import msvcrt
            import time

            while True:  # msvcrt.LK_LOCK gives up after ~10 s; a big download can take longer
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock on every platform


# ---------------------------------------------------------------------------------------------- download


def _stream(url: str, dest: Path, partial: Path, *, progress: bool, timeout: float) -> tuple[str, bool]:
    """Download ``url`` into ``partial`` (later renamed to ``dest``), resuming the bytes already there.

    Returns the sha256 of the whole file and whether a previous attempt's bytes were reused.

    Raises ``_DownloadFailed`` for HTTP errors, dropped or stalled connections and short bodies.
    """
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    from visionzoo import __version__

    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": f"visionzoo/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the kept partial is not a prefix of this file: start over
            _remove(partial)
            return _stream(url, dest, partial, progress=progress, timeout=timeout)
        raise _DownloadFailed(f"HTTP error {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeout, reset, bad URL
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
        raise _DownloadFailed(text) from exc

    with response:
        content_range = response.headers.get("Content-Range", "")
        if offset and not (response.status == 206 and content_range.startswith(f"bytes {offset}-")):
            offset = 0  # the server ignored the Range request and sends the whole file
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else None

        hasher = hashlib.sha256()
        if offset:
            _update_hash(hasher, partial)
        if progress:
            action = f"Resuming at byte {offset}" if offset else "Downloading"
            sys.stderr.write(f"{action}: {url!r} to {dest}\n")
        received = 0
        try:
            with open(partial, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr,
            ) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                        raise _DownloadFailed(
                            f"connection lost after {offset + received} of {total or '?'} bytes "
                            f"({type(exc).__name__}: {exc})"
                        ) from exc
                    if not chunk:
                        break
                    f.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                # http.client reports a body shorter than Content-Length as a normal end of stream.
                if length is not None and received != length:
                    raise _DownloadFailed(
                        f"the server closed the connection after {offset + received} of {total} bytes"
                    )
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk, a file size limit, an I/O error: not the network's fault
            raise _DownloadFailed(
                f"cannot write {partial} ({type(exc).__name__}: {exc}); free space on that disk or point "
                f"TORCH_HOME at one with room, then retry"
            ) from exc
    return hasher.hexdigest(), offset > 0


def _download(url: str, dest: Path, *, expected: str | None, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically: ``dest`` appears only complete and verified.

    The caller holds the lock for ``dest``, so the fixed ``<name>.partial`` name is ours alone.
    """
    partial = dest.with_name(dest.name + _PARTIAL_SUFFIX)
    # Resuming splices old bytes onto new ones; only a hash in the name can vouch for the result.
    resumable = expected is not None
    if not resumable:
        _remove(partial)
    try:
        digest, resumed = _stream(url, dest, partial, progress=progress, timeout=timeout)
        if expected is not None and not digest.startswith(expected) and resumed:
            # The kept bytes may belong to another version of the file: try once more from scratch.
            _remove(partial)
            digest, _ = _stream(url, dest, partial, progress=progress, timeout=timeout)
        if expected is not None and not digest.startswith(expected):
            raise ChecksumError(
                f"Checkpoint '{dest.name}' downloaded from {url} has sha256 {digest}, but its name promises a "
                f"digest starting with '{expected}'. The server (or a proxy) sent a different file; nothing was "
                f"saved to {dest.parent}. To fix: check the URL (and {ENV_WEIGHTS_URL} if set), or fetch the file "
                f"by other means, verify it, and put it in {dest.parent}."
            )
    except ChecksumError:
        _remove(partial)
        raise
    except BaseException:
        if not resumable:
            _remove(partial)
        raise
    os.replace(partial, dest)
    _fsync_dir(dest.parent)
    _memo_record(dest, dest.stat(), digest)


# ---------------------------------------------------------------------------------------------- resolution


def _file_name_from(url: str, file_name: str | None) -> str:
    name = file_name if file_name is not None else posixpath.basename(urllib.parse.urlsplit(url).path)
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name:
        raise ValueError(
            f"cannot use {name!r} as a checkpoint file name (from url {url!r}): pass file_name='<name>.pth'"
        )
    return name


def _unavailable(
    name: str, tried: list[str], url: str, cache_dir: Path, timeout: float
) -> WeightsUnavailableError:
    lines = "\n".join(f"  - {entry}" for entry in tried)
    error = WeightsUnavailableError(
        f"Checkpoint '{name}' is not available. Tried:\n{lines}\n"
        f"To fix: download {url} on a machine with internet access and put it in {cache_dir} or in a "
        f"directory named by the {ENV_WEIGHTS_DIR} environment variable; or set {ENV_WEIGHTS_URL} to a "
        f"mirror that serves '{name}'. If the network is just slow, raise {ENV_DOWNLOAD_TIMEOUT} "
        f"(now {timeout:g} s)."
    )
    error.file_name, error.tried = name, tuple(tried)
    return error


def fetch_checkpoint(
    url: str, *, file_name: str | None = None, progress: bool = True, check_hash: bool = True
) -> Path:
    """Resolve a checkpoint to a verified local file (see the module docstring for the search order).

    Args:
        url: where the checkpoint is published; its basename is the file name unless ``file_name`` is given.
        progress: show a progress bar on stderr while downloading. Hits on disk print nothing.
        check_hash: verify the sha256 prefix in the file name, on disk hits as well as downloads.

    Raises:
        WeightsUnavailableError: not on disk and the download failed; the message lists every place tried.
        ChecksumError: the file in ``VISIONZOO_WEIGHTS_DIR``, or the downloaded one, fails the hash check.
    """
    name = _file_name_from(url, file_name)
    expected = _expected_hash_prefix(name) if check_hash else None
    tried: list[str] = []

    weights_dir = os.environ.get(ENV_WEIGHTS_DIR)
    if weights_dir:
        converted = _converted_copy(Path(os.path.expanduser(weights_dir)), name, check_hash=check_hash)
        if converted is not None:
            return converted
        candidate = Path(os.path.expanduser(weights_dir)) / name
        if candidate.is_file():
            bad = _digest_if_mismatch(candidate, expected) if expected else None
            if bad is None:
                return candidate
            raise ChecksumError(
                f"Checkpoint {candidate} (in {ENV_WEIGHTS_DIR}) has sha256 {bad}, but its name promises a digest "
                f"starting with '{expected}': the file is corrupt or a different version. visionzoo does not "
                f"modify that directory. To fix: replace it with a good copy of {url}, or delete it to let "
                f"visionzoo download the file into {get_dir()}."
            )
        tried.append(f"{ENV_WEIGHTS_DIR}: {candidate}: not found")
    else:
        tried.append(f"{ENV_WEIGHTS_DIR}: not set")

    cache_dir = get_dir()
    cached = cache_dir / name
    with contextlib.suppress(FileNotFoundError):  # it may be moved aside by another process meanwhile
        if cached.is_file() and (expected is None or _digest_if_mismatch(cached, expected) is None):
            return cached

    mirror = os.environ.get(ENV_WEIGHTS_URL)
    source = f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}" if mirror else url
    timeout = _download_timeout()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        tried.append(f"cache: {cached}: not found, and the cache directory cannot be created ({exc})")
        raise _unavailable(name, tried, url, cache_dir, timeout) from exc

    with _exclusive_lock(cache_dir / (name + _LOCK_SUFFIX)):
        # Another process may have finished (or vetted) the file while we waited for the lock.
        if cached.is_file():
            bad = _digest_if_mismatch(cached, expected) if expected else None
            if bad is None:
                return cached
            stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
            aside = cached.with_name(f"{name}.corrupt-{stamp}")
            os.replace(cached, aside)
            warnings.warn(
                f"Cached checkpoint {cached} has sha256 {bad}, but its name promises a digest starting with "
                f"'{expected}'; moved it to {aside} (delete it when done) and downloading it again.",
                stacklevel=2,
            )
            tried.append(f"cache: {cached}: corrupt (sha256 {bad}), moved to {aside}")
        else:
            tried.append(f"cache: {cached}: not found")
        try:
            _download(source, cached, expected=expected, progress=progress, timeout=timeout)
        except _DownloadFailed as exc:
            where = f"mirror ({ENV_WEIGHTS_URL})" if mirror else "download"
            tried.append(f"{where}: {source}: {exc}")
            raise _unavailable(name, tried, url, cache_dir, timeout) from exc
    return cached


def find_local(file_name: str) -> Path | None:
    """Where ``file_name`` already sits on disk (mirror directory first, then the cache), or None.

    Only looks: nothing is hashed or downloaded. Used by model cards and ``visionzoo download`` to report
    what is available offline.
    """
    weights_dir = os.environ.get(ENV_WEIGHTS_DIR)
    candidates = []
    if weights_dir:
        directory = Path(os.path.expanduser(weights_dir))
        if _prefers_converted(directory, file_name):
            candidates.append(directory / safetensors_name(file_name))
        candidates.append(directory / file_name)
    candidates.append(get_dir() / file_name)
    return next((path for path in candidates if path.is_file()), None)


# ---------------------------------------------------------------------------------------------- safetensors copies
#
# `visionzoo convert` turns `<stem>.pth` into `<stem>.safetensors` (the same stem, so the hash in the name
# still identifies the original checkpoint it was made from) plus a sidecar `<stem>.safetensors.sha256` that
# holds the converted file's own digest. In VISIONZOO_WEIGHTS_DIR such a copy is preferred to the `.pth`
# (when the safetensors package is installed, or when it is the only copy) and is verified against its sidecar.


def safetensors_name(file_name: str) -> str:
    """The file name of a checkpoint's safetensors conversion: ``resnet50-11ad3fa6.pth`` -> ``resnet50-11ad3fa6.safetensors``."""
    stem, suffix = os.path.splitext(file_name)
    return (stem if suffix.lower() in _TORCH_SUFFIXES else file_name) + _SAFETENSORS_SUFFIX


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
    tmp = sidecar.with_name(sidecar.name + _PARTIAL_SUFFIX)
    tmp.write_text(f"{digest}  {Path(path).name}\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return sidecar


def _prefers_converted(directory: Path, file_name: str) -> bool:
    """Whether a safetensors copy of ``file_name`` in ``directory`` should be used instead of the original."""
    if os.path.splitext(file_name)[1].lower() not in _TORCH_SUFFIXES:
        return False
    if not (directory / safetensors_name(file_name)).is_file():
        return False
    import importlib.util

    return importlib.util.find_spec("safetensors") is not None or not (directory / file_name).is_file()


def _converted_copy(directory: Path, file_name: str, *, check_hash: bool) -> Path | None:
    """The verified safetensors copy of ``file_name`` in the mirror directory, or None when none is preferred.

    Raises:
        ChecksumError: the copy has no sidecar digest, or its content does not match it.
    """
    if not _prefers_converted(directory, file_name):
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
    bad = _digest_if_mismatch(path, expected)
    if bad is not None:
        raise ChecksumError(
            f"Checkpoint {path} (in {ENV_WEIGHTS_DIR}) has sha256 {bad}, but {path.name}{SIDECAR_SUFFIX} records "
            f"{expected}: the file is corrupt or was replaced. To fix: re-create it with `visionzoo convert`, "
            f"or remove it (and its digest file) to use {file_name}."
        )
    return path


# ---------------------------------------------------------------------------------------------- filling a directory


def _copy_verified(source: Path, partial: Path, expected: str | None) -> str | None:
    """Copy ``source`` to ``partial`` while hashing it; return the digest, or None (and no file) on a mismatch."""
    hasher = hashlib.sha256()
    with open(source, "rb") as src, open(partial, "wb") as dst:
        while chunk := src.read(_CHUNK):
            hasher.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    digest = hasher.hexdigest()
    if expected is not None and not digest.startswith(expected):
        _remove(partial)
        return None
    return digest


def download_to(
    url: str,
    directory: str | os.PathLike[str],
    *,
    file_name: str | None = None,
    progress: bool = True,
    check_hash: bool = True,
) -> tuple[Path, str]:
    """Put a verified copy of a checkpoint into ``directory`` (flat, usable as ``VISIONZOO_WEIGHTS_DIR``).

    A good copy already in ``directory`` is kept; else one found in ``VISIONZOO_WEIGHTS_DIR`` or the cache is
    copied (no network); else the file is downloaded from ``VISIONZOO_WEIGHTS_URL`` or ``url``, resumably and
    atomically, as :func:`fetch_checkpoint` does. A corrupt file in ``directory`` is moved aside to
    ``<name>.corrupt-<timestamp>`` first. ``directory`` may be the cache itself (``get_dir()``).

    Returns:
        The file's path and what happened: ``"present"``, ``"copied"`` or ``"downloaded"``.

    Raises:
        WeightsUnavailableError: the download failed (the message lists what was tried).
        ChecksumError: the downloaded file does not match the digest its name promises.
    """
    name = _file_name_from(url, file_name)
    expected = _expected_hash_prefix(name) if check_hash else None
    directory = Path(os.path.expanduser(directory))
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / name
    tried: list[str] = []
    with _exclusive_lock(directory / (name + _LOCK_SUFFIX)):
        if dest.is_file():
            bad = _digest_if_mismatch(dest, expected) if expected else None
            if bad is None:
                return dest, "present"
            aside = dest.with_name(f"{name}.corrupt-{datetime.datetime.now().strftime('%Y%m%dT%H%M%S%f')}")
            os.replace(dest, aside)
            warnings.warn(f"{dest} has sha256 {bad}, not '{expected}...'; moved it to {aside}", stacklevel=2)
            tried.append(f"{dest}: corrupt (sha256 {bad}), moved to {aside}")

        weights_dir = os.environ.get(ENV_WEIGHTS_DIR)
        local = [Path(os.path.expanduser(weights_dir)) / name] if weights_dir else []
        for source in [*local, get_dir() / name]:
            if source.is_file():  # never `dest` itself: that one is missing or was just moved aside
                partial = dest.with_name(dest.name + _PARTIAL_SUFFIX)
                digest = _copy_verified(source, partial, expected)
                if digest is not None:
                    os.replace(partial, dest)
                    _fsync_dir(directory)
                    _memo_record(dest, dest.stat(), digest)
                    return dest, "copied"
                tried.append(f"{source}: corrupt, not copied")

        mirror = os.environ.get(ENV_WEIGHTS_URL)
        source_url = f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}" if mirror else url
        timeout = _download_timeout()
        try:
            _download(source_url, dest, expected=expected, progress=progress, timeout=timeout)
        except _DownloadFailed as exc:
            where = f"mirror ({ENV_WEIGHTS_URL})" if mirror else "download"
            tried.append(f"{where}: {source_url}: {exc}")
            raise _unavailable(name, tried, url, directory, timeout) from exc
    return dest, "downloaded"


# ---------------------------------------------------------------------------------------------- loading


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
    if suffix == _SAFETENSORS_SUFFIX:
        state = _load_safetensors(path, map_location)
    elif suffix in _TORCH_SUFFIXES:
        state = _load_torch(path, map_location, mmap)
    else:
        supported = ", ".join((*_TORCH_SUFFIXES, _SAFETENSORS_SUFFIX))
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
        if path.parent != get_dir() or _expected_hash_prefix(path.name) is not None:
            raise
        aside = path.with_name(f"{path.name}.corrupt-{datetime.datetime.now().strftime('%Y%m%dT%H%M%S%f')}")
        os.replace(path, aside)
        raise CheckpointError(f"{exc} It was moved to {aside}; the next attempt downloads it again.") from exc
