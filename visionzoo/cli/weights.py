"""``visionzoo download``, ``verify`` and ``convert``: prepare checkpoints for offline and pickle-free use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import CommandError, looks_like_path, one_line, select_entries, table, unavailable

if TYPE_CHECKING:
    from visionzoo.models import WeightsEnum


def register(sub: Any) -> None:
    """Add the weight management commands to the top-level parser's subparsers."""
    p = sub.add_parser(
        "download",
        help="fetch checkpoints into the cache or a directory",
        description="Fetch checkpoints (resumable, hash-verified) into the cache, or into DIR: a flat directory "
        "that can later serve as VISIONZOO_WEIGHTS_DIR on a machine without internet.",
    )
    p.add_argument("patterns", nargs="+", metavar="PATTERN", help="model name patterns, or entry names")
    p.add_argument("--weights", default="DEFAULT", help="entry name, DEFAULT (default) or 'all'")
    p.add_argument("--to", metavar="DIR", help="target directory (default: the cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "verify",
        help="re-check the hash of every checkpoint in a directory",
        description="Hash every checkpoint file in DIR (default: the cache) and compare it with the digest its "
        "name promises (or, for converted .safetensors files, with their .sha256 file).",
    )
    p.add_argument("dir", nargs="?", metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "convert",
        help="turn checkpoints into verified .safetensors files",
        description="Read each checkpoint from VISIONZOO_WEIGHTS_DIR or the cache (downloading it first when "
        "needed), or a checkpoint file given by its path, and write <stem>.safetensors (same stem as the checkpoint, whose sha256 prefix it keeps as "
        "provenance) and <stem>.safetensors.sha256 (the new file's own digest) into DIR. With DIR as "
        "VISIONZOO_WEIGHTS_DIR the loader uses them instead of the pickle files, memory-mapped. Quantized "
        "checkpoints cannot be converted (safetensors stores no quantized tensors).",
    )
    p.add_argument(
        "patterns", nargs="+", metavar="PATTERN", help="model name patterns, entry names, or checkpoint paths"
    )
    p.add_argument("--to", required=True, metavar="DIR", help="output directory")
    p.add_argument("--format", default="safetensors", choices=["safetensors"], help="output format")
    p.add_argument("--weights", default="DEFAULT", help="entry name, DEFAULT (default) or 'all'")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_convert)


def _why(error: BaseException) -> str:
    """One line on why a checkpoint could not be had: the last place tried, or the error's first line."""
    tried = getattr(error, "tried", ())
    return f"not available: {tried[-1]}" if tried else one_line(error)


def _report(rows: list[list[str]], counts: dict[str, int]) -> None:
    print(table([["status", "weights", "file"], *rows]))
    print(", ".join(f"{n} {status}" for status, n in counts.items()))


# ---------------------------------------------------------------------------------------------- download


def _in_weights_dir(entry: WeightsEnum) -> Path | None:
    """The verified copy in VISIONZOO_WEIGHTS_DIR that the loader would use, or None (ChecksumError if bad)."""
    from visionzoo import hub

    path = hub.find_local(entry.file_name)
    if path is None or path.parent != hub.weights_dir():
        return None
    return hub.fetch_checkpoint(entry.url, progress=False)  # a local hit: verifies, never downloads


def cmd_download(args: argparse.Namespace) -> int:
    from visionzoo import hub

    entries, notes = select_entries(args.patterns, args.weights)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    target = Path(args.to) if args.to else hub.get_dir()
    rows: list[list[str]] = []
    counts = {"downloaded": 0, "copied": 0, "skipped": 0, "failed": 0}
    for entry in entries:
        try:
            path = _in_weights_dir(entry) if args.to is None else None
            how = "present"
            if path is None:
                path, how = hub.download_to(entry.url, target, progress=not args.quiet)
        except (hub.WeightsError, OSError) as error:
            print(f"visionzoo: {entry!r}: {_why(error)}", file=sys.stderr)
            rows.append(["failed", repr(entry), entry.file_name])
            counts["failed"] += 1
            continue
        status = "skipped" if how == "present" else how
        counts[status] += 1
        rows.append([status, repr(entry), str(path)])
    _report(rows, counts)
    return 1 if counts["failed"] else 0


# ---------------------------------------------------------------------------------------------- verify


def _expected_digest(path: Path) -> tuple[str | None, str]:
    """What ``path`` should hash to (a prefix or a full digest) and where that promise comes from.

    A converted ``.safetensors`` file carries its digest in ``<name>.sha256``; every other file (and a
    safetensors file published as such) promises a prefix in its name, as torch.hub does.
    """
    from visionzoo import hub

    recorded = hub.read_sidecar(path) if path.suffix == hub.SAFETENSORS_SUFFIX else None
    if recorded is not None:
        return recorded, f"{path.name}{hub.SIDECAR_SUFFIX}"
    return hub.expected_hash_prefix(path.name), "its name"


def _default_directories() -> list[Path]:
    """The directories the loader reads: VISIONZOO_WEIGHTS_DIR (when set) and the cache."""
    from visionzoo import hub

    weights_dir = hub.weights_dir()
    return ([weights_dir] if weights_dir is not None else []) + [hub.get_dir()]


