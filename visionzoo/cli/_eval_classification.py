"""``visionzoo validate`` for classification (and quantized classification) weights: acc@1 and acc@5.

Two layouts of ``--data DIR``:

* a folder of class folders (images anywhere below each). A subfolder names its class by

  * the category index, ``0`` ... ``N-1`` (e.g. ``207/``);
  * the exact category name from ``meta["categories"]`` (e.g. ``golden retriever/``), unless that name is
    shared by several categories (ImageNet-1k has two "crane" and two "maillot"): use the index there;
  * a WordNet id (``n01440764/``), only when every subfolder is one and there are as many as categories:
    then, as in the usual ImageNet layout, their sorted order gives the indices.

* with ``--labels FILE``, the ImageNet validation layout: a flat folder of images (``ILSVRC2012_val_*.JPEG``)
  and a ground-truth file, in one of two forms (blank lines and ``#`` comments ignored):

  * one label per line, for the folder's images in sorted file-name order (as many lines as images);
  * ``NAME LABEL`` lines (a space, tab or comma between), ``NAME`` the file name with or without its suffix;
    the file may list more images than the folder holds.

  A label is a category index (0-based), or a WordNet id when the file's ids are all N distinct ones (their
  sorted order gives the indices, as for folders). The devkit's ``ILSVRC2012_validation_ground_truth.txt`` holds
  1-based ILSVRC2012 ids, which follow neither order: map them to WordNet ids with the devkit's ``meta.mat``
  first (``NAME WNID`` lines then work as they are).

Each image goes through the entry's preset twice: as a PIL image and as a uint8 tensor, so both paths of the
preset are checked against the published figures. An image that cannot be decoded is reported, counted and
skipped.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import IMAGE_SUFFIXES, ChosenWeights, CommandError, class_count, device_of, one_line
from ._evaluate import Scores, Skips, Timer, build, check_data_dir, progress, published_of, report

if TYPE_CHECKING:
    import torch

_WNID = re.compile(r"n\d{8}")
_LAYOUT = "one subfolder per class, or a flat folder of images with --labels FILE"


def class_indices(folders: list[str], categories: list[str]) -> dict[str, int]:
    """Map class subfolder names to category indices (rules in the module docstring).

    Raises:
        CommandError: a folder matches no category, names an ambiguous one, or wnids cannot be mapped.
    """
    n = len(categories)
    if folders and all(_WNID.fullmatch(f) for f in folders):
        if len(folders) != n:
            raise CommandError(
                f"found {len(folders)} WordNet-id folders, but the weights have {n} categories: their sorted order "
                "gives the indices only when all are present; rename the folders to category indices instead"
            )
        return {f: i for i, f in enumerate(sorted(folders))}
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(categories):
        by_name.setdefault(name, []).append(i)
    mapping = {}
    for folder in folders:
        if folder.isdigit():
            if int(folder) >= n:
                raise CommandError(f"class folder {folder!r}: index out of range (the weights have {n} categories)")
            mapping[folder] = int(folder)
        elif len(by_name.get(folder, ())) == 1:
            mapping[folder] = by_name[folder][0]
        elif folder in by_name:
            raise CommandError(
                f"class folder {folder!r} is ambiguous: categories {' and '.join(map(str, by_name[folder]))} share "
                "that name; name the folder by index"
            )
        else:
            raise CommandError(f"class folder {folder!r} is neither a category index (0..{n - 1}) nor a category name")
    return mapping


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in found if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def find_samples(root: Path, categories: list[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` pairs of a folder of class folders, in sorted order."""
    check_data_dir(root, _LAYOUT)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        hint = (
            ": it holds images directly; for the ImageNet validation layout give their labels with --labels FILE"
            if _images_in(root, recursive=False)
            else " (expected one folder per class)"
        )
        raise CommandError(f"{root}: no class subfolders{hint}")
    mapping = class_indices(folders, categories)
    samples = [(path, mapping[folder]) for folder in folders for path in _images_in(root / folder, recursive=True)]
    if not samples:
        raise CommandError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return samples


