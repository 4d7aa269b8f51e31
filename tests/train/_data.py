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


def make_coco(root: Path, images: int, size: tuple[int, int] = (96, 128), seed: int = 0) -> tuple[Path, Path]:
    """``root/images/<i>.png``: grey noise with one red square ("square", category 3) and one blue bar ("bar",
    category 7) each, and ``root/annotations.json`` in COCO format describing them. Returns both paths."""
    import json

    generator = torch.Generator().manual_seed(seed)
    height, width = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries, annotations = [], []
    for i in range(images):
        pixels = torch.randint(100, 156, (height, width, 3), generator=generator, dtype=torch.uint8)
        x, y = (int(v) for v in torch.randint(0, width // 2 - 32, (2,), generator=generator))
        pixels[y : y + 32, x : x + 32] = torch.tensor([230, 30, 30], dtype=torch.uint8)  # the square
        bx, by = width // 2 + x // 2, height // 2 + y // 4
        pixels[by : by + 16, bx : bx + 48] = torch.tensor([30, 30, 230], dtype=torch.uint8)  # the bar
        name = f"{i}.png"
        Image.fromarray(pixels.numpy()).save(root / "images" / name)
        entries.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for category, box in ((3, [x, y, 32, 32]), (7, [bx, by, 48, 16])):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": category, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
    categories = [{"id": 3, "name": "square"}, {"id": 7, "name": "bar"}]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return root / "images", path
