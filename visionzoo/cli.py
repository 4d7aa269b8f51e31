"""The ``visionzoo`` command line: find, inspect and try models without writing code.

Errors print one line on stderr and exit with status 2 (bad usage or input) or 1 (weights or runtime
failure); they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence


class CommandError(Exception):
    """A failure to report as one line, with the exit status to use."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _weights_rows(name: str) -> list[dict[str, Any]]:
    from visionzoo.models import get_model_weights

    try:
        enum = get_model_weights(name)
    except ValueError:
        return []
    default = enum.DEFAULT if "DEFAULT" in enum.__members__ else None
    rows = []
    for entry in enum:
        metrics = next(iter(entry.meta.get("_metrics", {}).values()), {})
        rows.append(
            {
                "weights": repr(entry),
                "default": entry is default,
                "metrics": metrics,
                "params": entry.meta.get("num_params"),
                "gflops": entry.meta.get("_ops"),
                "file_mb": entry.meta.get("_file_size"),
                "url": entry.url,
                "recipe": entry.meta.get("recipe"),
            }
        )
    return rows


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from visionzoo.models import list_models

    names = list_models(include=args.patterns or None)
    if args.json:
        payload = [{"model": n, "weights": _weights_rows(n)} if args.weights else {"model": n} for n in names]
        print(json.dumps(payload, indent=2))
        return 0
    if not names:
        raise CommandError(f"no model matches {' '.join(args.patterns)}")
    if not args.weights:
        print("\n".join(names))
        return 0
    rows = [["model", "weights", "acc@1", "params", "GFLOPS", "MB"]]
    for name in names:
        for row in _weights_rows(name):
            rows.append(
                [
                    name,
                    row["weights"].split(".", 1)[1] + (" (default)" if row["default"] else ""),
                    f"{row['metrics'].get('acc@1', float('nan')):.3f}",
                    f"{row['params'] / 1e6:.1f}M",
                    f"{row['gflops']:.2f}",
                    f"{row['file_mb']:.1f}",
                ]
            )
    print(_table(rows))
    return 0


def model_card(name: str) -> str:
    """A plain-text card for a model: builder signature and every weights entry with its facts."""
    from visionzoo import hub
    from visionzoo.models import get_model_builder, get_model_weights
    from visionzoo.models._api import builder_signature

    builder = get_model_builder(name)
    # Annotations are strings (postponed evaluation); show them without quotes.
    lines = [f"{name}{builder_signature(name)}".replace("'", ""), ""]
    doc = (builder.__doc__ or "").strip().splitlines()
    if doc:
        lines += [doc[0], ""]
    try:
        enum = get_model_weights(name)
    except ValueError:
        return "\n".join(lines + ["(no pretrained weights)"])
    for entry in enum:
        meta = entry.meta
        metrics = ", ".join(f"{task} " + " ".join(f"{k}={v}" for k, v in m.items()) for task, m in meta.get("_metrics", {}).items())
        where = hub.find_local(entry.file_name)
        preset = entry.transforms()
        lines += [
            f"{entry!r}" + ("  [DEFAULT]" if entry is enum.DEFAULT else ""),
            f"  metrics:  {metrics}",
            f"  params:   {meta.get('num_params'):,}   GFLOPS: {meta.get('_ops')}   file: {meta.get('_file_size')} MB",
            f"  url:      {entry.url}",
            f"  local:    {where or f'not on disk (fetch the url into {hub.get_dir()} or VISIONZOO_WEIGHTS_DIR)'}",
            f"  preset:   {preset.describe() if hasattr(preset, 'describe') else preset}".replace("\n", " "),
            f"  recipe:   {meta.get('recipe')}",
            "",
        ]
    return "\n".join(lines).rstrip()


def cmd_info(args: argparse.Namespace) -> int:
    print(model_card(args.model))
    return 0


def _load_images(paths: Sequence[str]) -> list[Any]:
    from visionzoo.io import ImageReadMode, read_image

    images = []
    for path in paths:
        if not Path(path).is_file():
            raise CommandError(f"{path}: no such file")
        images.append(read_image(path, mode=ImageReadMode.RGB, apply_exif_orientation=True))
    return images


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from visionzoo import hub
    from visionzoo.models import get_model, get_model_weights

    enum = get_model_weights(args.model)
    weights_arg: Any = args.weights or "DEFAULT"
    is_path = Path(weights_arg).suffix in {".pth", ".pt", ".safetensors", ".bin", ".ckpt"}
    entry = enum.DEFAULT if is_path else enum.verify(weights_arg)
    images = _load_images(args.images)
    try:
        model = get_model(args.model, weights=weights_arg, progress=not args.quiet).eval().to(args.device)
    except hub.WeightsUnavailableError as error:
        print(model_card(args.model), file=sys.stderr)
        print(file=sys.stderr)
        raise CommandError(str(error), status=1) from None
    preset = entry.transforms()
    categories = entry.meta.get("categories") or []
    results = []
    with torch.inference_mode():
        for start in range(0, len(images), args.batch_size):
            chunk = images[start : start + args.batch_size]
            batch = torch.stack([preset(img) for img in chunk]).to(args.device)
            probs = model(batch).softmax(dim=1).cpu()
            top = probs.topk(min(args.topk, probs.shape[1]), dim=1)
            for path, values, indices in zip(args.images[start:], top.values, top.indices):
                labels = [categories[i] if i < len(categories) else str(i) for i in indices.tolist()]
                results.append({"image": path, "top": [{"label": l, "probability": round(p, 4)} for l, p in zip(labels, values.tolist())]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(result["image"])
            for rank, item in enumerate(result["top"], 1):
                print(f"  {rank}. {item['label']:<30} {item['probability'] * 100:6.2f}%")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionzoo", description="Pretrained vision models for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list models (and their weights)")
    p.add_argument("patterns", nargs="*", help="fnmatch patterns, e.g. 'resnet*'")
    p.add_argument("--weights", action="store_true", help="list every weights entry with its metrics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show a model card")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("predict", help="classify images")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="weights entry name (default: DEFAULT) or a local checkpoint path")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionzoo`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as error:
        print(f"visionzoo: error: {error}", file=sys.stderr)
        return error.status
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"visionzoo: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a one-line report instead of a traceback, as promised above
        print(f"visionzoo: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
