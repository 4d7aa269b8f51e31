"""Tiny generated image folders for the training tests: solid colours with a little noise, one class each."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

COLOURS = {"blue": (30, 40, 210), "green": (40, 190, 50), "red": (210, 40, 30)}


def make_folders(root: Path, per_class: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """``root/<colour>/<i>.png`` for each colour, ``per_class`` images of ``size`` (height, width) each."""
    generator = torch.Generator().manual_seed(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = torch.randint(-25, 26, (*size, 3), generator=generator)
            pixels = (torch.tensor(rgb) + noise).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root
