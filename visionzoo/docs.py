"""Generate ``docs/models.md`` and ``docs/accuracy_vs_gflops.png`` from the registry metadata.

    python -m visionzoo.docs [--out docs] [--check]     (or: visionzoo docs ...)

Both files are pure functions of the registry: the table lists every weights entry per task, and the plot
shows accuracy@1 against GFLOPS (log scale) for every classification entry. A digest of the plotted data is
written into the PNG (a text chunk) and into ``models.md``, so a test can tell that the picture belongs to the
current table without comparing pixels. The plot needs matplotlib (``pip install 'visionzoo[plot]'``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionzoo.cli._catalog import default_of, entries_of, metric_heading, models_by_task
from visionzoo.models._api import get_model_info, get_task, list_tasks

MODELS_MD = "models.md"
PLOT_PNG = "accuracy_vs_gflops.png"
PLOT_DATA_KEY = "visionzoo-plot-data"  # the PNG text chunk holding the digest of the plotted points


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def plot_points() -> list[tuple[str, str, float, float]]:
    """``(family, label, GFLOPS, acc@1)`` of every classification entry that reports both."""
    points = []
    for name, _ in models_by_task(task="classification"):
        entries = entries_of(name)
        for entry in entries:
            metrics = next(iter(entry.meta.get("_metrics", {}).values()), {})
            acc1, gflops = metrics.get("acc@1"), entry.meta.get("_ops")
            if acc1 is None or gflops is None or math.isnan(acc1) or not gflops > 0:
                continue
            label = name if len(entries) == 1 else f"{name} {entry.name.removeprefix('IMAGENET1K_')}"
            points.append((get_model_info(name).family, label, float(gflops), float(acc1)))
    return points


def plot_digest(points: list[tuple[str, str, float, float]]) -> str:
    """A short digest of the plotted data, shared by the PNG and ``models.md``."""
    return hashlib.sha256(json.dumps(points).encode()).hexdigest()[:16]


def _task_table(pairs: list[tuple[str, str]]) -> list[str]:
    rows = [(name, entry) for name, _ in pairs for entry in entries_of(name)]
    datasets = list(dict.fromkeys(d for _, e in rows for d in e.meta.get("_metrics", {})))
    columns = list(dict.fromkeys((d, k) for _, e in rows for d, m in e.meta.get("_metrics", {}).items() for k in m))
    labels = [metric_heading(k) for _, k in columns]
    headers = labels if len(datasets) == 1 else [f"{d} {label}" for (d, _), label in zip(columns, labels, strict=True)]
    lines = []
    if len(datasets) == 1:
        lines += [f"Metrics on {datasets[0]}, with each entry's own preset (`visionzoo info MODEL` explains it).", ""]
    lines += [
        "| Model | Weights | " + " | ".join([*headers, "Params", "GFLOPS", "File (MB)", "Recipe"]) + " |",
        "|---|---|" + "---:|" * (len(headers) + 3) + "---|",
    ]
    for name, entry in rows:
        metrics = entry.meta.get("_metrics", {})
        params = entry.meta.get("num_params")
        recipe = entry.meta.get("recipe")
        cells = [
            f"`{name}`",
            f"`{entry!r}`" + (" (default)" if entry is default_of(name) else ""),
            *(_fmt(metrics.get(d, {}).get(k), ".3f") for d, k in columns),
            f"{params / 1e6:.1f}M" if params else "–",
            _fmt(entry.meta.get("_ops"), ".2f"),
            _fmt(entry.meta.get("_file_size"), ".1f"),
            f"[link]({recipe})" if recipe else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    bare = [name for name, _ in pairs if not entries_of(name)]
    if bare:
        lines += ["", "Without pretrained weights: " + ", ".join(f"`{n}`" for n in bare) + "."]
    return lines


def render_models_md() -> str:
    """The full text of ``docs/models.md``."""
    pairs = models_by_task()
    entries = sum(len(entries_of(name)) for name, _ in pairs)
    lines = [
        "# Models and pretrained weights",
        "",
        "<!-- Generated from the registry by `python -m visionzoo.docs`; do not edit by hand. -->",
        "",
        f"{len(pairs)} models, {entries} weights entries. `visionzoo list --weights` prints the same from the "
        "command line; `visionzoo download MODEL` fetches a checkpoint.",
    ]
    for task in map(get_task, list_tasks()):
        in_task = [(name, t) for name, t in pairs if t == task.name]
        if not in_task:
            continue
        lines += ["", f"## {task.title}", ""]
        if task.name == "classification":
            digest = plot_digest(plot_points())
            lines += [f"![accuracy@1 against GFLOPS]({PLOT_PNG})", f"<!-- plot data: {digest} -->", ""]
        lines += _task_table(in_task)
    return "\n".join(lines) + "\n"


def render_plot(path: Path, points: list[tuple[str, str, float, float]]) -> None:
    """Draw accuracy@1 against GFLOPS (log x), one labelled point per entry coloured by family; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({family for family, *_ in points})
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(14, 9), dpi=100)
    try:
        for i, family in enumerate(families):
            mine = [p for p in points if p[0] == family]
            ax.scatter([p[2] for p in mine], [p[3] for p in mine], s=20, color=colours(i % 20), label=family, zorder=3)
        for _, label, x, y in points:
            ax.annotate(label, (x, y), xytext=(4, 2), textcoords="offset points", fontsize=6.5, alpha=0.85)
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPS per image (log scale)")
        ax.set_ylabel("ImageNet-1K accuracy@1 (%)")
        ax.set_title(f"visionzoo classification weights ({len(points)} entries)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, ncol=2, title="family")
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={PLOT_DATA_KEY: plot_digest(points), "Software": "visionzoo.docs"})
    finally:
        plt.close(fig)


def run(out: str | Path = "docs", *, check: bool = False) -> int:
    """Write (or, with ``check``, compare) the generated files in ``out``; returns an exit status."""
    out = Path(out)
    text = render_models_md()
    md_path, png_path = out / MODELS_MD, out / PLOT_PNG
    if check:
        stale = []
        if not md_path.is_file() or md_path.read_text(encoding="utf-8") != text:
            stale.append(str(md_path))
        if png_read_digest(png_path) != plot_digest(plot_points()):
            stale.append(str(png_path))
        if stale:
            print(f"out of date: {', '.join(stale)}; run `python -m visionzoo.docs --out {out}`", file=sys.stderr)
            return 1
        print(f"{md_path} and {png_path} are up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text, encoding="utf-8")
    print(f"wrote {md_path}")
    try:
        render_plot(png_path, plot_points())
    except ImportError:
        print(f"not written: {png_path} needs matplotlib (pip install 'visionzoo[plot]')", file=sys.stderr)
        return 1
    print(f"wrote {png_path}")
    return 0


def png_read_digest(path: Path) -> str | None:
    """The plot-data digest stored in a PNG written by :func:`render_plot`, or None."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.text.get(PLOT_DATA_KEY)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m visionzoo.docs``."""
    parser = argparse.ArgumentParser(prog="python -m visionzoo.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="output directory (default: ./docs)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files are out of date")
    args = parser.parse_args(argv)
    return run(args.out, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
