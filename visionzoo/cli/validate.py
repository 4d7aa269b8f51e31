"""``visionzoo validate``: re-measure a weights entry's accuracy on a local image folder.

The folder holds one subfolder per class (images anywhere below it). A subfolder names its class by

* the category index, ``0`` ... ``N-1`` (e.g. ``207/``);
* the exact category name from ``meta["categories"]`` (e.g. ``golden retriever/``), unless that name is
  shared by several categories (ImageNet-1k has two "crane" and two "maillot"): use the index there;
* a WordNet id (``n01440764/``), only when every subfolder is one and there are as many as categories:
  then, as in the usual ImageNet layout, their sorted order gives the indices.

Each image goes through the entry's preset twice: as a PIL image and as a uint8 tensor, so both
paths of the preset are checked against the published figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import (
    IMAGE_SUFFIXES,
    ChosenWeights,
    CommandError,
    choose_weights,
    class_count,
    device_of,
    looks_like_path,
    model_info,
    number,
    one_line,
    preset_of,
    table,
)

if TYPE_CHECKING:
    import torch

# The tasks this command scores: their models output one logit per category, measured as acc@1 and acc@5.
SCORED_TASKS = ("classification", "quantization")
_WNID = re.compile(r"n\d{8}")


def register(sub: Any) -> None:
    """Add ``validate`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "validate",
        help="re-measure a weights entry's accuracy on an image folder",
        description="Measure acc@1/acc@5 of WEIGHTS (an entry name such as ResNet50_Weights.IMAGENET1K_V2, a "
        "model name for its DEFAULT, or a checkpoint path with --model) on DIR, through the preset's PIL and tensor paths. DIR has one subfolder "
        "per class, named by category index (0..N-1), exact category name, or WordNet id (all N of them). On "
        "Linux the process keeps the memory a batch frees for the next one (visionzoo.allocator).",
    )
    p.add_argument("weights", metavar="WEIGHTS", help="an entry name, a model name (its DEFAULT) or a checkpoint path")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--model", help="the model a checkpoint path is for")
    p.add_argument("--num-classes", type=int, help="outputs of a checkpoint's head (default: read from it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, help="use at most this many images (the first in sorted order)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("detection")
    g.add_argument("--annotations", metavar="FILE", help="the COCO annotation JSON of the images in --data")
    g.add_argument("--results", metavar="FILE", help="also write the detections as a COCO results JSON")
    p.set_defaults(func=cmd_validate)


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


def check_data_dir(root: Path) -> None:
    """Raises CommandError unless ``root`` is an existing directory (a file is named as such)."""
    if root.is_file():
        raise CommandError(f"--data {root} is a file; it must be a directory with one subfolder per class")
    if not root.is_dir():
        raise CommandError(f"{root}: no such directory")


def find_samples(root: Path, categories: list[str]) -> list[tuple[Path, int]]:
    """``(image path, label)`` pairs under ``root``, in sorted order."""
    check_data_dir(root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CommandError(f"{root}: no class subfolders (expected one folder per class)")
    mapping = class_indices(folders, categories)
    samples = [
        (path, mapping[folder])
        for folder in folders
        for path in sorted((root / folder).rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    if not samples:
        raise CommandError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    return samples


def _read_both(path: Path) -> tuple[Any, torch.Tensor]:
    """The image as a PIL RGB image and as a uint8 RGB tensor (no EXIF rotation: the reference evaluation has none)."""
    from PIL import Image

    from visionzoo.io import ImageReadMode, read_image

    try:
        with Image.open(path) as im:
            pil = im.convert("RGB")
        return pil, read_image(path, mode=ImageReadMode.RGB)
    except (OSError, ValueError) as error:
        raise CommandError(f"{path}: cannot read image: {one_line(error)}") from None


def measure(
    model: torch.nn.Module, preset: Any, samples: list[tuple[Path, int]], args: argparse.Namespace, device: torch.device
) -> dict[str, dict[str, float]]:
    """acc@1 and acc@5 (%) of ``model`` on ``samples`` through the PIL and the tensor path of ``preset``."""
    import torch
    from tqdm import tqdm

    hits = {path: Counter() for path in ("PIL", "tensor")}
    with (
        torch.inference_mode(),
        tqdm(total=len(samples), unit="img", file=sys.stderr, disable=args.quiet or None) as bar,
    ):
        for start in range(0, len(samples), args.batch_size):
            chunk = samples[start : start + args.batch_size]
            images = [_read_both(path) for path, _ in chunk]
            labels = torch.tensor([label for _, label in chunk])
            for index, name in enumerate(("PIL", "tensor")):
                batch = torch.stack([preset(pair[index]) for pair in images]).to(device)
                logits = model(batch).cpu()
                top = logits.topk(min(5, logits.shape[1]), dim=1).indices
                correct = top == labels[:, None]
                hits[name]["acc@1"] += int(correct[:, 0].sum())
                hits[name]["acc@5"] += int(correct.any(dim=1).sum())
            bar.update(len(chunk))
    return {name: {k: 100.0 * v / len(samples) for k, v in sorted(c.items())} for name, c in hits.items()}


def _choose(args: argparse.Namespace) -> ChosenWeights:
    """The weights the positional WEIGHTS names: an entry, a model's DEFAULT, or a checkpoint (with --model)."""
    from visionzoo.models import get_weight

    if looks_like_path(args.weights):
        if args.model is None:
            raise CommandError(f"{args.weights} is a checkpoint path: say which model it is for with --model")
        return choose_weights(args.model, args.weights, args.num_classes)
    if args.model is not None:
        raise CommandError("--model goes with a checkpoint path; an entry or model name already names the model")
    if "." in args.weights:
        entry = get_weight(args.weights)  # raises for unknown names, with suggestions
        return choose_weights(_models_of(entry)[0], repr(entry), args.num_classes)
    info = model_info(args.weights)
    if info.weights_enum is None or "DEFAULT" not in info.weights_enum.__members__:
        raise CommandError(f"{args.weights} has no pretrained weights to validate")
    return choose_weights(info.name, "DEFAULT", args.num_classes)


def cmd_validate(args: argparse.Namespace) -> int:
    from visionzoo.allocator import keep_freed_memory
    from visionzoo.models._api import get_task

    from ._catalog import flat_metrics

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise CommandError("--batch-size and --limit must be at least 1")
    chosen = _choose(args)
    task = get_task(chosen.task)
    if task.name == "detection":  # COCO data: box, mask and keypoint mAP (cli/_eval_detection.py)
        from ._eval_detection import evaluate

        keep_freed_memory()
        return evaluate(args, chosen)
    if task.name not in SCORED_TASKS:
        raise CommandError(f"validate handles classification weights only, not {task.name} ({chosen.label})")
    device = device_of(args.device)
    if task.cpu_only and device.type != "cpu":
        raise CommandError(
            f"{chosen.label} are {task.name} weights, which run on the CPU only (not --device {args.device})"
        )
    root = Path(args.data)
    check_data_dir(root)
    # Published weights: their categories name the classes, so folder errors come before any download.
    samples = (
        None if chosen.local else find_samples(root, list(chosen.entry.meta.get("categories") or []))[: args.limit]
    )
    keep_freed_memory()
    model = chosen.build(progress=not args.quiet).to(device)
    preset = preset_of(chosen, model)
    if samples is None:  # a checkpoint's head decides the classes; the default entry's names label them if they fit
        outputs = class_count(model, preset)
        samples = find_samples(root, chosen.categories(outputs) or [str(i) for i in range(outputs)])[: args.limit]
    measured = measure(model, preset, samples, args, device)
    published = {} if chosen.local else flat_metrics(chosen.entry)
    if args.json:
        print(
            json.dumps(
                {"weights": chosen.label, "images": len(samples), "measured": measured, "meta": published}, indent=2
            )
        )
        return 0
    classes = len({label for _, label in samples})
    print(f"{chosen.label} on {args.data}: {len(samples)} images, {classes} classes")
    rows = [["metric", "PIL", "tensor", "meta"]]
    rows += [
        [k, number(measured["PIL"][k]), number(measured["tensor"][k]), number(published.get(k))]
        for k in ("acc@1", "acc@5")
    ]
    print(table(rows, "lrrr"))
    return 0


def _models_of(entry: Any) -> list[str]:
    """The registered models whose weights enum holds ``entry``."""
    from visionzoo.models import get_model_weights, list_models

    found = []
    for name in list_models():
        try:
            if get_model_weights(name) is type(entry):
                found.append(name)
        except ValueError:
            continue
    if not found:
        raise CommandError(f"no registered model uses {entry!r}")
    return found
