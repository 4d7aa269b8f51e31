"""``visionzoo predict``: run a pretrained model on files, dispatched by the model's task.

Each task has a :class:`Predictor`: how to turn a batch of inputs into results, and how to print them.
Classification (and quantized classification) is available today; a task that lands later adds its
predictor to ``PREDICTORS``, and every other part of the command (weights resolution, device, batching,
progress, ``--out``, errors) stays as it is. What the registry knows about a task (the builder arguments
its models run with, whether they run on the CPU only) comes from its line in the registry's task list.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import CommandError, device_of, one_line, unavailable

if TYPE_CHECKING:
    import torch

Results = list[dict[str, Any]]


def register(sub: Any) -> None:
    """Add ``predict`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "predict",
        help="run a model on images",
        description="Run a pretrained model on images, in batches. Classification prints the top-k categories "
        "of each image with their probabilities. On Linux the process keeps the memory a batch frees for the "
        "next one (visionzoo.allocator), which spares the page faults of re-allocating it.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="weights entry name (default: DEFAULT) or a local checkpoint path")
    p.add_argument(
        "--num-classes",
        type=int,
        help="outputs of a local checkpoint's head (default: as many as DEFAULT's categories, whose names label them)",
    )
    p.add_argument("--topk", type=int, default=5, help="categories to report per image (default 5)")
    p.add_argument("--threshold", type=float, default=0.0, help="leave out results below this probability")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    p.add_argument("--out", metavar="FILE", help="also write the results to FILE as JSON")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)


@dataclass(frozen=True)
class Predictor:
    """How one task runs: ``run(args, model, preset, categories, device)`` returns one result per input;
    ``show`` prints them."""

    run: Callable[[argparse.Namespace, torch.nn.Module, Callable[..., Any], list[str], torch.device], Results]
    show: Callable[[Results], None]


def read_rgb(path: str) -> torch.Tensor:
    """Decode an image file to a uint8 RGB tensor, with a one-line error naming the file."""
    from visionzoo.io import ImageReadMode, read_image

    try:
        return read_image(path, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except (OSError, ValueError, RuntimeError) as error:
        detail = one_line(error)
        raise CommandError(detail if path in detail else f"{path}: cannot read image: {detail}") from None


def batches(paths: list[str], batch_size: int, quiet: bool) -> Iterator[list[str]]:
    """Yield chunks of paths, with a progress bar on stderr when there is more than one batch."""
    from tqdm import tqdm

    with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=quiet or len(paths) <= batch_size) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            yield chunk
            bar.update(len(chunk))


def classify(
    args: argparse.Namespace,
    model: torch.nn.Module,
    preset: Callable[..., Any],
    categories: list[str],
    device: torch.device,
) -> Results:
    """Top-k categories (with softmax probabilities at least ``--threshold``) of every input image."""
    import torch

    results = []
    with torch.inference_mode():
        for chunk in batches(args.inputs, args.batch_size, args.quiet):
            batch = torch.stack([preset(read_rgb(path)) for path in chunk]).to(device)
            probs = model(batch).float().softmax(dim=1).cpu()
            top = probs.topk(min(args.topk, probs.shape[1]), dim=1)
            for path, values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
                ranked = [
                    {"label": categories[i] if i < len(categories) else str(i), "index": i, "probability": round(p, 4)}
                    for i, p in zip(indices, values)
                ]
                results.append({"image": path, "top": [r for r in ranked if r["probability"] >= args.threshold]})
    return results


def show_classification(results: Results) -> None:
    for result in results:
        print(result["image"])
        if not result["top"]:
            print("  (no category above the threshold)")
        for rank, item in enumerate(result["top"], 1):
            print(f"  {rank}. {item['label']:<30} {item['probability'] * 100:6.2f}%")


PREDICTORS: dict[str, Predictor] = {
    "classification": Predictor(classify, show_classification),
    "quantization": Predictor(classify, show_classification),
}


def _check_arguments(args: argparse.Namespace) -> None:
    if args.topk < 1 or args.batch_size < 1:
        raise CommandError("--topk and --batch-size must be at least 1")
    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be a probability between 0 and 1, got {args.threshold}")
    missing = [path for path in args.inputs if not Path(path).is_file()]
    if missing:
        raise CommandError(
            f"{missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise CommandError(f"--out {args.out}: the directory does not exist")


def cmd_predict(args: argparse.Namespace) -> int:
    from visionzoo import hub
    from visionzoo.allocator import keep_freed_memory
    from visionzoo.models import get_model, get_model_info, get_model_weights
    from visionzoo.models._api import get_task, resolve_weights

    task = get_task(get_model_info(args.model).task)  # unknown model names fail here, with suggestions
    keep_freed_memory()
    predictor = PREDICTORS.get(task.name)
    if predictor is None:
        available = ", ".join(sorted(PREDICTORS))
        raise CommandError(
            f"predict does not handle {task.name} models yet ({args.model}); it handles {available} models"
        )
    _check_arguments(args)
    device = device_of(args.device)
    if task.cpu_only and device.type != "cpu":
        raise CommandError(
            f"{args.model} is a {task.name} model, which runs on the CPU only (not --device {args.device})"
        )
    enum = get_model_weights(args.model)
    weights = resolve_weights(enum, args.weights or "DEFAULT")
    if isinstance(weights, Path) and not weights.is_file():
        raise CommandError(f"{weights}: no such checkpoint file")
    entry = weights if not isinstance(weights, Path) else enum.DEFAULT  # a local checkpoint uses DEFAULT's preset
    categories = list(entry.meta.get("categories") or [])
    config = dict(task.build_kwargs)
    if isinstance(weights, Path):
        config["num_classes"] = args.num_classes or len(categories) or 1000
        if config["num_classes"] != len(categories):
            categories = []  # another head: its outputs have no names
    elif args.num_classes is not None:
        raise CommandError("--num-classes applies to a local checkpoint (--weights PATH) only")
    try:
        model = get_model(args.model, weights=weights, progress=not args.quiet, **config)
    except hub.WeightsUnavailableError as error:
        from .catalog import model_card

        print(model_card(args.model, only=entry), file=sys.stderr)
        print(file=sys.stderr)
        raise unavailable(error, entry) from None
    results = predictor.run(args, model.eval().to(device), entry.transforms(), categories, device)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        predictor.show(results)
    return 0
