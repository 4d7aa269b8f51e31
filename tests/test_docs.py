"""The generated docs: docs/models.md must match the registry; the plot must be a sane PNG of the same data.

When a test here fails because a family changed, regenerate both files with `make docs`
(`python -m visionzoo.docs`).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from visionzoo import docs
from visionzoo.cli import main
from visionzoo.cli._catalog import entries_of, models_by_task
from visionzoo.models import list_models

DOCS = Path(__file__).resolve().parents[1] / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG file"
    return struct.unpack(">II", head[16:24])


def test_models_md_is_up_to_date() -> None:
    checked_in = (DOCS / docs.MODELS_MD).read_text(encoding="utf-8")
    assert checked_in == docs.render_models_md(), "docs/models.md is out of date: run `make docs`"


def test_plot_is_a_sane_png_of_the_current_data() -> None:
    path = DOCS / docs.PLOT_PNG
    width, height = png_size(path)
    assert 600 <= width <= 4000 and 400 <= height <= 3000
    assert 20_000 < path.stat().st_size < 5_000_000
    # Not a pixel comparison: the digest of the plotted points, stored in the PNG when it was drawn.
    assert docs.png_read_digest(path) == docs.plot_digest(docs.plot_points()), (
        "the plot is out of date: run `make docs`"
    )


def test_models_md_lists_every_weights_entry_per_task() -> None:
    text = docs.render_models_md()
    for name in list_models():
        for entry in entries_of(name):
            assert f"| `{name}` | `{entry!r}`" in text
    pairs = models_by_task()
    assert f"{len(pairs)} models, {sum(len(entries_of(n)) for n, _ in pairs)} weights entries" in text
    assert "## Image classification" in text and "![accuracy@1 against GFLOPS](accuracy_vs_gflops.png)" in text
    resnet50 = next(line for line in text.splitlines() if "`ResNet50_Weights.IMAGENET1K_V2`" in line)
    assert [cell.strip() for cell in resnet50.split("|")[1:-1]] == [
        "`resnet50`",
        "`ResNet50_Weights.IMAGENET1K_V2` (default)",
        "80.858",
        "95.434",
        "25.6M",
        "4.09",
        "97.8",
        "[link](https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621)",
    ]


def test_plot_points_cover_classification_entries() -> None:
    points = docs.plot_points()
    labels = {label for _, label, _, _ in points}
    assert {"resnet50 V1", "resnet50 V2", "alexnet"} <= labels
    assert all(gflops > 0 and 0 < acc <= 100 for _, _, gflops, acc in points)
    assert ("resnet", "resnet50 V2", 4.089, 80.858) in points


def test_generate_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs"
    assert main(["docs", "--out", str(out)]) == 0
    assert (out / docs.MODELS_MD).read_text(encoding="utf-8") == docs.render_models_md()
    assert png_size(out / docs.PLOT_PNG) == (1400, 900)
    assert docs.run(out, check=True) == 0
    (out / docs.MODELS_MD).write_text("stale\n", encoding="utf-8")
    capsys.readouterr()
    assert docs.main(["--out", str(out), "--check"]) == 1
    assert f"out of date: {out / docs.MODELS_MD}" in capsys.readouterr().err


def test_segmentation_table_shows_miou_and_pixel_accuracy() -> None:
    text = docs.render_models_md()
    section = text[text.index("## Semantic segmentation") :]
    assert "Metrics on COCO-val2017-VOC-labels" in section
    assert "| Model | Weights | mIoU | pixel accuracy | Params | GFLOPS | File (MB) | Recipe |" in section
    row = next(line for line in section.splitlines() if line.startswith("| `deeplabv3_resnet50`"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[2:7] == ["66.400", "92.400", "42.0M", "178.72", "160.5"]