def cmd_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from visionzoo import hub

    if args.dir:
        directories = [Path(args.dir)]
        if not directories[0].is_dir():
            raise CommandError(f"{args.dir}: no such directory")
    else:
        directories = [d for d in _default_directories() if d.is_dir()]
    files = sorted(
        p
        for directory in directories
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in hub.CHECKPOINT_SUFFIXES
    )
    where = " and ".join(map(str, directories)) or " and ".join(map(str, _default_directories()))
    if not files:
        print(f"No checkpoint files in {where}.")
        return 0
    rows = []
    counts = {"ok": 0, "bad": 0, "unchecked": 0}
    total = sum(p.stat().st_size for p in files)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="verifying", file=sys.stderr, disable=args.quiet or None
    ) as bar:
        for path in files:
            shown = str(path) if len(directories) > 1 else path.name
            expected, source = _expected_digest(path)
            if expected is None:
                bar.update(path.stat().st_size)
                rows.append(["unchecked", shown, "no digest in its name"])
                counts["unchecked"] += 1
                continue
            digest = hub.sha256_of(path, on_chunk=lambda chunk: bar.update(len(chunk)))
            if digest.startswith(expected):
                rows.append(["ok", shown, ""])
                counts["ok"] += 1
            else:
                rows.append(["BAD", shown, f"sha256 {digest[:16]}... does not match {expected[:16]} ({source})"])
                counts["bad"] += 1
    print(table([["status", "file", "detail"], *rows]))
    print(f"{len(files)} files in {where}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return 1 if counts["bad"] else 0


# ---------------------------------------------------------------------------------------------- convert


def convert_to_safetensors(source: Path, target: Path, *, unwrap: bool = False) -> str:
    """Write ``source``'s tensors to ``target`` (atomically), check the round trip, write the sidecar.

    Args:
        unwrap: ``source`` is a user's checkpoint: take the state_dict out of the usual training containers
            (``{"model": ...}``, ``module.`` prefixes), as the builders do.

    Returns the new file's sha256. Raises ValueError when the checkpoint holds something safetensors cannot
    store (non-tensor values, quantized tensors).
    """
    import torch
    from safetensors.torch import load_file, save_file

    from visionzoo import hub
    from visionzoo.models._utils import load_local_checkpoint

    state = load_local_checkpoint(source, tensors_only=False) if unwrap else hub.load_checkpoint(source)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.is_quantized:
            kind = type(value).__name__ if not isinstance(value, torch.Tensor) else f"quantized {value.dtype}"
            raise ValueError(f"{source.name}: {key!r} is a {kind}, which safetensors cannot store")
        tensor = value.contiguous()
        where = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        tensors[key] = tensor.clone() if where in seen and tensor.numel() else tensor  # tied weights: own copy
        seen.add(where)
    metadata = {"format": "pt", "source": source.name, "source_sha256": hub.sha256_of(source)}
    partial = target.with_name(target.name + ".partial")
    save_file(tensors, partial, metadata=metadata)
    try:
        reloaded = load_file(partial)
        if reloaded.keys() != tensors.keys() or not all(torch.equal(reloaded[k], v) for k, v in tensors.items()):
            raise ValueError(f"{target.name}: the written file does not read back equal to {source.name}")
        digest = hub.sha256_of(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    hub.write_sidecar(target, digest)
    return digest


def cmd_convert(args: argparse.Namespace) -> int:
    from visionzoo import hub

    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise CommandError(
            "convert needs the optional safetensors package: pip install 'visionzoo[safetensors]'"
        ) from None
    files = [Path(p) for p in args.patterns if looks_like_path(p)]
    for path in files:
        if not path.is_file():
            raise CommandError(f"{path}: no such checkpoint file" + (" (a directory)" if path.is_dir() else ""), 1)
    patterns = [p for p in args.patterns if not looks_like_path(p)]
    entries, notes = select_entries(patterns, args.weights) if patterns else ([], [])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.to)
    if out.is_file():
        raise CommandError(f"--to {out} is a file; it must be a directory")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    counts = {"converted": 0, "skipped": 0, "failed": 0}
    for path in files:  # a user's own checkpoint: converted as given, named after it
        target = out / hub.safetensors_name(path.name)
        try:
            convert_to_safetensors(path, target, unwrap=True)
        except (hub.WeightsError, ValueError, OSError) as error:
            print(f"visionzoo: {path}: {one_line(error)}", file=sys.stderr)
            rows.append(["failed", str(path), path.name])
            counts["failed"] += 1
            continue
        rows.append(["converted", str(path), str(target)])
        counts["converted"] += 1
    for entry in entries:
        target = out / hub.safetensors_name(entry.file_name)
        if target.is_file() and hub.read_sidecar(target) == hub.sha256_of(target):
            rows.append(["skipped", repr(entry), str(target)])
            counts["skipped"] += 1
            continue
        # A stale or damaged earlier output is replaced; removing it first also keeps the loader (when DIR is
        # VISIONZOO_WEIGHTS_DIR) from refusing it as the source instead of reading the original checkpoint.
        for stale in (target, Path(f"{target}{hub.SIDECAR_SUFFIX}")):
            stale.unlink(missing_ok=True)
        try:
            source = hub.fetch_checkpoint(entry.url, progress=not args.quiet)
            convert_to_safetensors(source, target)
        except (hub.WeightsError, ValueError, OSError) as error:
            if isinstance(error, hub.WeightsUnavailableError):  # names the entry and the fix itself
                print(f"visionzoo: {unavailable(error, entry)}", file=sys.stderr)
            else:
                print(f"visionzoo: {entry!r}: {one_line(error)}", file=sys.stderr)
            rows.append(["failed", repr(entry), entry.file_name])
            counts["failed"] += 1
            continue
        rows.append(["converted", repr(entry), str(target)])
        counts["converted"] += 1
    _report(rows, counts)
    return 1 if counts["failed"] else 0
