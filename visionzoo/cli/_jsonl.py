"""``predict --out FILE.jsonl``: results written as they come, one JSON object per line keyed by its input, so that
a run can be split across processes (torchrun) and an interrupted run resumed.

Each process appends to its own part, ``<stem>.rank<r>-of-<n>.jsonl`` next to ``OUT``, flushed after every batch.
When every process has finished, rank 0 merges the parts into ``OUT``: the lines already there first, then the
new ones in the order of the inputs (so a run over several processes writes what one process would), and removes
the parts. A run first collects the inputs already answered, in ``OUT`` or in any part (of any world size: a
killed run's parts stay until a run completes), and predicts only the others. A part's last line without its
newline is what a killed process left half-written: it is ignored, and its input predicted again. Each line
records the weights that made it (``"weights"``): a run with other weights refuses to resume someone else's
results rather than mix them.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._common import CommandError

if TYPE_CHECKING:
    import torch

    from visionzoo.distributed import World

    from .predict import Predictor, Results, Session

_PART = re.compile(r"\.rank(\d+)-of-(\d+)\.jsonl$")


def part_name(out: Path, rank: int, world_size: int) -> Path:
    """The part of ``out`` that rank ``rank`` of ``world_size`` writes."""
    return out.with_name(f"{out.stem}.rank{rank}-of-{world_size}.jsonl")


def part_files(out: Path) -> list[Path]:
    """The parts of ``out`` on disk, from runs of any world size, sorted."""
    if not out.parent.is_dir():
        return []
    prefix = out.stem + "."
    return sorted(
        p
        for p in out.parent.iterdir()
        if p.name.startswith(prefix) and _PART.fullmatch(p.name[len(out.stem) :]) and p.is_file()
    )


def read_lines(path: Path, key: str) -> Iterator[tuple[str, str]]:
    """``(input, line)`` for every complete result in ``path`` (a missing file has none). Blank lines are skipped;
    a last line without its newline that does not parse is a write cut short, and is skipped too.

    Raises:
        CommandError: a line that is not a JSON object naming its input under ``key``.
    """
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            complete = line.endswith("\n")
            try:
                record = json.loads(line)
                name = record[key] if isinstance(record, dict) else None
            except (ValueError, KeyError):
                name = None
            if isinstance(name, str):
                yield name, line if complete else line + "\n"
            elif complete:
                raise CommandError(
                    f"{path}:{number}: not a result of `visionzoo predict` (a JSON object with {key!r}); "
                    "give another --out, or move this file away",
                )


class ResultsFile:
    """The results of one process of a run writing ``--out FILE.jsonl``.

    Args:
        out: the merged results file.
        key: the field that names a result's input (``image``, ``video``).
        rank, world_size: this process's place in the run.
        fresh: forget earlier results (``OUT`` and every part) instead of resuming.
        weights: the weights of this run, recorded on every line (None: not recorded, not checked).
    """

    def __init__(
        self,
        out: str | Path,
        key: str,
        rank: int = 0,
        world_size: int = 1,
        fresh: bool = False,
        weights: str | None = None,
    ) -> None:
        self.out, self.key, self.fresh, self.weights = Path(out), key, fresh, weights
        self.part = part_name(self.out, rank, world_size)
        self.world_size = world_size
        self._file: IO[str] | None = None

    def answered(self) -> set[str]:
        """The inputs with a result in ``OUT`` or in a part (none when ``fresh``).

        Raises:
            CommandError: a line of one of those files is not a result (with its file and line number).
        """
        if self.fresh:
            return set()
        found: set[str] = set()
        for path in [self.out, *part_files(self.out)]:
            for name, line in read_lines(path, self.key):
                found.add(name)
                made_by = json.loads(line).get("weights") if self.weights is not None else None
                if made_by is not None and made_by != self.weights:
                    raise CommandError(
                        f"{path}: holds results of {made_by} (for {name}), but this run uses {self.weights}; "
                        "give another --out, or --fresh to replace them"
                    )
        return found

    def open(self) -> None:
        """Open this process's part for appending; a line a killed run left half-written is cut off first."""
        if self.fresh or not self.part.is_file():
            self._file = self.part.open("w", encoding="utf-8")
            return
        with self.part.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                last = data.rfind(b"\n") + 1
                try:
                    whole = isinstance(json.loads(data[last:]), dict)
                except ValueError:
                    whole = False
                if whole:
                    f.write(b"\n")
                else:
                    f.truncate(last)
        self._file = self.part.open("a", encoding="utf-8")

    def write(self, results: Iterable[dict[str, Any]]) -> None:
        """Append ``results`` (one JSON line each) and flush them to the operating system."""
        assert self._file is not None, "open() first"
        stamp = {} if self.weights is None else {"weights": self.weights}
        self._file.writelines(json.dumps({**result, **stamp}) + "\n" for result in results)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def merge(self, inputs: list[str]) -> int:
        """Rank 0, once every process has closed its part: rewrite ``OUT`` as its results so far followed by the
        parts' results it lacks, the latter in the order of ``inputs`` (results of other inputs last), then remove
        the parts. ``OUT`` is replaced in one step, so an interruption leaves the old or the new one.

        Returns:
            The number of results in ``OUT``.
        """
        parts = [part_name(self.out, rank, self.world_size) for rank in range(self.world_size)]
        if not self.fresh:
            parts += [p for p in part_files(self.out) if p not in parts]
        position = {name: index for index, name in reversed(list(enumerate(inputs)))}
        last = len(inputs)
        kept = set() if self.fresh else {name for name, _ in read_lines(self.out, self.key)}

        def ordered(path: Path) -> Iterator[tuple[int, str]]:
            for name, line in read_lines(path, self.key):
                if name not in kept:
                    yield position.get(name, last), line

        temporary = self.out.with_name(f".{self.out.name}.merging")
        count = 0
        with temporary.open("w", encoding="utf-8") as f:
            if not self.fresh:
                for _, line in read_lines(self.out, self.key):
                    f.write(line)
                    count += 1
            for _, line in heapq.merge(*(ordered(p) for p in parts), key=lambda item: item[0]):
                f.write(line)
                count += 1
        os.replace(temporary, self.out)
        for path in {*parts, *part_files(self.out)}:  # with ``fresh``, older runs' parts are stale too
            path.unlink(missing_ok=True)
        return count