def read_labels(path: Path, categories: list[str]) -> tuple[list[int] | None, dict[str, int] | None]:
    """Parse a ground-truth file (forms in the module docstring): ``(labels in order, None)`` for one label per
    line, ``(None, {name: label})`` for ``NAME LABEL`` lines (names also without their suffix).

    Raises:
        CommandError: the file is missing or unreadable, mixes the forms, or holds a label that is no category.
    """
    if "validation_ground_truth" in path.name:
        raise CommandError(
            f"--labels {path}: the ImageNet devkit's ground truth holds 1-based ILSVRC2012 ids, which are not category "
            "indices: map them to WordNet ids with the devkit's meta.mat and give NAME WNID lines instead"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CommandError(f"--labels {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"--labels {path}: cannot read it: {one_line(error)}") from None
    lines = [
        (number, line.replace(",", " ").split())
        for number, raw in enumerate(text.splitlines(), 1)
        if (line := raw.split("#", 1)[0].strip())
    ]
    if not lines:
        raise CommandError(f"--labels {path}: no labels in it")
    widths = {len(tokens) for _, tokens in lines}
    if widths - {1, 2} or len(widths) > 1:
        number, tokens = next((n, t) for n, t in lines if len(t) != len(lines[0][1]) or len(t) > 2)
        raise CommandError(
            f"--labels {path}, line {number}: expected one label per line, or NAME LABEL on every line; "
            f"got {' '.join(tokens)!r}"
        )
    n = len(categories)
    values = [tokens[-1] for _, tokens in lines]
    wnids = sorted(set(values)) if all(_WNID.fullmatch(v) for v in values) else None
    if wnids is not None and len(wnids) != n:
        raise CommandError(
            f"--labels {path}: {len(wnids)} distinct WordNet ids, but the weights have {n} categories: their sorted "
            "order gives the indices only when all are present; use category indices instead"
        )
    order = {wnid: i for i, wnid in enumerate(wnids or ())}
    labels = []
    for (number, _), value in zip(lines, values):
        if wnids is not None:
            labels.append(order[value])
        elif value.isdigit() and int(value) < n:
            labels.append(int(value))
        else:
            raise CommandError(
                f"--labels {path}, line {number}: {value!r} is not a category index (0..{n - 1})"
                + (" or a WordNet id" if _WNID.fullmatch(value) or value.startswith("n") else "")
            )
    if widths == {1}:
        return labels, None
    by_name: dict[str, int] = {}
    for (_, tokens), label in zip(lines, labels):
        by_name[tokens[0]] = label
        by_name.setdefault(Path(tokens[0]).stem, label)
    return None, by_name


def find_labelled(root: Path, labels_file: Path, categories: list[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` pairs of a flat folder of images with a ground-truth file, in sorted order.

    Raises:
        CommandError: no image in the folder, as many labels as images wanted and not given, an image without a
            label (named).
    """
    check_data_dir(root, "with --labels, a flat folder of images")
    images = _images_in(root, recursive=False)
    if not images:
        raise CommandError(
            f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) directly in it (with --labels, DIR is a flat folder of "
            "images such as ILSVRC2012_val_00000001.JPEG)"
        )
    in_order, by_name = read_labels(labels_file, categories)
    if in_order is not None:
        if len(in_order) != len(images):
            raise CommandError(
                f"--labels {labels_file} holds {len(in_order)} labels, one per line, but {root} holds {len(images)} "
                "images: one label per image, in sorted file-name order (or NAME LABEL lines)"
            )
        return list(zip(images, in_order))
    assert by_name is not None
    samples = []
    for image in images:
        label = by_name.get(image.name, by_name.get(image.stem))
        if label is None:
            raise CommandError(f"{image}: no label for it in --labels {labels_file}")
        samples.append((image, label))
    return samples


def _read_both(path: Path) -> tuple[Any, torch.Tensor]:
    """The image as a PIL RGB image and as a uint8 RGB tensor (no EXIF rotation: the reference evaluation has none)."""
    from PIL import Image

    from visionzoo.io import ImageReadMode, read_image

    try:
        with Image.open(path) as im:
            pil = im.convert("RGB")
        return pil, read_image(path, mode=ImageReadMode.RGB)
    except (OSError, ValueError, RuntimeError) as error:
        raise CommandError(f"{path}: cannot read image: {one_line(error)}", 1) from None


def measure(
    model: torch.nn.Module,
    preset: Any,
    samples: list[tuple[Path, int]],
    args: argparse.Namespace,
    device: torch.device,
    skips: Skips,
) -> tuple[dict[str, dict[str, float]], list[int]]:
    """acc@1 and acc@5 (%) of ``model`` on the readable ``samples`` through the PIL and the tensor path of
    ``preset``, and the labels of the samples read."""
    import torch

    from visionzoo.metrics.classification import topk_hits

    hits = {path: Counter() for path in ("PIL", "tensor")}
    scored: list[int] = []
    with progress(args, len(samples), "img") as bar:
        for start in range(0, len(samples), args.batch_size):
            chunk = samples[start : start + args.batch_size]
            read = [(skips.guard(path, lambda p=path: _read_both(p)), label) for path, label in chunk]
            read = [(pair, label) for pair, label in read if pair is not None]
            bar.update(len(chunk))
            if not read:
                continue
            labels = torch.tensor([label for _, label in read])
            for index, name in enumerate(("PIL", "tensor")):
                batch = torch.stack([preset(pair[index]) for pair, _ in read]).to(device)
                found = topk_hits(model(batch).cpu(), labels)
                hits[name].update({f"acc@{k}": n for k, n in found.items()})
            scored += [label for _, label in read]
    total = max(len(scored), 1)
    return {name: {k: 100.0 * c[k] / total for k in ("acc@1", "acc@5")} for name, c in hits.items()}, scored


def evaluate(args: argparse.Namespace, chosen: ChosenWeights) -> int:
    """Score classification weights on ``--data`` (either layout) and report acc@1/acc@5 next to meta's."""
    root = Path(args.data)
    labels = Path(args.labels) if args.labels else None

    def samples_for(categories: list[str]) -> list[tuple[Path, int]]:
        found = find_labelled(root, labels, categories) if labels else find_samples(root, categories)
        return found[: args.limit]

    check_data_dir(root, _LAYOUT)
    # Published weights: their categories name the classes, so layout errors come before any download.
    samples = None if chosen.local else samples_for(list(chosen.entry.meta.get("categories") or []))
    device = device_of(args.device)
    model, preset = build(chosen, args, device)
    if samples is None:  # a checkpoint's head decides the classes; the default entry's names label them if they fit
        outputs = class_count(model, preset)
        samples = samples_for(chosen.categories(outputs) or [str(i) for i in range(outputs)])
    skips = Skips()
    with Timer() as timer:
        measured, scored = measure(model, preset, samples, args, device, skips)
    classes = len(set(scored))
    return report(
        args,
        chosen,
        Scores(
            heading=f"{chosen.label} on {args.data}: {len(scored)} images, {classes} classes",
            measured=measured,
            published=published_of(chosen),
            items=len(scored),
            unit="images",
            seconds=timer.seconds,
            skipped=skips.messages,
            extra={"classes": classes},
        ),
    )
