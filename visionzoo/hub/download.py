"""Download: resolve a checkpoint to a verified local file, downloading it when no copy on disk will do.

:func:`fetch_checkpoint` resolves a name in the order the package docstring gives; :func:`download_to`
fills a directory of the user's. Both end in one routine (:func:`_obtain`) that, under a per-file lock,
keeps a good copy, moves a corrupt one aside, copies a local one, or downloads.

Policies:

* A corrupt file in the cache is renamed to ``<name>.corrupt-<timestamp>`` (kept for inspection, with a
  warning that names it) and downloaded again.
* A corrupt file in ``VISIONZOO_WEIGHTS_DIR`` raises :class:`ChecksumError`: that directory is the user's
  deliberate choice, so a bad file there is a deployment mistake that should be loud, and it is never modified.
* A download streams to ``<name>.partial`` and is renamed to ``<name>`` only when complete and verified; a
  lock file ``<name>.lock`` (removed by its holder when done) keeps concurrent processes from clobbering each other.
* A download interrupted mid-body leaves ``<name>.partial`` in the cache when the name carries a hash, and the
  next attempt resumes it with an HTTP Range request (the hash check vets the spliced result). Without a hash
  to vet it, or after a hash mismatch, the partial file is deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import ChecksumError, WeightsUnavailableError
from .locate import (
    ENV_WEIGHTS_DIR,
    ENV_WEIGHTS_URL,
    PARTIAL_SUFFIX,
    expected_hash_prefix,
    file_name_from,
    get_dir,
    mirror_url,
    weights_dir,
)
from .verify import CHUNK_SIZE, converted_copy, memo_record, mismatched_digest, read_chunks, sha256_of

ENV_DOWNLOAD_TIMEOUT = "VISIONZOO_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before a download counts as stalled

_LOCK_SUFFIX = ".lock"


class _DownloadFailed(Exception):
    """Internal: one download attempt failed for a network reason; the caller builds the full message."""


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


# ---------------------------------------------------------------------------------------------- file helpers


def move_aside(path: Path) -> Path:
    """Rename a corrupt file to ``<name>.corrupt-<timestamp>``, kept for inspection; return its new path."""
    aside = path.with_name(f"{path.name}.corrupt-{datetime.datetime.now().strftime('%Y%m%dT%H%M%S%f')}")
    os.replace(path, aside)
    return aside


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


def _install(partial: Path, dest: Path, digest: str) -> None:
    """Rename a complete, verified ``partial`` to ``dest`` durably and remember its digest."""
    os.replace(partial, dest)
    _fsync_dir(dest.parent)
    memo_record(dest, dest.stat(), digest)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``lock_path`` (created if needed, removed when done on POSIX).

    The holder removes the file before releasing it, so no empty ``.lock`` files stay behind (after a failed
    download either). That is safe because a process that obtains the lock checks that its file is still the
    one at ``lock_path``; if it was removed or replaced meanwhile, it tries again on the current file, so two
    processes never hold locks on different files for the same checkpoint. (Windows cannot remove an open
    file: the file stays there.)
    """
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # a shared cache made by another user: a read-only descriptor can still flock
            fd = os.open(lock_path, os.O_RDONLY)
        try:
            _lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if os.name != "posix" or _is_current(fd, lock_path):
            break
        os.close(fd)  # the holder before us removed this file: lock the one now at lock_path
    try:
        yield
    finally:
        if os.name == "posix":
            with contextlib.suppress(OSError):  # e.g. a shared cache's lock file owned by another user
                os.unlink(lock_path)
        os.close(fd)  # closing releases the lock on every platform


def _lock(fd: int) -> None:
    if os.name == "posix":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    import msvcrt
    import time

    while True:  # msvcrt.LK_LOCK gives up after ~10 s; a big download can take longer
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            return
        except OSError:
            time.sleep(0.1)


