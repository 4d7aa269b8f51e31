"""``visionzoo predict`` for semantic segmentation: per image, each class's share of the pixels, and a PNG of the
picture with the classes found drawn over it and a legend strip under it.

The predictor plugs into :mod:`visionzoo.cli.predict` (see its ``PREDICTORS``); PIL and torch are imported
inside the functions, so that ``visionzoo --help`` stays fast.
"""

from __future__ import annotations

import colorsys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .predict import Batch, Results, Session

BACKGROUND = 0  # the class index that is not coloured: VOC's "__background__", and every head's convention
OVERLAY_ALPHA = 0.6
# The legend strip: rows of LEGEND_ROW pixels (a swatch and a class name per item, as many items a row as
# fit the picture's width), with LEGEND_PAD pixels of margin below the last row.
LEGEND_ROW = 18
LEGEND_PAD = 4
_SWATCH = 12
_LEGEND_BACKGROUND = (255, 255, 255)
_LEGEND_TEXT = (0, 0, 0)


def class_colour(index: int) -> tuple[int, int, int]:
    """The colour of class ``index``, the same in every picture: hues a golden angle apart (and three levels of
    brightness, for indices whose hues come close), so that any number of classes gets a distinct colour."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, (0.95, 0.7, 0.85)[index % 3])
    return round(r * 255), round(g * 255), round(b * 255)


def class_name(index: int, categories: list[str]) -> str:
    """A class's name for people: its category (``__background__`` read as ``background``), else its index."""
    return categories[index].strip("_") if index < len(categories) else str(index)


def label_maps(session: Session, batch: Batch) -> tuple[list[torch.Tensor], int]:
    """One ``(H, W)`` map of class indices per image of ``batch``, at the size of the image as read, and the
    number of classes the model scores.

    The preset keeps each image's aspect ratio, so only images of the same preprocessed size share a forward.
    """
    import torch
    from torch.nn.functional import interpolate

    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, tensor in enumerate(batch.inputs):
        by_size[tuple(tensor.shape)].append(i)
    maps: list[Any] = [None] * len(batch.inputs)
    num_classes = 0
    for indices in by_size.values():
        scores = session.model(torch.stack([batch.inputs[i] for i in indices]).to(session.device))["out"]
        num_classes = scores.shape[1]
        # Argmax at the model's size, then the label map is scaled to the picture's size with nearest
        # neighbours. Scaling the scores bilinearly first would give slightly smoother borders, but it holds
        # classes x H x W floats at the picture's size (about 1 GB for a 12-megapixel photo and 21 classes)
        # where the label map holds one number per pixel; the difference shows only as stepped borders on
        # pictures much larger than the model's input.
        labels = scores.argmax(dim=1, keepdim=True)
        for i, label in zip(indices, labels):
            size = batch.images[i].shape[-2:]
            scaled = interpolate(label[None].float(), size=tuple(size), mode="nearest-exact")
            maps[i] = scaled[0, 0].to(torch.long).cpu()
    return maps, num_classes


def segment(session: Session, batch: Batch) -> Results:
    """Each image's classes with their share of its pixels (largest first, at least ``--threshold``), and the
    path of the PNG drawn for it."""
    import torch

    maps, num_classes = label_maps(session, batch)
    names = session.categories if len(session.categories) == num_classes else []  # another head: by index
    results = []
    for path, image, labels in zip(batch.paths, batch.images, maps):
        counts = torch.bincount(labels.flatten()).tolist()
        total = labels.numel()
        found = sorted(((n / total, i) for i, n in enumerate(counts) if n), reverse=True)
        classes = [
            {"label": class_name(i, names), "index": i, "share": round(share, 4)}
            for share, i in found
            if share >= session.args.threshold
        ]
        picture = session.pictures.next_path(path)
        draw_picture(image, labels, classes).save(picture, format="PNG")
        results.append({"image": path, "picture": str(picture), "classes": classes})
    return results


