"""``visionzoo predict``: run a model on image files and folders, dispatched by the model's task.

Each task has a :class:`Predictor`: how to turn a batch of images into results, how to print them, and either
how to flatten them into CSV rows (``--out FILE``) or, for tasks that draw, that it writes one picture per
input (``--out DIR``). Classification, quantized classification, segmentation (``_segmentation.py``),
detection (``_detection.py``) and optical flow (``_flow.py``, which reads its inputs as pairs of frames) are
available; a task that lands later adds its predictor to ``PREDICTORS``, and
every other part of the command (weights resolution, device, reading and batching inputs, failures, progress,
``--out``) stays as it is. Video classification (``_video.py``) reads whole files itself, one at a time.

An input that cannot be read is reported on stderr with its reason and skipped (``--strict`` stops there
instead); the others are predicted, a count ends the run, and the exit status is 1 when any input failed.

With ``--out FILE.jsonl`` results are written as they come and a rerun predicts only the inputs not yet in the file
(``_jsonl.py``); launched with torchrun, the inputs are shared out among the processes, each writes its part and
rank 0 merges them (``visionzoo.distributed`` reads the world).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionzoo.distributed import BACKENDS

from ._common import IMAGE_SUFFIXES, CommandError, choose_weights, device_of, model_info, one_line, preset_of
from ._detection import DEFAULT_THRESHOLD, detect, exported_detector, show_detection
from ._flow import DEFAULT_UPDATES, PAIRINGS, check_flow_out, count_pairs, estimate_flows, show_flow
from ._optimize import OPTIMIZABLE_TASKS, OptimisedOnFirstBatch, add_dtype_argument, check_dtype
from ._segmentation import PictureNames, segment, show_segmentation
from ._video import VIDEO_SUFFIXES, classify_videos, show_video, video_rows

if TYPE_CHECKING:
    import torch

    from ._common import ChosenWeights

Results = list[dict[str, Any]]
# --out formats by suffix; one JSON document, one JSON object per line, or one CSV row per reported category.
OUT_FORMATS = (".json", ".jsonl", ".csv")
# Where tasks that draw write their pictures without --out (relative to the current directory).
DEFAULT_PICTURES = "predictions"


def register(sub: Any) -> None:
    """Add ``predict`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "predict",
        help="run a model on images",
        description="Run a pretrained model on images (files, or folders of them), in batches. Classification "
        "prints the top-k categories of each image with their probabilities. Segmentation prints each class's "
        "share of the pixels and writes a PNG per image (the classes found coloured over the picture, a legend "
        "under it) into --out DIR, named <image stem>.<model>.png. Detection prints each object found (class, "
        "score, box as x1, y1, x2, y2 in pixels) and writes a PNG per image with the boxes and labels drawn, "
        "likewise. Video classification prints the top categories of each clip (of the model's length, at the frame rate "
        "its weights were evaluated at) with its time range, and of the whole video. An unreadable input is reported "
        "and skipped. Optical flow takes the images as pairs of frames (see --pairs), prints each pair's motion and "
        "writes its flow as a colour-coded PNG (hue: direction, saturation: length) named after the first frame, "
        "or, with --out FILE.flo and one pair, the flow itself to FILE.flo and its picture to FILE.png. An "
        "unreadable input is reported and skipped; the exit status is then 1. On Linux the process "
        "keeps the memory a batch frees for the next one (visionzoo.allocator), which spares the page faults of "
        "re-allocating it.",
    )
    p.add_argument(
        "inputs", nargs="*", metavar="IMAGE", help="image files (video files for video models), or folders holding them"
    )
    p.add_argument(
        "--list",
        metavar="FILE",
        help="also predict the files (or folders) listed in FILE, one per line; relative paths are relative to "
        "FILE's folder; blank lines and lines starting with # are ignored",
    )
    p.add_argument(
        "--model", required=True, help="a model name, or a .pt2 program written by `visionzoo export` (classification)"
    )
    p.add_argument("--weights", help="weights entry name (default: DEFAULT) or a local checkpoint path")
    p.add_argument(
        "--num-classes",
        type=int,
        help="outputs of a local checkpoint's head (default: read from the checkpoint)",
    )
    p.add_argument("--recursive", action="store_true", help="also take the images in subfolders of a folder")
    p.add_argument("--strict", action="store_true", help="stop at the first image that cannot be read")
    p.add_argument(
        "--topk",
        type=int,
        help="classification: categories to report per image (default 5); detection: the most objects to report "
        "per image (default: all above the threshold)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="leave out results below this probability (default 0; segmentation: classes below this share of the "
        f"pixels; detection: objects below this score, default {DEFAULT_THRESHOLD})",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images (video: clips) per forward pass (default 8)")
    p.add_argument(
        "--clip-len",
        type=int,
        help="video: frames per clip (default: the clip length the weights were evaluated with, else 16)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    p.add_argument(
        "--out",
        metavar="FILE|DIR",
        help="classification and video: also write the results to FILE, .json, .jsonl or .csv (by its suffix; "
        ".jsonl: written as they come, one line per input, and a rerun predicts only the inputs not in it yet, "
        "so an interrupted run resumes; launched with torchrun, each process writes its part and rank 0 merges "
        "them); "
        "segmentation and detection: the directory for the pictures "
        f"(default: ./{DEFAULT_PICTURES}, created when missing; pictures of an earlier run with the same names "
        "are replaced)",
    )
    p.add_argument(
        "--pairs",
        choices=PAIRINGS,
        default=PAIRINGS[0],
        help="optical flow: separate (default): the flow from frame 1 to 2, from 3 to 4, ...; consecutive: from "
        "each frame to the next. The image files given form one sequence; each video file is a sequence of its "
        "own (its pictures are named <video stem>-frame<N>)",
    )
    p.add_argument(
        "--flow-updates",
        type=int,
        default=DEFAULT_UPDATES,
        help=f"optical flow: refinement steps of the model (default {DEFAULT_UPDATES}; more: finer, slower)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="with --out FILE.jsonl: forget the results already in it (and parts of runs cut short) and predict "
        "every input again",
    )
    p.add_argument(
        "--dist-backend",
        choices=BACKENDS,
        help="under torchrun: how the processes talk (default: nccl with --device cuda, else gloo)",
    )
    p.add_argument(
        "--optimize",
        action="store_true",
        help=f"{' and '.join(OPTIMIZABLE_TASKS)}: run the model through visionzoo.models.optimize_for_inference "
        "(BatchNorm folding, layout, torch.compile with weight freezing), optimised on the first batch (the "
        "compile time is shown on stderr; a later process finds most of the work in Inductor's cache). Pays "
        "off for many images: compiling takes tens of seconds the first time",
    )
    add_dtype_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)


@dataclass
class Session:
    """What every batch of one run shares: the arguments, the model on its device, the names of its outputs
    (empty when unknown), and where pictures go (tasks that draw only)."""

    args: argparse.Namespace
    model: torch.nn.Module | Callable[..., Any]  # --optimize: an OptimisedOnFirstBatch
    device: torch.device
    categories: list[str]
    pictures: PictureNames
    preset: Callable[..., Any] | None = None
    chosen: ChosenWeights | None = None
    # Where each chunk's results go as they come (``--out FILE.jsonl``) instead of into the returned list.
    stream: Callable[[Results], None] | None = None
    progress: bool = True  # a progress bar (besides --quiet): only rank 0's under torchrun


@dataclass
class Batch:
    """The readable images of one chunk of inputs: paths, the images as read (kept for tasks that draw, else
    empty) and the preset's tensors (on the CPU)."""

    paths: list[str]
    images: list[torch.Tensor]
    inputs: list[torch.Tensor]


@dataclass(frozen=True)
class Predictor:
    """How one task runs: ``run(session, batch)`` returns one result per image of the batch; ``show`` prints
    results; ``rows`` flattens them for ``--out FILE.csv``, or is None for a task that ``draws`` one picture
    per image (``--out DIR``). ``topk`` and ``threshold`` stand for ``--topk`` and ``--threshold`` when the
    user leaves them out (``topk`` None: no cap).

    A task that reads its inputs itself (video files; optical flow: pairs of frames) has
    ``run_paths(session, paths)`` instead of ``run``, returning the results, one message per failed item and the
    number of items (``unit``, default ``inputs``); ``check_inputs(args, paths)`` refuses bad arguments before any
    work, in place of the ``--out`` checks. ``inputs`` names the input files in messages and ``suffixes`` picks
    them out of folders."""

    run: Callable[[Session, Batch], Results] | None
    show: Callable[[Results], None]
    rows: Callable[[Results], list[dict[str, Any]]] | None = None
    topk: int | None = 5
    threshold: float = 0.0
    run_paths: Callable[[Session, list[str]], tuple[Results, list[str], int]] | None = None
    check_inputs: Callable[[argparse.Namespace, list[str]], None] | None = None
    inputs: str = "images"
    unit: str | None = None
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    key: str = "image"  # the field of a result that names its input

    @property
    def draws(self) -> bool:
        """The task writes a picture per image into ``--out DIR`` instead of results into ``--out FILE``."""
        return self.rows is None

    @property
    def writes_results(self) -> bool:
        """The task can write its results to ``--out FILE.jsonl``, one line per input (and so run under torchrun)."""
        return not self.draws and self.check_inputs is None


def read_rgb(path: str) -> torch.Tensor:
    """Decode an image file to an RGB tensor (uint8, or uint16 for 16-bit PNGs), with an error naming the file."""
    from visionzoo.io import ImageReadMode, read_image

    try:
        return read_image(path, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except (OSError, ValueError, RuntimeError) as error:
        detail = one_line(error)
        raise CommandError(detail if path in detail else f"{path}: cannot read image: {detail}", 1) from None


def expand_inputs(
    inputs: list[str], recursive: bool, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, kind: str = "images"
) -> list[str]:
    """The input files named by ``inputs``: files as given, folders replaced by their files with one of
    ``suffixes`` (sorted); ``kind`` names those files in messages.

    Raises:
        CommandError: a path does not exist, or a folder holds no image.
    """
    files: list[str] = []
    missing: list[str] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                p
                for p in (path.rglob("*") if recursive else path.iterdir())
                if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith(".")
            )
            if not found:
                deeper = "" if recursive else "; --recursive also looks in its subfolders"
                raise CommandError(f"{given}: a folder without {kind} ({', '.join(suffixes)}){deeper}")
            files += [str(p) for p in found]
        elif path.is_file():
            files.append(given)
        else:
            missing.append(given)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CommandError(f"{missing[0]}: no such file or folder{more}")
    return files


def batches(paths: list[str], batch_size: int, quiet: bool) -> Iterator[list[str]]:
    """Yield chunks of paths, with a progress bar on stderr when there is more than one batch."""
    from tqdm import tqdm

    with tqdm(total=len(paths), unit="img", file=sys.stderr, disable=quiet or len(paths) <= batch_size) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            yield chunk
            bar.update(len(chunk))


def prepare(paths: list[str], preset: Callable[..., Any], strict: bool, keep_images: bool) -> tuple[Batch, list[str]]:
    """Read and preprocess each image: the batch of those that could be, and one message per failure.

    Raises:
        CommandError: with ``strict``, at the first image that cannot be read or preprocessed (status 1).
    """
    batch, failures = Batch([], [], []), []
    for path in paths:
        try:
            image = read_rgb(path)
            tensor = preset(image)
        except (CommandError, ValueError, TypeError) as error:
            message = str(error) if isinstance(error, CommandError) else f"{path}: {one_line(error)}"
            if strict:
                raise CommandError(f"{message} (--strict stops at the first unreadable image)", 1) from None
            failures.append(message)
            continue
        batch.paths.append(path)
        batch.inputs.append(tensor)
        if keep_images:
            batch.images.append(image)
    return batch, failures


def classify(session: Session, batch: Batch) -> Results:
    """Top-k categories (with softmax probabilities at least ``--threshold``) of every image of ``batch``."""
    import torch

    args = session.args
    probs = session.model(torch.stack(batch.inputs).to(session.device)).float().softmax(dim=1).cpu()
    names = session.categories if len(session.categories) == probs.shape[1] else []  # another head: by index
    top = probs.topk(min(args.topk, probs.shape[1]), dim=1)
    results = []
    for path, values, indices in zip(batch.paths, top.values.tolist(), top.indices.tolist()):
        ranked = [
            {"label": names[i] if names else str(i), "index": i, "probability": round(p, 4)}
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


def classification_rows(results: Results) -> list[dict[str, Any]]:
    return [{"image": r["image"], "rank": rank, **item} for r in results for rank, item in enumerate(r["top"], 1)]


def check_out(out: str) -> None:
    """Refuse an ``--out FILE`` destination that could not be written, before any work is done."""
    path = Path(out)
    if path.is_dir():
        raise CommandError(f"--out {out}: a directory; name a file in it, e.g. {path / ('results' + OUT_FORMATS[0])}")
    if path.suffix.lower() not in OUT_FORMATS:
        raise CommandError(f"--out {out}: unknown format {path.suffix or '(no suffix)'}; use {', '.join(OUT_FORMATS)}")
    if not path.resolve().parent.is_dir():
        raise CommandError(f"--out {out}: the directory does not exist")


def check_out_dir(out: str | None, task: str) -> None:
    """Refuse an ``--out DIR`` for pictures (None: the default) that could not be created or written, before any
    work is done."""
    path = Path(out or DEFAULT_PICTURES)
    what = f"--out {out}" if out else f"{path} (the default --out)"
    if path.is_dir():
        if not os.access(path, os.W_OK):
            raise CommandError(f"{what}: the directory is not writable")
        return
    if path.exists():
        raise CommandError(f"{what}: an existing file; {task} writes pictures, so --out names a directory")
    if path.suffix.lower() in OUT_FORMATS:
        raise CommandError(
            f"{what}: {task} writes pictures, so --out names a directory, not a {path.suffix} file "
            "(--json prints the results as JSON)"
        )
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CommandError(f"{what}: cannot create the directory ({parent} is not a writable directory)")


def write_out(out: str, results: Results, predictor: Predictor) -> None:
    """Write ``results`` to ``out`` in the format its suffix names."""
    path = Path(out)
    suffix = path.suffix.lower()
    with path.open("w", encoding="utf-8", newline="") as f:
        if suffix == ".json":
            f.write(json.dumps(results, indent=2) + "\n")
        elif suffix == ".jsonl":
            f.writelines(json.dumps(result) + "\n" for result in results)
        else:
            rows = predictor.rows(results) if predictor.rows is not None else []
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image"])
            writer.writeheader()
            writer.writerows(rows)


def _check_arguments(args: argparse.Namespace, predictor: Predictor, task: str) -> None:
    """Fill in the task's defaults for ``--topk`` and ``--threshold``, and refuse bad values."""
    if args.topk is None:
        args.topk = predictor.topk
    if args.threshold is None:
        args.threshold = predictor.threshold
    if (args.topk is not None and args.topk < 1) or args.batch_size < 1:
        raise CommandError("--topk and --batch-size must be at least 1")
    if args.clip_len is not None and predictor.inputs != "videos":
        raise CommandError(f"--clip-len applies to video models only, not {task} models")
    if args.clip_len is not None and args.clip_len < 1:
        raise CommandError(f"--clip-len must be at least 1, got {args.clip_len}")
    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be a probability between 0 and 1, got {args.threshold}")
    if predictor.check_inputs is not None:
        return  # the task checks --out itself, with the inputs
    if predictor.draws:
        check_out_dir(args.out, task)
    elif args.out:
        check_out(args.out)


def _run_chunks(
    session: Session, paths: list[str], size: int, run_chunk: Callable[[list[str]], tuple[Results, list[str]]]
) -> tuple[Results, list[str]]:
    """Run ``paths`` in chunks of ``size`` with a progress bar; the results, and one message per input that failed
    (printed as it happens)."""
    results: Results = []
    failures: list[str] = []
    for chunk in batches(paths, size, session.args.quiet or not session.progress):
        found, failed = run_chunk(chunk)
        for message in failed:
            print(f"visionzoo: {message}", file=sys.stderr)
        failures += failed
        if session.stream is not None:
            session.stream(found)
        else:
            results += found
    return results, failures


def _run_batches(
    session: Session, predictor: Predictor, preset: Callable[..., Any], paths: list[str]
) -> tuple[Results, list[str]]:
    """Read, preprocess and run the images in batches; the results, and one message per image that failed."""
    assert predictor.run is not None
    run = predictor.run

    def run_chunk(chunk: list[str]) -> tuple[Results, list[str]]:
        batch, failed = prepare(chunk, preset, session.args.strict, keep_images=predictor.draws)
        return (run(session, batch) if batch.paths else []), failed

    return _run_chunks(session, paths, session.args.batch_size, run_chunk)


def _classify_videos_one_by_one(session: Session, paths: list[str]) -> tuple[Results, list[str], int]:
    """Video classification's ``run_paths``: one file at a time (a video is many batches), with a progress bar."""
    results, failures = _run_chunks(session, paths, 1, lambda chunk: classify_videos(session, chunk))
    return results, failures, len(paths)


def _check_flow_inputs(args: argparse.Namespace, paths: list[str]) -> None:
    if args.flow_updates < 1:
        raise CommandError(f"--flow-updates must be at least 1, got {args.flow_updates}")
    check_flow_out(args.out, count_pairs(paths, args.pairs))


PREDICTORS: dict[str, Predictor] = {
    "classification": Predictor(classify, show_classification, classification_rows),
    "quantization": Predictor(classify, show_classification, classification_rows),
    "segmentation": Predictor(segment, show_segmentation),
    "detection": Predictor(detect, show_detection, topk=None, threshold=DEFAULT_THRESHOLD),
    "video": Predictor(
        None,
        show_video,
        video_rows,
        run_paths=_classify_videos_one_by_one,
        inputs="videos",
        suffixes=VIDEO_SUFFIXES,
        key="video",
    ),
    "optical_flow": Predictor(
        None, show_flow, run_paths=estimate_flows, check_inputs=_check_flow_inputs, unit="frame pairs"
    ),
}


def read_list(path: str) -> list[str]:
    """The paths listed in ``path`` (``--list``), one per line; relative ones are taken from the list's folder;
    blank lines and ``#`` comments are skipped.

    Raises:
        CommandError: the list cannot be read or names nothing.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CommandError(f"--list {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"--list {path}: cannot read it: {one_line(error)}") from None
    folder = os.path.dirname(path)
    entries = [line.strip() for line in lines]
    paths = [os.path.join(folder, entry) for entry in entries if entry and not entry.startswith("#")]
    if not paths:
        raise CommandError(f"--list {path}: lists no file (one path per line; # starts a comment)")
    return paths


def _start(args: argparse.Namespace, chosen: ChosenWeights, device: torch.device) -> Session:
    """Build the model on ``device`` (its card on stderr when the weights cannot be had) and the run's session."""
    from visionzoo.allocator import keep_freed_memory

    keep_freed_memory()
    try:
        model = chosen.build(progress=not args.quiet)
    except CommandError as error:
        if error.status == 1 and not chosen.local and chosen.entry is not None:
            from .catalog import model_card

            print(model_card(chosen.model, only=chosen.entry), file=sys.stderr)
            print(file=sys.stderr)
        raise
    model = model.to(device)
    preset = preset_of(chosen, model)
    if args.optimize:
        model = OptimisedOnFirstBatch(model, name=chosen.model, dtype=args.dtype, quiet=args.quiet)
    categories = chosen.category_names()
    pictures = PictureNames(Path(args.out or DEFAULT_PICTURES), chosen.model)
    return Session(args, model, device, categories, pictures, preset, chosen)


def _run(session: Session, predictor: Predictor, paths: list[str]) -> tuple[Results, list[str], int]:
    """Predict ``paths``: the results (none when the session streams them), the failures, the number of items."""
    import torch

    with torch.inference_mode():
        if predictor.run_paths is not None:
            return predictor.run_paths(session, paths)
        assert session.preset is not None
        return (*_run_batches(session, predictor, session.preset, paths), len(paths))


def cmd_predict(args: argparse.Namespace) -> int:
    from visionzoo.models._api import get_task, list_tasks

    from ._jsonl import place, predict_to_jsonl, world_of

    if args.model.lower().endswith(".pt2"):
        return _predict_exported(args)
    info = model_info(args.model)  # unknown names fail here, with suggestions
    task = get_task(info.task)
    predictor = PREDICTORS.get(task.name)
    if predictor is None:
        available = ", ".join(sorted(name for name in PREDICTORS if name in list_tasks()))
        raise CommandError(
            f"predict does not handle {task.name} models yet ({info.name}); it handles {available} models"
        )
    check_dtype(args)
    if args.optimize and task.name not in OPTIMIZABLE_TASKS:
        raise CommandError(
            f"--optimize applies to {' and '.join(OPTIMIZABLE_TASKS)} models, not {task.name} models ({info.name})"
        )
    world = world_of(args, predictor, task.name, [n for n, p in PREDICTORS.items() if p.writes_results])
    chosen = choose_weights(info.name, args.weights, args.num_classes)
    _check_arguments(args, predictor, task.name)
    if not args.inputs and not args.list:
        raise CommandError(f"nothing to predict: give {predictor.inputs} or folders, or --list FILE")
    listed = read_list(args.list) if args.list else []
    paths = expand_inputs([*args.inputs, *listed], args.recursive, predictor.suffixes, predictor.inputs)
    if predictor.check_inputs is not None:
        predictor.check_inputs(args, paths)
    device = device_of(args.device)
    if task.cpu_only and device.type != "cpu":
        raise CommandError(
            f"{chosen.model} is a {task.name} model, which runs on the CPU only (not --device {args.device})"
        )
    world, device = place(world, device, args.dist_backend)
    if args.out and not predictor.draws and Path(args.out).suffix.lower() == ".jsonl":
        start = partial(_start, args, chosen, device)
        return predict_to_jsonl(
            args, predictor, paths, world, device, start, lambda s, todo: _run(s, predictor, todo), chosen.label
        )
    return _report(args, predictor, _start(args, chosen, device), paths)


def _report(args: argparse.Namespace, predictor: Predictor, session: Session, paths: list[str]) -> int:
    """Run ``paths``, write ``--out`` and print the results and the count; the exit status."""
    results, failures, total = _run(session, predictor, paths)
    if args.out and not predictor.draws:
        write_out(args.out, results, predictor)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        predictor.show(results)
    if failures or not args.quiet:
        failed = f", {len(failures)} failed" if failures else ""
        drawn = f"; pictures in {Path(results[0]['picture']).parent}{os.sep}" if predictor.draws and results else ""
        unit = predictor.unit or predictor.inputs
        print(f"visionzoo: {len(results)} of {total} {unit} predicted{failed}{drawn}", file=sys.stderr)
    return 1 if failures else 0


# Tasks whose exported programs (``visionzoo export --format pt2``) predict runs.
EXPORTED_TASKS = ("classification", "segmentation", "detection")


class _ResizedTo:
    """A static segmentation program's preprocessing: each image resized to the program's height and width (its
    aspect ratio is not kept), then rescaled and normalised as the weights' preset does. The label map is scaled
    back to the image's own size afterwards, as for a model run by name."""

    def __init__(self, preset: Any, size: tuple[int, int]) -> None:
        from visionzoo.transforms import SemanticSegmentation

        self.size = size
        self.interpolation = preset.interpolation
        self.antialias = preset.antialias
        self.normalise = SemanticSegmentation(
            resize_size=None, mean=preset.mean, std=preset.std, interpolation=preset.interpolation
        )

    def __call__(self, image: Any) -> Any:
        from visionzoo.transforms import functional as F

        resized = F.resize(image, list(self.size), interpolation=self.interpolation, antialias=self.antialias)
        return self.normalise(resized)


def _exported_preset(model: str, record: dict[str, Any], preset: Any, task: str) -> Any:
    """The preprocessing a program takes its images through, given its weights' ``preset``.

    A program exported without ``--dynamic`` takes one size only: it must be the size the preset gives
    (classification: its crop; segmentation: a shorter side of its resize size, the images then resized to
    exactly the program's size), else the program is refused with what to do instead.
    """
    if task == "detection":  # detectors take images of any size: see exported_detector
        return preset
    _, _, *size = record["input_shapes"][0]
    if task == "segmentation":
        resize = list(getattr(preset, "resize_size", None) or [])
        if record.get("dynamic"):
            return preset
        if resize and min(size) != resize[0]:
            raise CommandError(
                f"{model} was exported for {size[0]}x{size[1]} inputs, but its preset resizes the shorter side to "
                f"{resize[0]}; export it again with --dynamic or at the preset's size"
            )
        return _ResizedTo(preset, (size[0], size[1]))
    crop = list(getattr(preset, "crop_size", []))
    crop = crop * 2 if len(crop) == 1 else crop
    if not record.get("dynamic") and crop and crop != size:
        raise CommandError(
            f"{model} was exported for {size[0]}x{size[1]} inputs, but its preset crops to "
            f"{crop[0]}x{crop[-1]}; export it again with --dynamic or at the preset's size"
        )
    return preset


def _predict_exported(args: argparse.Namespace) -> int:
    """``predict --model FILE.pt2``: run a program written by ``visionzoo export`` with its weights' preset.

    A program exported without ``--dynamic`` takes the batch size it was exported with (one image), so images go
    through it one at a time; a static segmentation program gets every image resized to its size, and so does a
    detector (whose boxes, masks and keypoints are mapped back to each image's own size).
    """
    from .export import load_program, preset_from_record

    if args.weights is not None or args.num_classes is not None:
        raise CommandError(f"{args.model} holds its weights; --weights and --num-classes do not apply to it")
    if args.optimize or args.dtype is not None:
        raise CommandError(f"{args.model} is an exported program; --optimize and --dtype apply to model names")
    program, record = load_program(args.model)
    task = record.get("task")
    if task not in EXPORTED_TASKS:
        raise CommandError(
            f"predict runs exported {', '.join(EXPORTED_TASKS)} models only so far; {args.model} holds "
            f"{record.get('model')}, a {task} model (run it with --model {record.get('model')} instead)"
        )
    predictor = PREDICTORS[task]
    _check_arguments(args, predictor, task)
    if args.out and not predictor.draws and Path(args.out).suffix.lower() == ".jsonl":
        raise CommandError(f"--out {args.out}: an exported program writes .json or .csv results, not .jsonl")
    if not args.inputs and not args.list:
        raise CommandError(f"nothing to predict: give {predictor.inputs} or folders, or --list FILE")
    listed = read_list(args.list) if args.list else []
    paths = expand_inputs([*args.inputs, *listed], args.recursive, predictor.suffixes, predictor.inputs)
    device = device_of(args.device)
    preset = _exported_preset(args.model, record, preset_from_record(record), task)
    categories = list(record.get("categories") or [])
    model = program.module().to(device)
    if task == "detection":
        _, *size = record["input_shapes"][0]
        model = exported_detector(model, (size[0], size[1]), len(categories) or None)
    elif not record.get("dynamic"):
        args.batch_size = record["input_shapes"][0][0]
    pictures = PictureNames(Path(args.out or DEFAULT_PICTURES), str(record.get("model")))
    session = Session(args, model, device, categories, pictures, preset)
    return _report(args, predictor, session, paths)