def _is_current(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


# ---------------------------------------------------------------------------------------------- transfer


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
            partial.unlink(missing_ok=True)
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
            for chunk in read_chunks(partial):
                hasher.update(chunk)
        if progress:
            action = f"Resuming at byte {offset}" if offset else "Downloading"
            sys.stderr.write(f"{action}: {url!r} to {dest}\n")
        received = 0
        try:
            with (
                open(partial, "ab" if offset else "wb") as f,
                tqdm(
                    total=total,
                    initial=offset,
                    desc=dest.name,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
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
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    # Resuming splices old bytes onto new ones; only a hash in the name can vouch for the result.
    resumable = expected is not None
    if not resumable:
        partial.unlink(missing_ok=True)
    try:
        digest, resumed = _stream(url, dest, partial, progress=progress, timeout=timeout)
        if expected is not None and not digest.startswith(expected) and resumed:
            # The kept bytes may belong to another version of the file: try once more from scratch.
            partial.unlink(missing_ok=True)
            digest, _ = _stream(url, dest, partial, progress=progress, timeout=timeout)
        if expected is not None and not digest.startswith(expected):
            raise ChecksumError(
                f"Checkpoint '{dest.name}' downloaded from {url} has sha256 {digest}, but its name promises a "
                f"digest starting with '{expected}'. The server (or a proxy) sent a different file; nothing was "
                f"saved to {dest.parent}. To fix: check the URL (and {ENV_WEIGHTS_URL} if set), or fetch the file "
                f"by other means, verify it, and put it in {dest.parent}."
            )
    except ChecksumError:
        partial.unlink(missing_ok=True)
        raise
    except BaseException:
        if not resumable:
            partial.unlink(missing_ok=True)
        raise
    _install(partial, dest, digest)


def _copy_verified(source: Path, dest: Path, expected: str | None) -> bool:
    """Copy ``source`` to ``dest`` atomically while hashing it; False (and no file) when it fails the check."""
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    with open(partial, "wb") as out:
        digest = sha256_of(source, on_chunk=out.write)
        out.flush()
        os.fsync(out.fileno())
    if expected is not None and not digest.startswith(expected):
        partial.unlink()
        return False
    _install(partial, dest, digest)
    return True


# ---------------------------------------------------------------------------------------------- the routine


def _unavailable(name: str, tried: list[str], url: str, directory: Path) -> WeightsUnavailableError:
    lines = "\n".join(f"  - {entry}" for entry in tried)
    error = WeightsUnavailableError(
        f"Checkpoint '{name}' is not available. Tried:\n{lines}\n"
        f"To fix: download {url} on a machine with internet access and put it in {directory} or in a "
        f"directory named by the {ENV_WEIGHTS_DIR} environment variable; or set {ENV_WEIGHTS_URL} to a "
        f"mirror that serves '{name}'. If the network is just slow, raise {ENV_DOWNLOAD_TIMEOUT} "
        f"(now {_download_timeout():g} s)."
    )
    error.file_name, error.tried = name, tuple(tried)
    return error


def _obtain(
    dest: Path,
    url: str,
    *,
    expected: str | None,
    progress: bool,
    tried: list[str],
    place: str,
    copy_from: Sequence[Path] = (),
) -> str:
    """Make ``dest`` a verified copy of the checkpoint published at ``url``; its directory must exist.

    Under ``dest``'s lock: a good ``dest`` is kept (another process may have just finished it) and a corrupt
    one is moved aside; then the first file of ``copy_from`` that passes the check is copied, else the file is
    downloaded from the mirror (``VISIONZOO_WEIGHTS_URL``) or ``url``. Each step is added to ``tried``, with
    ``place`` saying what ``dest`` is (the cache, a target directory).

    Returns:
        What happened: ``"present"``, ``"copied"`` or ``"downloaded"``.

    Raises:
        WeightsUnavailableError: the download failed (the message lists ``tried``).
        ChecksumError: the downloaded file does not match the digest its name promises.
    """
    timeout = _download_timeout()
    with _exclusive_lock(dest.with_name(dest.name + _LOCK_SUFFIX)):
        if not dest.is_file():
            tried.append(f"{place}: {dest}: not found")
        elif (bad := mismatched_digest(dest, expected)) is None:
            return "present"
        else:
            aside = move_aside(dest)
            warnings.warn(
                f"Checkpoint {dest} has sha256 {bad}, but its name promises a digest starting with "
                f"'{expected}'; moved it to {aside} (delete it when done) and fetching it again.",
                stacklevel=3,  # the caller of fetch_checkpoint or download_to
            )
            tried.append(f"{place}: {dest}: corrupt (sha256 {bad}), moved to {aside}")

        for source in copy_from:
            if source.is_file():  # never `dest` itself: that one is missing or was just moved aside
                if _copy_verified(source, dest, expected):
                    return "copied"
                tried.append(f"{source}: corrupt, not copied")

        mirror = mirror_url(dest.name)
        try:
            _download(mirror or url, dest, expected=expected, progress=progress, timeout=timeout)
        except _DownloadFailed as exc:
            where = f"mirror ({ENV_WEIGHTS_URL})" if mirror else "download"
            tried.append(f"{where}: {mirror or url}: {exc}")
            raise _unavailable(dest.name, tried, url, dest.parent) from exc
    return "downloaded"


# ---------------------------------------------------------------------------------------------- entry points


def fetch_checkpoint(url: str, *, file_name: str | None = None, progress: bool = True, check_hash: bool = True) -> Path:
    """Resolve a checkpoint to a verified local file (see :mod:`visionzoo.hub` for the search order).

    Args:
        url: where the checkpoint is published; its basename is the file name unless ``file_name`` is given.
        progress: show a progress bar on stderr while downloading. Hits on disk print nothing.
        check_hash: verify the sha256 prefix in the file name, on disk hits as well as downloads.

    Raises:
        WeightsUnavailableError: not on disk and the download failed; the message lists every place tried.
        ChecksumError: the file in ``VISIONZOO_WEIGHTS_DIR``, or the downloaded one, fails the hash check.
    """
    name = file_name_from(url, file_name)
    expected = expected_hash_prefix(name) if check_hash else None
    tried: list[str] = []

    directory = weights_dir()
    if directory is not None:
        converted = converted_copy(directory, name, check_hash=check_hash)
        if converted is not None:
            return converted
        candidate = directory / name
        if candidate.is_file():
            bad = mismatched_digest(candidate, expected)
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
        if cached.is_file() and mismatched_digest(cached, expected) is None:
            return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        tried.append(f"cache: {cached}: not found, and the cache directory cannot be created ({exc})")
        raise _unavailable(name, tried, url, cache_dir) from exc
    _obtain(cached, url, expected=expected, progress=progress, tried=tried, place="cache")
    return cached


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
    name = file_name_from(url, file_name)
    expected = expected_hash_prefix(name) if check_hash else None
    target = Path(os.path.expanduser(directory))
    target.mkdir(parents=True, exist_ok=True)
    local = weights_dir()
    sources = [*([local / name] if local is not None else []), get_dir() / name]
    dest = target / name
    how = _obtain(dest, url, expected=expected, progress=progress, tried=[], place="target", copy_from=sources)
    return dest, how
