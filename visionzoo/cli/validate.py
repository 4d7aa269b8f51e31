"""``visionzoo validate``: re-measure a weights entry's published figures on the user's own copy of its dataset.

One evaluator per task, each in its own module, served through :data:`EVALUATORS`; what they share (the weights
choice, ``--data``, ``--limit``, ``--batch-size``, ``--device``, ``--json``, ``--quiet``, the progress bar and its
rate, skipping unreadable items, the table of measured against published figures) lives here and in
:mod:`visionzoo.cli._evaluate`.

* classification, quantization (``_eval_classification``): acc@1/acc@5 on a folder of class folders, or on the
  ImageNet validation layout with ``--labels FILE``;
* segmentation (``_eval_segmentation``): mean IoU and pixel accuracy on the Pascal VOC layout;
* video (``_eval_video``): video- and clip-level acc@1/acc@5 on the Kinetics layout (class folders of clips);
* optical_flow (``_eval_flow``): end-point error, 1/3/5-pixel rates and Fl-all on Sintel or KITTI-2015;
* detection (``_eval_detection``): COCO mAP from an image folder and ``--annotations FILE``.

A task module exposes ``evaluate(args, chosen) -> int`` (the exit status); ``args`` are this command's
arguments, ``chosen`` the :class:`~visionzoo.cli._common.ChosenWeights`.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ._common import ChosenWeights, CommandError, choose_weights, device_of, looks_like_path, model_info

# task -> the module (in visionzoo.cli) whose ``evaluate(args, chosen)`` scores its weights.
# Images (video: clips) per forward. Detection scores one image at a time, as the reference does: a batch is padded
# to its largest image, which moves the detections slightly.
DEFAULT_BATCH_SIZE = 32
DETECTION_BATCH_SIZE = 1
EVALUATORS: dict[str, str] = {
    "classification": "_eval_classification",
    "quantization": "_eval_classification",
    "segmentation": "_eval_segmentation",
    "video": "_eval_video",
    "optical_flow": "_eval_flow",
    "detection": "_eval_detection",
}


def register(sub: Any) -> None:
    """Add ``validate`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "validate",
        help="re-measure a weights entry's published figures on your copy of its dataset",
        description="Measure WEIGHTS (an entry name such as ResNet50_Weights.IMAGENET1K_V2, a model name for its "
        "DEFAULT, or a checkpoint path with --model) on the dataset in DIR, as the reference evaluates it, and "
        "print the figures next to the published ones. Layouts by task: classification: one subfolder per class "
        "(named by category index 0..N-1, exact category name, or WordNet id, all N of them), or a flat folder of "
        "images with --labels FILE (the ImageNet validation layout), through the preset's PIL and tensor paths; "
        "segmentation: Pascal VOC (JPEGImages/, SegmentationClass/ class-index PNGs, optional "
        "ImageSets/Segmentation/SPLIT.txt); video: one subfolder of clips per class (the Kinetics layout); "
        "optical flow: Sintel (training/clean|final/SCENE/frame_NNNN.png, training/flow/SCENE/*.flo) or KITTI-2015 "
        "(training/image_2/*_10.png, *_11.png, training/flow_occ/*_10.png); detection: an image folder with "
        "--annotations FILE (COCO JSON). An item that cannot be decoded is reported, counted and skipped. On Linux "
        "the process keeps the memory a batch frees for the next one (visionzoo.allocator).",
    )
    p.add_argument("weights", metavar="WEIGHTS", help="an entry name, a model name (its DEFAULT) or a checkpoint path")
    p.add_argument("--data", required=True, metavar="DIR", help="the dataset's directory (layouts above)")
    p.add_argument("--model", help="the model a checkpoint path is for")
    p.add_argument("--num-classes", type=int, help="outputs of a checkpoint's head (default: read from it)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="images (video: clips) per forward (default 32; detection 1, as the reference evaluates: a batch is "
        "padded to a common size, which moves detections slightly)",
    )
    p.add_argument("--limit", type=int, help="use at most this many items (the first in sorted order)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("classification")
    g.add_argument(
        "--labels",
        metavar="FILE",
        help="ground truth of a flat image folder: one category index per line (sorted file-name order) or "
        "NAME INDEX lines; WordNet ids instead of indices when all N are used",
    )
    g = p.add_argument_group("segmentation")
    g.add_argument(
        "--split",
        help="use the names in ImageSets/Segmentation/SPLIT.txt (default: val.txt when present, else every mask)",
    )
    g = p.add_argument_group("video")
    g.add_argument(
        "--clips-per-video",
        type=int,
        help="clips per video, uniformly spaced (default: as the weights were evaluated, else 5)",
    )
    g.add_argument("--clip-len", type=int, help="frames per clip (default: as the weights were evaluated, else 16)")
    g.add_argument(
        "--frame-rate", type=float, help="resample videos to this rate (default: as the weights were evaluated)"
    )
    g = p.add_argument_group("optical flow")
    g.add_argument("--pass", dest="sintel_pass", choices=("clean", "final"), default="clean", help="Sintel's pass")
    g.add_argument(
        "--num-flow-updates",
        type=int,
        help="refinement steps (default: as the reference evaluates, 32 on Sintel, 24 on KITTI)",
    )
    g = p.add_argument_group("detection")
    g.add_argument("--annotations", metavar="FILE", help="the COCO annotation JSON of the images in --data")
    g.add_argument("--results", metavar="FILE", help="also write the detections as a COCO results JSON")
    p.set_defaults(func=cmd_validate)


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


def evaluator_for(task: str) -> Any:
    """The ``evaluate(args, chosen)`` function of ``task``'s evaluator module.

    Raises:
        CommandError: no evaluator for the task, or its module is not part of this installation.
    """
    name = EVALUATORS.get(task)
    if name is None:
        raise CommandError(f"validate has no evaluator for {task} weights")
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.{name}":
            raise
        raise CommandError(
            f"validate cannot score {task} weights in this installation ({error.name} is missing)"
        ) from None
    return module.evaluate


def cmd_validate(args: argparse.Namespace) -> int:
    from visionzoo.allocator import keep_freed_memory
    from visionzoo.models._api import get_task

    if (args.batch_size is not None and args.batch_size < 1) or (args.limit is not None and args.limit < 1):
        raise CommandError("--batch-size and --limit must be at least 1")
    for flag in ("clips_per_video", "clip_len", "num_flow_updates"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CommandError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.frame_rate is not None and not args.frame_rate > 0:
        raise CommandError("--frame-rate must be positive")
    chosen = _choose(args)
    task = get_task(chosen.task)
    if args.batch_size is None:
        args.batch_size = DETECTION_BATCH_SIZE if task.name == "detection" else DEFAULT_BATCH_SIZE
    evaluate = evaluator_for(task.name)
    device = device_of(args.device)
    if task.cpu_only and device.type != "cpu":
        raise CommandError(
            f"{chosen.label} are {task.name} weights, which run on the CPU only (not --device {args.device})"
        )
    keep_freed_memory()
    return evaluate(args, chosen)


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
