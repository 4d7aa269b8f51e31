"""``visionzoo list``, ``visionzoo info`` and ``visionzoo docs``: what the registry holds."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._catalog import default_of, entries_of, entry_facts, metric_heading, models_by_task
from ._common import CommandError, model_info, number, table

if TYPE_CHECKING:
    from visionzoo.models import WeightsEnum


def register(sub: Any) -> None:
    """Add the catalog commands to the top-level parser's subparsers."""
    p = sub.add_parser("list", help="list models (and their weights)", description="List registered models.")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", help="fnmatch patterns of model names, e.g. 'resnet*'")
    # Checked against the registry's task list when the command runs (reading it here would import torch).
    p.add_argument("--task", help="only models of this task, e.g. classification (an unknown one lists the rest)")
    p.add_argument("--weights", action="store_true", help="one row per weights entry, with its metrics")
    p.add_argument("--json", action="store_true", help="machine-readable output (always includes the entries)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show a model card", description="Show a model card: signature, weights, preset.")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("docs", help="regenerate docs/models.md and the accuracy plot")
    p.add_argument("--out", default="docs", help="output directory (default: ./docs)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are out of date")
    p.set_defaults(func=cmd_docs)


def cmd_list(args: argparse.Namespace) -> int:
    pairs = models_by_task(args.patterns, args.task)
    if args.json:
        payload = [
            {"model": name, "task": task, "weights": [entry_facts(name, e) for e in entries_of(name)]}
            for name, task in pairs
        ]
        print(json.dumps(payload, indent=2))
        return 0
    if not pairs:
        if args.patterns:
            where = f" among {args.task} models" if args.task else ""
            raise CommandError(f"no model matches {' '.join(args.patterns)}{where}")
        print(f"No {args.task} models are available yet.")
        return 0
    if args.weights:
        print(_weights_table(pairs))
        return 0
    rows = [["model", "task", "weights", "default"]]
    for name, task in pairs:
        default = default_of(name)
        rows.append([name, task, str(len(entries_of(name))), default.name if default is not None else "-"])
    print(table(rows, "llrl"))
    return 0


def _weights_table(pairs: list[tuple[str, str]]) -> str:
    """One row per entry; the metric columns are those the listed entries report, under readable headings. A metric
    reported on several datasets (optical flow's ``epe`` on Sintel's clean and final passes, ...) gets one column
    per dataset, headed by the dataset's name."""
    listed = [(name, entry) for name, _ in pairs for entry in entries_of(name)]
    datasets_of: dict[str, set[str]] = {}
    for _, entry in listed:
        for dataset, metrics in entry.meta.get("_metrics", {}).items():
            for key in metrics:
                datasets_of.setdefault(key, set()).add(dataset)

    def cells(entry: WeightsEnum) -> dict[str, float]:
        """The entry's metrics under their column names: ``key``, or ``dataset key`` for ambiguous keys."""
        return {
            f"{dataset} {key}" if len(datasets_of[key]) > 1 else key: value
            for dataset, metrics in entry.meta.get("_metrics", {}).items()
            for key, value in metrics.items()
        }

    columns = list(dict.fromkeys(column for _, entry in listed for column in cells(entry)))
    headings = [" ".join([*column.split(" ")[:-1], metric_heading(column.split(" ")[-1])]) for column in columns]
    rows = [["model", "weights", *headings, "params", "GFLOPS", "MB"]]
    for name, entry in listed:
        metrics = cells(entry)
        params = entry.meta.get("num_params")
        rows.append(
            [
                name,
                entry.name + (" (default)" if entry is default_of(name) else ""),
                *(number(metrics.get(c)) for c in columns),
                f"{params / 1e6:.1f}M" if params else "n/a",
                number(entry.meta.get("_ops"), ".2f"),
                number(entry.meta.get("_file_size"), ".1f"),
            ]
        )
    if len(rows) == 1:
        return "(none of these models has pretrained weights)"
    return table(rows, "ll" + "r" * (len(columns) + 3))


