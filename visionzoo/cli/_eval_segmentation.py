"""``visionzoo validate`` for semantic segmentation weights: mean IoU and pixel accuracy on the Pascal VOC layout.

``--data DIR`` holds ``JPEGImages/NAME.jpg`` and ``SegmentationClass/NAME.png``, the masks as class-index PNGs
(palette PNGs as VOC ships them: the palette index is the class, whatever its colour; or 8-bit grayscale), 255
marking pixels left out. ``ImageSets/Segmentation/SPLIT.txt`` (``--split``; by default ``val``) lists the names to
use; without that folder (and without ``--split``) every mask is used.

The protocol is the reference's for the COCO-with-VOC-labels weights: the image goes through the weights' preset
(its shorter side resized to 520), the mask is resized to the same size with nearest neighbours, and the argmax of
the model's ``out`` scores fills a confusion matrix over its classes (:mod:`visionzoo.metrics.segmentation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ChosenWeights, CommandError, device_of, one_line
from ._evaluate import Scores, Skips, Timer, build, check_data_dir, progress, published_of, report

if TYPE_CHECKING:
    import torch

_LAYOUT = "the Pascal VOC layout: JPEGImages/, SegmentationClass/, optionally ImageSets/Segmentation/"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# PIL modes of class-index masks: palette, 8-bit grayscale, 32-bit integer.
_INDEX_MODES = ("P", "L", "I")


def find_pairs(root: Path, split: str | None) -> list[tuple[Path, Path]]:
    """``(image, mask)`` paths of a VOC-layout directory, in the split file's order (else sorted by name);
    ``split`` None: ``val`` when its list exists, else every mask.

    Raises:
        CommandError: a folder or the split file is missing, or a listed name has no image or no mask (named).
    """
    check_data_dir(root, _LAYOUT)
    images, masks = root / "JPEGImages", root / "SegmentationClass"
    for folder in (images, masks):
        if not folder.is_dir():
            raise CommandError(f"{folder}: no such directory ({root} must have {_LAYOUT})")
    lists = root / "ImageSets" / "Segmentation"
    split_file = lists / f"{split or 'val'}.txt"
    if split is not None and not lists.is_dir():
        raise CommandError(f"{lists}: no such directory (--split {split} names a list in it)")
    if split_file.is_file():
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not names:
            raise CommandError(f"{split_file}: no image names in it")
    elif lists.is_dir():
        present = ", ".join(sorted(p.stem for p in lists.glob("*.txt"))) or "none"
        given = f"--split {split}" if split is not None else "the default list; choose one with --split"
        raise CommandError(f"{split_file}: no such file ({given}; the lists there: {present})")
    else:
        names = sorted(p.stem for p in masks.glob("*.png"))
        if not names:
            raise CommandError(f"{masks}: no masks (.png) in it")
    pairs = []
    for name in names:
        image = next((images / (name + s) for s in _IMAGE_SUFFIXES if (images / (name + s)).is_file()), None)
        if image is None:
            raise CommandError(f"{images / (name + '.jpg')}: no such image (the mask or list names {name!r})")
        mask = masks / f"{name}.png"
        if not mask.is_file():
            raise CommandError(f"{mask}: no such mask (the image {image.name} has no class-index PNG)")
        pairs.append((image, mask))
    return pairs


def read_pair(image_path: Path, mask_path: Path) -> tuple[Any, Any]:
    """The image (PIL, RGB) and its mask (PIL, class indices).

    Raises:
        CommandError: a file does not decode (status 1, the item is then skipped); the mask holds colours rather
            than class indices, or its size differs from the image's (status 2, stops the run).
    """
    from PIL import Image

    try:
        with Image.open(image_path) as im:
            image = im.convert("RGB")
    except (OSError, ValueError) as error:
        raise CommandError(f"{image_path}: cannot read image: {one_line(error)}", 1) from None
    try:
        with Image.open(mask_path) as im:
            im.load()
            mask = im
    except (OSError, ValueError) as error:
        raise CommandError(f"{mask_path}: cannot read mask: {one_line(error)}", 1) from None
    if mask.mode not in _INDEX_MODES:
        raise CommandError(
            f"{mask_path}: a {mask.mode} image; masks must hold class indices (a palette or 8-bit grayscale PNG, "
            "as VOC's SegmentationClass), not colours",
            2,
        )
    if mask.size != image.size:
        raise CommandError(
            f"{mask_path}: {mask.size[0]}x{mask.size[1]} pixels, but its image {image_path.name} has "
            f"{image.size[0]}x{image.size[1]}",
            2,
        )
    return image, mask


def _target(mask: Any, size: tuple[int, int]) -> torch.Tensor:
    """The mask's class indices resized (nearest neighbour, as the reference) to ``size`` = (height, width)."""
    import numpy as np
    import torch
    from PIL import Image

    resized = mask.resize((size[1], size[0]), Image.NEAREST)
    return torch.from_numpy(np.asarray(resized, dtype=np.int64).copy())


def evaluate(args: argparse.Namespace, chosen: ChosenWeights) -> int:
    """Score segmentation weights on a VOC-layout ``--data`` and report mIoU and pixel accuracy next to meta's."""
    import torch

    from visionzoo.metrics.segmentation import ConfusionMatrix

    root = Path(args.data)
    pairs = find_pairs(root, args.split)[: args.limit]
    device = device_of(args.device)
    model, preset = build(chosen, args, device)
    skips = Skips()
    matrix: ConfusionMatrix | None = None
    scored = 0
    pending: list[tuple[Path, torch.Tensor, torch.Tensor]] = []  # mask path, input, target

    def flush() -> None:
        nonlocal matrix, scored
        scores = model(torch.stack([x for _, x, _ in pending]).to(device))["out"]
        if matrix is None:
            matrix = ConfusionMatrix(scores.shape[1])
        for (mask_path, _, target), predicted in zip(pending, scores.argmax(dim=1).cpu()):
            try:
                matrix.update(target, predicted)
            except ValueError as error:
                raise CommandError(f"{mask_path}: {one_line(error)}") from None
        scored += len(pending)
        pending.clear()

    with Timer() as timer, progress(args, len(pairs), "img") as bar:
        for image_path, mask_path in pairs:
            read = skips.guard(image_path, lambda i=image_path, m=mask_path: read_pair(i, m))
            bar.update(1)
            if read is None:
                continue
            x = preset(read[0])
            if pending and (len(pending) == args.batch_size or pending[0][1].shape != x.shape):
                flush()  # the preset keeps aspect ratios: only same-sized inputs share a forward
            pending.append((mask_path, x, _target(read[1], tuple(x.shape[-2:]))))
        if pending:
            flush()
    measured = matrix.compute() if matrix is not None else {"miou": float("nan"), "pixel_acc": float("nan")}
    extra: dict[str, Any] = {}
    if matrix is not None:
        names = list(chosen.entry.meta.get("categories") or []) if chosen.entry is not None else []
        names = names if len(names) == matrix.num_classes else [str(i) for i in range(matrix.num_classes)]
        extra = {"iou": {name: None if v != v else v for name, v in zip(names, matrix.iou().tolist())}}
    return report(
        args,
        chosen,
        Scores(
            heading=f"{chosen.label} on {args.data}: {scored} images"
            + (f", {matrix.pixels} pixels scored" if matrix is not None else ""),
            measured={"measured": measured},
            published=published_of(chosen),
            items=scored,
            unit="images",
            seconds=timer.seconds,
            skipped=skips.messages,
            extra=extra,
        ),
    )