def world_of(args: argparse.Namespace, predictor: Predictor, task: str, shared: list[str]) -> World:
    """The torchrun world this process belongs to, and a refusal of what several processes cannot do (tasks other
    than the ``shared`` ones, no ``--out FILE.jsonl``, ``--json``)."""
    from visionzoo.distributed import WorldError, world_from_env

    try:
        world = world_from_env()
    except WorldError as error:
        raise CommandError(str(error)) from None
    if not world.distributed:
        return world
    where = f"WORLD_SIZE={world.world_size}"
    if not predictor.writes_results:
        raise CommandError(
            f"{where}: predict shares out the inputs of {', '.join(shared)} models, not of {task} models"
        )
    if not args.out:
        raise CommandError(
            f"{where}: the processes write their results to --out FILE.jsonl (each its own part, merged by rank 0); "
            "add --out"
        )
    if Path(args.out).suffix.lower() != ".jsonl":
        raise CommandError(f"{where}: --out {args.out}: the processes write JSON lines; name a .jsonl file")
    if args.json:
        raise CommandError(f"{where}: --json would print one document per process; read --out {args.out} instead")
    return world


def place(world: World, device: torch.device, backend: str | None) -> tuple[World, torch.device]:
    """This process's device (``cuda:LOCAL_RANK`` under torchrun) and the world with its backend chosen."""
    from visionzoo.distributed import WorldError, choose_backend, device_for

    try:
        device = device_for(world, device)
        return choose_backend(world, device, backend), device
    except WorldError as error:
        raise CommandError(str(error)) from None


def predict_to_jsonl(
    args: argparse.Namespace,
    predictor: Predictor,
    paths: list[str],
    world: World,
    device: torch.device,
    start: Callable[[], Session],
    run: Callable[[Session, list[str]], tuple[Results, list[str], int]],
    weights: str | None = None,
) -> int:
    """``predict --out FILE.jsonl`` in one process of ``world``: predict this process's share of ``paths`` that
    has no result yet (``start`` builds the session, only when there is work), writing and printing each batch's
    results as they come; then, once every process is done, rank 0 merges the parts into ``--out``. ``weights``
    names the weights in use: recorded on every line, and a file of another's results is refused.

    Returns:
        The exit status: 1 when any input failed in any process.
    """
    from visionzoo import distributed

    results_file = ResultsFile(args.out, predictor.key, world.rank, world.world_size, fresh=args.fresh, weights=weights)
    mine = distributed.shard(paths, world)
    answered = results_file.answered()
    todo = [path for path in mine if path not in answered]
    kept: Results = []  # for --json only: the rest is streamed
    failures: list[str] = []
    predicted = 0

    def stream(found: Results) -> None:
        nonlocal predicted
        results_file.write(found)
        predicted += len(found)
        if args.json:
            kept.extend(found)
        elif not world.distributed:
            predictor.show(found)
        else:  # one write per result: the processes share stdout, and a small write to a pipe is not split
            for result in found:
                text = io.StringIO()
                with contextlib.redirect_stdout(text):
                    predictor.show([result])
                sys.stdout.write(text.getvalue())
                sys.stdout.flush()

    distributed.init(world, device)
    try:
        results_file.open()
        try:
            if todo:
                session = start()
                session.stream, session.progress = stream, world.is_main
                _, failures, _ = run(session, todo)
        finally:
            results_file.close()
        counts = [len(mine), predicted, len(failures)]
        unit = predictor.unit or predictor.inputs
        if world.distributed and (failures or not args.quiet):
            rank = f"rank {world.rank} of {world.world_size}: "
            print(f"visionzoo: {rank}{_summary(counts, unit, args.out)}", file=sys.stderr)
        totals = distributed.sum_over_ranks(counts, device)  # returns once every process has closed its part
        if world.is_main:
            held = results_file.merge(paths)
            if totals[2] or not args.quiet:
                everyone = "in all: " if world.distributed else ""
                summary = _summary(totals, unit, args.out)
                print(f"visionzoo: {everyone}{summary}; {args.out} holds {held}", file=sys.stderr)
        # The others wait for the merge, and everything is printed before it: torchrun stops every process as soon
        # as one exits with a failure.
        sys.stdout.flush()
        distributed.barrier()
    finally:
        distributed.shutdown()
    if args.json:
        print(json.dumps(kept, indent=2))
    return 1 if totals[2] else 0


def _summary(counts: list[int], unit: str, out: str) -> str:
    inputs, predicted, failed = counts
    already = inputs - predicted - failed
    return (
        f"{predicted} of {inputs} {unit} predicted"
        + (f", {failed} failed" if failed else "")
        + (f", {already} already in {out}" if already else "")
    )