def draw_picture(image: torch.Tensor, labels: torch.Tensor, classes: list[dict[str, Any]]) -> Image.Image:
    """``image`` with the non-background ``classes`` coloured where ``labels`` has them, over a legend strip."""
    import torch
    from PIL import Image

    from visionzoo.transforms.functional import convert_image_dtype
    from visionzoo.utils import draw_segmentation_masks

    image = convert_image_dtype(image, torch.uint8)  # 16-bit PNGs are read as uint16
    drawn = [item for item in classes if item["index"] != BACKGROUND]
    if drawn:
        masks = torch.stack([labels == item["index"] for item in drawn])
        colours = [class_colour(item["index"]) for item in drawn]
        image = draw_segmentation_masks(image, masks, alpha=OVERLAY_ALPHA, colors=colours)
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    legend = legend_strip(picture.width, [(item["label"], class_colour(item["index"])) for item in drawn])
    canvas = Image.new("RGB", (legend.width, picture.height + legend.height), _LEGEND_BACKGROUND)
    canvas.paste(picture, (0, 0))
    canvas.paste(legend, (0, picture.height))
    return canvas


def legend_strip(width: int, items: list[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """A white strip ``width`` pixels wide (wider when a name would not fit): a colour swatch and a name per
    item, in rows of :data:`LEGEND_ROW` pixels (PIL's default font); a note when there is no item."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[tuple[int, int, str, tuple[int, int, int] | None]] = []  # x, row, text, colour
    entries = [
        (name, colour, (_SWATCH + 4 if colour else 0) + round(measure.textlength(name, font=font)) + 12)
        for name, colour in items or [("(no class drawn)", None)]
    ]
    width = max(width, LEGEND_PAD + max(extent for *_, extent in entries))
    x, row = LEGEND_PAD, 0
    for name, colour, extent in entries:
        if x > LEGEND_PAD and x + extent > width:  # a new row
            x, row = LEGEND_PAD, row + 1
        placed.append((x, row, name, colour))
        x += extent
    strip = Image.new("RGB", (width, (row + 1) * LEGEND_ROW + LEGEND_PAD), _LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    _, ink_top, _, ink_bottom = font.getbbox("Ag")  # the text's ink box, to centre it on the swatch
    for x, row, name, colour in placed:
        top = row * LEGEND_ROW + (LEGEND_ROW - _SWATCH) // 2 + LEGEND_PAD // 2
        if colour is not None:
            draw.rectangle((x, top, x + _SWATCH - 1, top + _SWATCH - 1), fill=colour, outline=_LEGEND_TEXT)
            x += _SWATCH + 4
        draw.text((x, top + (_SWATCH - (ink_bottom - ink_top)) // 2 - ink_top), name, fill=_LEGEND_TEXT, font=font)
    return strip


def show_segmentation(results: Results) -> None:
    """Print each image, the picture drawn for it, and its classes' shares."""
    for result in results:
        print(f"{result['image']} -> {result['picture']}")
        if not result["classes"]:
            print("  (no class above the threshold)")
        for item in result["classes"]:
            print(f"  {item['label']:<30} {item['share'] * 100:6.2f}%")


class PictureNames:
    """Where a run's pictures go: ``DIR/<input stem>.<model>.png``, with ``-2``, ``-3``, ... after the stem for
    inputs whose stems repeat, so that no picture of the run overwrites another (a previous run's are replaced).
    """

    def __init__(self, directory: Path, model: str) -> None:
        self.directory = directory
        self.model = model
        self.used: set[str] = set()

    def next_path(self, image: str) -> Path:
        """The path of the picture for input ``image``; creates the directory on first use."""
        stem, count = Path(image).stem, 1
        name = f"{stem}.{self.model}.png"
        while name in self.used:
            count += 1
            name = f"{stem}-{count}.{self.model}.png"
        self.used.add(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / name
