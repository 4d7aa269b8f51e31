"""``visionzoo export``: write a model with its weights as a ``torch.export`` program (``.pt2``) or an ONNX file.

The input size defaults to what the weights' preset feeds the model (classification: the crop; segmentation: the
resize; video: the crop and the clip length the weights were evaluated with); ``--input-size`` overrides it and
``--dynamic`` keeps the batch (and the sizes the architecture allows) free. The file records which model and
weights it holds and their preset (a ``visionzoo.json`` extra file in ``.pt2`` programs, model metadata in ONNX
files), so ``visionzoo predict --model FILE.pt2`` prepares images as the weights expect.

Detectors export at one image size (their resize specialises on it; default: the shorter side their transform
resizes to, 4:3 landscape); the number of detections stays decided at run time. Mask and Keypoint R-CNN export
to ``.pt2`` only (their mask pasting and keypoint decoding have no ONNX form). The quantized (int8) models do
not export yet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import CommandError, choose_weights, model_info, one_line, preset_of

if TYPE_CHECKING:
    import torch

    from ._common import ChosenWeights

FORMATS = ("pt2", "onnx")
# The extra file of a .pt2 program (the metadata key of an ONNX file) that describes what it holds.
RECORD = "visionzoo.json"
EXPORTABLE_TASKS = ("classification", "segmentation", "detection", "video", "optical_flow")
# Optical flow presets keep the frames' size: the size exported when --input-size is not given.
FLOW_SIZE = (520, 960)
FLOW_UPDATES = 12


def register(sub: Any) -> None:
    """Add ``export`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "export",
        help="export a model to a torch.export program (.pt2) or ONNX",
        description="Export a model with its weights for deployment: --format pt2 writes a torch.export program "
        "(torch.export.save; load it with torch.export.load, run it with `visionzoo predict --model FILE.pt2`), "
        "--format onnx an ONNX file (needs `pip install visionzoo[deploy]`). The input size is the one the weights' "
        f"preset produces unless --input-size says otherwise. Handles {', '.join(EXPORTABLE_TASKS)} models.",
    )
    p.add_argument("model")
    p.add_argument(
        "--weights", help="weights entry name (default: DEFAULT), a local checkpoint path, or none (random weights)"
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (.pt2 or .onnx)")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="keep the batch size, and the height and width where the model allows it, free in the export",
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        metavar="SIZE",
        help="H W, or one N for N x N (default: the weights' preset size; ViT and MaxViT take their fixed size)",
    )
    p.add_argument("--clip-len", type=int, help="video: frames per clip (default: the weights' evaluation setting)")
    p.add_argument("--flow-updates", type=int, default=FLOW_UPDATES, help="optical flow: refinement steps")
    p.set_defaults(func=cmd_export)


def _weights_choice(model: str, weights: str | None) -> ChosenWeights:
    info = model_info(model)
    if info.task not in EXPORTABLE_TASKS:
        raise CommandError(
            f"export does not handle {info.task} models yet ({info.name}); it handles "
            f"{', '.join(EXPORTABLE_TASKS)} models"
            + ("; export the float model instead" if info.task == "quantization" else "")
        )
    if weights is not None and weights.lower() == "none":
        chosen = choose_weights(info.name, None, default=None)
        if info.task in ("segmentation", "detection"):  # random weights throughout: no pretrained backbone either
            chosen.config["weights_backbone"] = None
        return chosen
    return choose_weights(info.name, weights, default="DEFAULT" if info.weights_enum is not None else None)


def _check_arguments(args: argparse.Namespace, task: str) -> None:
    """Refuse bad sizes and options of other tasks before any work (a download, a build)."""
    if args.input_size is not None and (len(args.input_size) not in (1, 2) or min(args.input_size) < 1):
        raise CommandError(f"--input-size takes H W or one N (positive), got {' '.join(map(str, args.input_size))}")
    if args.clip_len is not None and task != "video":
        raise CommandError(f"--clip-len applies to video models only, not {task} models")
    if args.clip_len is not None and args.clip_len < 1:
        raise CommandError(f"--clip-len must be at least 1, got {args.clip_len}")
    if args.flow_updates < 1:
        raise CommandError(f"--flow-updates must be at least 1, got {args.flow_updates}")


def _preset_size(preset: Any) -> tuple[int, int] | None:
    for attr in ("crop_size", "resize_size"):
        size = getattr(preset, attr, None)
        if size:
            return (int(size[0]), int(size[-1]))
    return None


def _input_size(
    args: argparse.Namespace, chosen: ChosenWeights, model: torch.nn.Module, preset: Any
) -> tuple[int, int]:
    fixed = getattr(model, "input_size", None)
    if args.input_size is not None:
        size = (args.input_size[0], args.input_size[-1])
        if fixed is not None and tuple(fixed) != size:
            raise CommandError(
                f"{chosen.model} takes {fixed[0]}x{fixed[1]} inputs only, not --input-size {size[0]} {size[1]}"
            )
        return size
    if fixed is not None:
        return (int(fixed[0]), int(fixed[1]))
    if chosen.task == "optical_flow":
        return FLOW_SIZE
    if chosen.task == "detection":
        return _detection_size(model)
    size = _preset_size(preset)
    if size is None:
        raise CommandError(f"the preset of {chosen.label} fixes no input size; give --input-size H W")
    return size


def _detection_size(model: torch.nn.Module) -> tuple[int, int]:
    """A 4:3 landscape image the detector's transform keeps at its size: SSD's fixed size, else the shorter side
    it resizes to in eval mode and the width that gives, within its ``max_size``."""
    transform = model.transform
    if transform.fixed_size is not None:
        width, height = transform.fixed_size
        return (int(height), int(width))
    height = int(transform.min_size[-1])
    return (height, min(int(transform.max_size), round(height * 4 / 3)))


def _example(args: argparse.Namespace, chosen: ChosenWeights, size: tuple[int, int]) -> tuple[Any, dict[str, Any]]:
    """The example input (a tensor, or the frame pair of a flow model) and the forward's constant kwargs."""
    import torch

    if chosen.task == "video":
        from ._video import DEFAULT_CLIP_LEN, clip_setting

        meta = chosen.entry.meta if chosen.entry is not None else {}
        clip_len = args.clip_len or int(clip_setting(meta, "clip_len") or DEFAULT_CLIP_LEN)
        return torch.rand(1, 3, clip_len, *size), {}
    if chosen.task == "optical_flow":
        return (torch.rand(1, 3, *size), torch.rand(1, 3, *size)), {"num_flow_updates": args.flow_updates}
    if chosen.task == "detection":  # one argument: the list of images
        return ([torch.rand(3, *size)],), {}
    return torch.rand(1, 3, *size), {}


def preset_record(preset: Any) -> dict[str, Any]:
    """The arguments that rebuild ``preset`` (its public size and normalisation settings)."""
    record: dict[str, Any] = {"class": type(preset).__name__}
    for attr in ("crop_size", "resize_size", "mean", "std", "antialias"):
        if hasattr(preset, attr):
            value = getattr(preset, attr)
            record[attr] = list(value) if isinstance(value, (list, tuple)) else value
    interpolation = getattr(preset, "interpolation", None)
    if interpolation is not None:
        record["interpolation"] = getattr(interpolation, "value", str(interpolation))
    return record


def _record(
    chosen: ChosenWeights, preset: Any, example: Any, kwargs: dict[str, Any], dynamic: bool, fmt: str
) -> dict[str, Any]:
    import torch

    from visionzoo import __version__

    args = [example] if isinstance(example, torch.Tensor) else list(example)
    inputs = [t for a in args for t in ([a] if isinstance(a, torch.Tensor) else a)]
    categories = chosen.category_names()
    return {
        "format": fmt,
        "model": chosen.model,
        "task": chosen.task,
        "weights": None if chosen.weights is None else str(chosen.weights) if chosen.local else repr(chosen.weights),
        "preset": preset_record(preset),
        "input_shapes": [list(t.shape) for t in inputs],
        "dynamic": dynamic,
        "forward_kwargs": kwargs,
        "categories": categories,
        "visionzoo": __version__,
    }


def cmd_export(args: argparse.Namespace) -> int:
    import sys

    from visionzoo import deploy

    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out}: a directory; name the .{args.format} file to write")
    if not out.resolve().parent.is_dir():
        raise CommandError(f"--out {out}: the directory does not exist")
    if out.suffix.lower() != f".{args.format}":
        raise CommandError(f"--out {out}: --format {args.format} writes a .{args.format} file")
    chosen = _weights_choice(args.model, args.weights)
    _check_arguments(args, chosen.task)
    model = chosen.build(progress=True)
    preset = preset_of(chosen, model)
    size = _input_size(args, chosen, model, preset)
    example, kwargs = _example(args, chosen, size)
    record = _record(chosen, preset, example, kwargs, args.dynamic, args.format)
    try:
        if args.format == "pt2":
            import torch

            program = deploy.export_program(model, example, dynamic=args.dynamic, **kwargs)
            deviation = deploy.check_program(model, program, example, **kwargs)
            torch.export.save(program, out, extra_files={RECORD: json.dumps(record)})
        else:
            if kwargs:
                raise CommandError(f"--format onnx does not handle {chosen.task} models yet; use --format pt2")
            deploy.export_onnx(model, example, out, dynamic=args.dynamic)
            _add_onnx_metadata(out, record)
            deviation = deploy.check_onnx(model, out, example)
    except ImportError as error:
        raise CommandError(one_line(error), status=1) from None
    except ValueError as error:  # an operator without an ONNX form
        raise CommandError(one_line(error)) from None
    shape = " and ".join("x".join(map(str, s)) for s in record["input_shapes"])
    free = " (batch and sizes free where the model allows)" if args.dynamic else ""
    print(f"{out}: {chosen.model} with {record['weights'] or 'random weights'}, input {shape}{free}")
    print(f"visionzoo: checked against the eager model: max abs deviation {deviation:.2e}", file=sys.stderr)
    return 0


def _add_onnx_metadata(path: Path, record: dict[str, Any]) -> None:
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {RECORD: json.dumps(record)})
    onnx.save(proto, str(path))


def load_program(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The exported program in ``path`` (a ``.pt2`` written by ``visionzoo export``) and its record.

    Raises:
        CommandError: the file is missing, unreadable, or was not written by ``visionzoo export``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such exported program", status=1)
    extra = {RECORD: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as error:  # torch.export.load raises several kinds on a file that is not a program
        raise CommandError(f"{path}: cannot load the exported program: {one_line(error)}", status=1) from None
    if not extra[RECORD]:
        raise CommandError(f"{path}: not written by `visionzoo export` (no {RECORD} inside), so its preset is unknown")
    return program, json.loads(extra[RECORD])


def preset_from_record(record: dict[str, Any]) -> Any:
    """The preset an exported program's images need: its weights entry's, else the one its record describes.

    Raises:
        CommandError: the record holds no classification, segmentation or detection preset.
    """
    from visionzoo.models import get_weight

    weights = record.get("weights")
    if isinstance(weights, str) and "_Weights." in weights:
        try:
            return get_weight(weights).transforms()
        except ValueError:
            pass  # an entry this version does not know: the recorded settings describe its preset
    settings = dict(record.get("preset") or {})
    kind = settings.pop("class", None)
    if kind not in ("ImageClassification", "SemanticSegmentation", "ObjectDetection"):
        raise CommandError(
            "the exported program's record holds no classification, segmentation or detection preset "
            f"({record.get('preset')})"
        )
    from visionzoo.transforms import ImageClassification, ObjectDetection, SemanticSegmentation
    from visionzoo.transforms.functional import InterpolationMode

    if kind == "ObjectDetection":  # the images as float tensors in [0, 1]; the detector normalises them itself
        return ObjectDetection()

    if kind == "SemanticSegmentation":
        resize = settings.get("resize_size")
        return SemanticSegmentation(
            resize_size=resize[0] if resize else None,
            mean=settings["mean"],
            std=settings["std"],
            interpolation=InterpolationMode(settings.get("interpolation", "bilinear")),
            antialias=settings.get("antialias", True),
        )
    return ImageClassification(
        crop_size=settings["crop_size"][0],
        resize_size=settings["resize_size"][0],
        mean=settings["mean"],
        std=settings["std"],
        interpolation=InterpolationMode(settings.get("interpolation", "bilinear")),
        antialias=settings.get("antialias", True),
    )