def _wrap(label: str, text: str) -> list[str]:
    # Paths and urls stay whole, so that they can be copied from the terminal.
    lines = textwrap.wrap(
        text,
        width=100,
        initial_indent=f"  {label:<10}",
        subsequent_indent=" " * 12,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return lines or [f"  {label}"]


def _where(entry: Any) -> str:
    """Where the loader would find an entry's checkpoint on disk, or how to get it there."""
    from visionzoo import hub

    path = hub.find_local(entry.file_name)
    if path is None:
        weights_dir = os.environ.get(hub.ENV_WEIGHTS_DIR)
        places = f"{hub.ENV_WEIGHTS_DIR} ({weights_dir}) nor the cache" if weights_dir else "the cache"
        return (
            f"not in {places}; `visionzoo download {entry!r}` fetches it, or copy {entry.file_name} into "
            f"{hub.get_dir()} or a directory named by {hub.ENV_WEIGHTS_DIR}"
        )
    weights_dir = os.environ.get(hub.ENV_WEIGHTS_DIR)
    in_dir = bool(weights_dir) and path.parent == Path(os.path.expanduser(weights_dir))
    place = f"in {hub.ENV_WEIGHTS_DIR}" if in_dir else "cached"
    kind = ", safetensors copy" if path.name != entry.file_name else ""
    return f"{place}{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)"


def _metric_values(metrics: dict[str, float]) -> str:
    """``acc@1=80.858 acc@5=95.434``; with a heading of several words, commas keep the pairs apart
    (``mIoU=57.900, pixel accuracy=91.200``)."""
    pairs = [(metric_heading(key), number(value)) for key, value in metrics.items()]
    separator = ", " if any(" " in heading for heading, _ in pairs) else " "
    return separator.join(f"{heading}={value}" for heading, value in pairs)


def model_card(name: str, only: WeightsEnum | None = None) -> str:
    """A plain-text card: builder signature, task, and every weights entry (or ``only`` one) with its facts.

    Each entry shows its metrics, size, url, whether its file is on disk (cache or ``VISIONZOO_WEIGHTS_DIR``),
    the recipe, and its preprocessing explained in words.
    """
    from visionzoo import hub
    from visionzoo.models import get_model_info
    from visionzoo.models._api import builder_signature

    info = get_model_info(name)
    # Annotations are strings (postponed evaluation); show them without quotes.
    lines = [f"{name}{builder_signature(name)}".replace("'", ""), f"task: {info.task}", ""]
    doc = (info.builder.__doc__ or "").strip().splitlines()
    if doc:
        lines += [doc[0], ""]
    entries = entries_of(name) if only is None else [only]
    if not entries:
        return "\n".join(lines + ["(no pretrained weights)"])
    mirror = os.environ.get(hub.ENV_WEIGHTS_URL)
    for entry in entries:
        meta = entry.meta
        metrics = "; ".join(f"{dataset} {_metric_values(m)}" for dataset, m in meta.get("_metrics", {}).items())
        params = meta.get("num_params")
        preset = entry.transforms()
        lines += [f"{entry!r}" + ("  [DEFAULT]" if entry is default_of(name) else "")]
        lines += _wrap("metrics:", metrics or "n/a")
        lines += [
            f"  params:   {params:,}   GFLOPS: {number(meta.get('_ops'))}" if params else "  params:   n/a",
            f"  file:     {entry.file_name}, {number(meta.get('_file_size'), '.1f')} MB",
            f"  url:      {entry.url}",
        ]
        lines += _wrap("local:", _where(entry))
        if mirror:
            lines.append(f"  mirror:   {mirror.rstrip('/')}/{entry.file_name} ({hub.ENV_WEIGHTS_URL}; not checked)")
        lines += _wrap("recipe:", meta.get("recipe") or "n/a")
        if meta.get("_docs"):
            lines += _wrap("notes:", " ".join(str(meta["_docs"]).split()))
        lines += _wrap("preset:", preset.describe() if hasattr(preset, "describe") else repr(preset))
        lines.append("")
    return "\n".join(lines).rstrip()


def cmd_info(args: argparse.Namespace) -> int:
    print(model_card(model_info(args.model).name))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from visionzoo import docs

    return docs.run(args.out, check=args.check)
