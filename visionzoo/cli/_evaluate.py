"""What every ``visionzoo validate`` evaluator shares: building the model, the progress bar and its rate, skipping
unreadable items, and the final report (the measured figures next to the published ones, as text or JSON).

A task's evaluator (``_eval_<task>.py``) finds its dataset's items (checking the layout before any download),
scores them and hands a :class:`Scores` to :func:`report`; :data:`visionzoo.cli.validate.EVALUATORS` says which
module serves which task.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import ChosenWeights, CommandError, number, preset_of, table

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm


@dataclass
class Scores:
    """What one evaluation measured.

    Attributes:
        heading: the report's first line (weights, data, how many items of what).
        measured: metric values per column: one column for most tasks (``{"measured": {"miou": 66.1, ...}}``),
            several where one run measures several ways (classification's ``PIL`` and ``tensor`` preset paths,
            video's ``video`` and ``clip`` levels); the first column is the one published figures compare with.
        published: the weights' published figures for the same metrics (from ``meta["_metrics"]``).
        items: how many items (images, clips, pairs) were scored.
        unit: what an item is, in the plural (``images``, ``videos``, ``pairs``).
        seconds: the time the scoring took (reading, preprocessing and the model).
        skipped: one message per item that could not be read and was left out.
        extra: further facts for the JSON report (e.g. the number of classes).
    """

    heading: str
    measured: dict[str, dict[str, float]]
    published: dict[str, float]
    items: int
    unit: str
    seconds: float
    skipped: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Items scored per second."""
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def check_data_dir(root: Path, layout: str) -> None:
    """Raises CommandError unless ``root`` is an existing directory; ``layout`` says what it should hold."""
    if root.is_file():
        raise CommandError(f"--data {root} is a file; it must be a directory ({layout})")
    if not root.is_dir():
        raise CommandError(f"{root}: no such directory")


def build(chosen: ChosenWeights, args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """The model on ``device`` in eval mode, and its preset."""
    model = chosen.build(progress=not args.quiet).to(device)
    return model, preset_of(chosen, model)


@contextmanager
def progress(args: argparse.Namespace, total: int, unit: str) -> Iterator[tqdm]:
    """A progress bar on stderr (none with ``--quiet``) counting ``unit``\\ s, under inference mode."""
    import torch
    from tqdm import tqdm

    with torch.inference_mode(), tqdm(total=total, unit=unit, file=sys.stderr, disable=args.quiet or None) as bar:
        yield bar


class Skips:
    """The unreadable items of a run: each is reported on stderr when met and counted."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        """Record (and print) one skipped item's message."""
        self.messages.append(message)
        print(f"visionzoo: skipped: {message}", file=sys.stderr)

    def guard(self, path: Path | str | None, read: Callable[[], Any]) -> Any:
        """``read()``, or None (the item recorded as skipped) when it raises a ``CommandError`` of status 1 (an
        item that does not decode), its message prefixed by ``path`` unless it names it already; other errors (status 2: a wrong layout) propagate and stop the run."""
        try:
            return read()
        except CommandError as error:
            if error.status != 1:
                raise
            message = str(error)
            self.add(message if path is None or str(path) in message else f"{path}: {message}")
            return None


class Timer:
    """Seconds spent inside ``with timer:`` blocks, summed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def published_of(chosen: ChosenWeights, dataset: str | None = None) -> dict[str, float]:
    """The published figures of the chosen entry (none for a local checkpoint): those of ``dataset`` (a key of
    ``meta["_metrics"]``), or of every dataset when None."""
    from ._catalog import flat_metrics

    if chosen.local or chosen.entry is None:
        return {}
    if dataset is not None:
        return dict(chosen.entry.meta.get("_metrics", {}).get(dataset, {}))
    return flat_metrics(chosen.entry)


def report(args: argparse.Namespace, chosen: ChosenWeights, scores: Scores) -> int:
    """Print ``scores`` (``--json``: one JSON document) and return the exit status (0).

    Raises:
        CommandError: nothing could be scored (every item was skipped), status 1.
    """
    if scores.items == 0:
        raise CommandError(
            f"no {scores.unit} could be scored: {len(scores.skipped)} skipped (the first: {scores.skipped[0]})"
            if scores.skipped
            else f"no {scores.unit} to score",
            1,
        )
    columns = list(scores.measured)
    if args.json:
        document = {
            "weights": chosen.label,
            "task": chosen.task,
            scores.unit: scores.items,
            "skipped": len(scores.skipped),
            "skipped_items": scores.skipped,
            f"{scores.unit}_per_s": round(scores.rate, 3),
            **scores.extra,
            "measured": scores.measured if len(columns) > 1 else scores.measured[columns[0]],
            "meta": scores.published,
        }
        print(json.dumps(_json_safe(document), indent=2))
        return 0
    from ._catalog import metric_heading

    print(scores.heading)
    keys = list(dict.fromkeys(key for column in columns for key in scores.measured[column]))
    rows = [["metric", *columns, "meta"]]
    rows += [
        [
            metric_heading(key),
            *(number(scores.measured[column].get(key)) for column in columns),
            number(scores.published.get(key)),
        ]
        for key in keys
    ]
    print(table(rows, "l" + "r" * (len(columns) + 1)))
    print(
        f"{scores.items} {scores.unit} in {scores.seconds:.1f} s ({scores.rate:.2f} {scores.unit}/s); "
        f"{len(scores.skipped)} unreadable, skipped"
    )
    return 0


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinite floats (no figure: e.g. no valid pixel) as None, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value
