"""Visualisation helpers: drawing boxes, masks and keypoints on images, tiling images into a grid, saving them.

The functions reproduce the outputs of the reference's ``torchvision.utils`` bit for bit on the inputs it
accepts, and refuse bad input with one clear error before doing any work. PIL is imported lazily (colour
names, box drawing, saving), so ``import visionzoo.utils`` costs only torch.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Integral, Real
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont, ImageFont

from ._flow_colors import flow_to_image

__all__ = [
    "draw_bounding_boxes",
    "draw_keypoints",
    "draw_segmentation_masks",
    "flow_to_image",
    "make_grid",
    "save_image",
]

Color: TypeAlias = str | tuple[int, int, int]
"""A colour: a name PIL knows (``"red"``), ``"#RRGGBB"`` (or ``"#RGB"``, ``"rgb(...)"``, ...), or an
``(R, G, B)`` tuple of ints in [0, 255]."""

# The default colours: object i gets (i * multiplier) % 255 per channel, the reference's palette, so that
# drawings without explicit colours look the same with either library.
_PALETTE_MULTIPLIERS = (2**25 - 1, 2**15 - 1, 2**21 - 1)


def _to_rgb(color: Color) -> tuple[int, int, int]:
    """One colour as an ``(R, G, B)`` tuple of ints in [0, 255].

    Raises:
        ValueError: for an unknown colour name, a colour with an alpha channel, or a tuple that is not three
            ints in [0, 255].
        TypeError: for anything that is neither a string nor a tuple.
    """
    if isinstance(color, str):
        from PIL import ImageColor

        try:
            rgb = ImageColor.getrgb(color)
        except ValueError:
            raise ValueError(
                f"unknown colour {color!r}: expected a colour name such as 'red', '#RRGGBB' or an (R, G, B) tuple"
            ) from None
        if len(rgb) != 3:
            raise ValueError(f"colour {color!r} has an alpha channel; expected an RGB colour")
        return rgb
    if isinstance(color, tuple):
        if len(color) != 3 or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in color):
            raise ValueError(f"an RGB colour tuple must hold three ints, got {color!r}")
        if not all(0 <= v <= 255 for v in color):
            raise ValueError(f"RGB colour values must lie in [0, 255], got {color!r}")
        return int(color[0]), int(color[1]), int(color[2])
    raise TypeError(f"a colour must be a string or an (R, G, B) tuple, got {type(color).__name__}: {color!r}")


def _parse_colors(colors: Color | list[Color] | None, num_objects: int) -> list[tuple[int, int, int]]:
    """The RGB colours of ``num_objects`` objects from the drawing functions' ``colors`` argument.

    ``None`` picks the default palette; one colour (string or tuple) is used for every object; a list gives
    one colour per object (extra colours are ignored).

    Raises:
        ValueError: for a list with fewer colours than objects, or a bad colour (see :func:`_to_rgb`).
        TypeError: for a ``colors`` of another type.
    """
    if colors is None:
        return [tuple(i * m % 255 for m in _PALETTE_MULTIPLIERS) for i in range(num_objects)]
    if isinstance(colors, (str, tuple)):
        return [_to_rgb(colors)] * num_objects
    if isinstance(colors, list):
        if len(colors) < num_objects:
            raise ValueError(f"got {len(colors)} colours for {num_objects} objects; pass at least one per object")
        return [_to_rgb(color) for color in colors[:num_objects]]
    raise TypeError(f"colors must be a colour, a list of colours or None, got {type(colors).__name__}")


def _color_table(colors: list[tuple[int, int, int]], image: Tensor) -> Tensor:
    """``(N, 3)`` colours in the image's dtype and value range (float images hold values in [0, 1])."""
    table = torch.tensor(colors, dtype=torch.float64 if image.is_floating_point() else torch.uint8).view(-1, 3)
    if image.is_floating_point():
        table = table / 255
    return table.to(image.dtype).to(image.device)


def _check_rgb_image(image: Tensor, allow_grayscale: bool = False) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise TypeError(f"image must be uint8 (values in [0, 255]) or float (values in [0, 1]), got {image.dtype}")
    if allow_grayscale:
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"image must be one RGB or grayscale image of shape (3, H, W) or (1, H, W), "
                f"got shape {tuple(image.shape)}"
            )
    elif image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be one RGB image of shape (3, H, W), got shape {tuple(image.shape)}")


def _check_masks(masks: Tensor, image: Tensor) -> Tensor:
    """``masks`` as ``(N, H, W)``, after checking their type, shape and device against the image."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if masks.dtype != torch.bool and not masks.is_floating_point():
        raise TypeError(f"masks must be bool, or float with values in [0, 1], got {masks.dtype}")
    if masks.ndim == 2:
        masks = masks.unsqueeze(0)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (H, W) or (N, H, W), got shape {tuple(masks.shape)}")
    if masks.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"masks of size {tuple(masks.shape[-2:])} do not match the image's size {tuple(image.shape[-2:])} (H, W)"
        )
    if masks.device != image.device:
        raise ValueError(f"masks are on {masks.device} but the image is on {image.device}")
    return masks


@torch.no_grad()
def draw_segmentation_masks(
    image: Tensor,
    masks: Tensor,
    alpha: float = 0.8,
    colors: Color | list[Color] | None = None,
) -> Tensor:
    """Draws masks over an RGB image, each in its colour, blended with opacity ``alpha``.

    A pixel covered by one mask takes its colour; a pixel covered by several is drawn black. Float masks
    are soft: a pixel takes the colour of the mask with the highest value there, blended with opacity
    ``alpha * value`` (pixels where several masks share that highest value are drawn black). A float mask
    of 0s and 1s draws exactly what the same bool mask draws.

    Args:
        image: ``(3, H, W)`` uint8 with values in [0, 255] or float with values in [0, 1].
        masks: ``(N, H, W)`` or ``(H, W)``, bool or float with values in [0, 1].
        alpha: opacity of the masks, from 0 (invisible) to 1 (opaque).
        colors: one colour for every mask, or a list with one per mask; ``None`` picks a fixed palette.

    Returns:
        The drawn image, with the dtype of ``image``. ``image`` itself, with a warning, when ``masks`` holds
        no mask.

    Raises:
        TypeError: for an image or masks of the wrong type or dtype, or colours of the wrong type.
        ValueError: for a bad shape, masks whose size or device differ from the image's, float mask values
            outside [0, 1], ``alpha`` outside [0, 1], too few colours or an unknown colour.
    """
    _check_rgb_image(image)
    masks = _check_masks(masks, image)
    if not isinstance(alpha, Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    num_masks = masks.shape[0]
    palette = _color_table(_parse_colors(colors, num_masks), image)
    if num_masks == 0:
        warnings.warn("masks holds no mask: the image is returned as it is", stacklevel=3)
        return image

    if masks.dtype == torch.bool:
        coverage = masks.sum(0)
        covered, overlap = coverage > 0, coverage > 1
        owner = masks.to(torch.uint8).argmax(0)  # the covering mask, where only one covers
        strength = None
    else:
        lowest, highest = torch.aminmax(masks)
        if not (lowest >= 0 and highest <= 1):  # NaN fails both comparisons
            raise ValueError(
                f"float masks must hold values in [0, 1], got values in [{lowest.item()}, {highest.item()}]"
            )
        strength, owner = masks.max(0)
        covered = strength > 0
        overlap = covered & ((masks == strength).sum(0) > 1)

    colour_layer = palette[owner].permute(2, 0, 1)
    colour_layer = torch.where(overlap, torch.zeros_like(colour_layer), colour_layer)
    painted = torch.where(covered, colour_layer, image)
    # Every pixel goes through the blend, covered or not: rounding can move an uncovered uint8 pixel by one
    # step (e.g. with alpha=0.9), and the reference's outputs include that.
    out = image * (1 - alpha) + painted * alpha
    if strength is not None:
        # lerp returns its end points exactly, so 0/1 float masks give the bool result bit for bit.
        unpainted = image * (1 - alpha) + image * alpha
        out = torch.lerp(unpainted, out, strength.to(out.dtype))
    return out.to(image.dtype)


def _check_boxes(boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"boxes must hold integer or float coordinates, got {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if boxes.is_floating_point() and not torch.isfinite(boxes).all():
        raise ValueError("boxes must hold finite coordinates, got NaN or infinity")
    # Degenerate boxes (x1 == x2) are drawn; only reversed corners are refused, the reference's rule.
    reversed_corners = (boxes[:, 0] > boxes[:, 2]) | (boxes[:, 1] > boxes[:, 3])
    if reversed_corners.any():
        first = int(reversed_corners.nonzero()[0, 0])
        raise ValueError(
            f"boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, got box {first}: {boxes[first].tolist()}"
        )


def _load_font(font: str | None, font_size: int | None) -> FreeTypeFont | ImageFont:
    """The PIL font of the labels: the TrueType file ``font`` at ``font_size`` points (10 by default), or
    PIL's default font."""
    from PIL import ImageFont

    if font_size is not None and (not isinstance(font_size, Integral) or isinstance(font_size, bool) or font_size < 1):
        raise ValueError(f"font_size must be a positive int, got {font_size!r}")
    if font is None:
        if font_size is not None:
            warnings.warn("font_size is ignored without font: PIL's default font has a fixed size", stacklevel=4)
        return ImageFont.load_default()
    if not isinstance(font, (str, os.PathLike)):
        raise TypeError(f"font must be the path of a TrueType font file, got {type(font).__name__}")
    try:
        return ImageFont.truetype(font, size=font_size or 10)
    except OSError as error:
        raise ValueError(f"cannot open the TrueType font {os.fspath(font)!r}: {error}") from None


@torch.no_grad()
def draw_bounding_boxes(
    image: Tensor,
    boxes: Tensor,
    labels: list[str] | None = None,
    colors: Color | list[Color] | None = None,
    fill: bool = False,
    width: int = 1,
    font: str | None = None,
    font_size: int | None = None,
    label_colors: Color | list[Color] | None = None,
    label_background_colors: Color | list[Color] | None = None,
    fill_labels: bool = False,
) -> Tensor:
    """Draws boxes, and optionally their labels, on an RGB or grayscale image.

    Box corners are truncated to integer pixels. Each label is written inside its box's top-left corner.

    Args:
        image: ``(3, H, W)`` or ``(1, H, W)``, uint8 with values in [0, 255] or float with values in [0, 1].
            Float images are drawn at 8 bits and converted back; grayscale images come back as RGB.
        boxes: ``(N, 4)`` as ``(x1, y1, x2, y2)`` in pixels, with ``x1 <= x2`` and ``y1 <= y2``.
        labels: one text per box.
        colors: one colour for every box, or a list with one per box; ``None`` picks a fixed palette.
        fill: also fill the boxes with their colour, at opacity 100/255.
        width: outline width in pixels.
        font: path of a TrueType font for the labels; PIL's default font without one.
        font_size: the font's size in points (10 by default); ignored, with a warning, without ``font``.
        label_colors: colours of the label texts; the box colours by default, black with ``fill_labels``.
        label_background_colors: colours behind the label texts with ``fill_labels``; the box colours by
            default.
        fill_labels: draw each label on a filled background.

    Returns:
        A ``(3, H, W)`` image with the dtype of ``image``. ``image`` itself, with a warning, when ``boxes``
        holds no box.

    Raises:
        TypeError: for an image or boxes of the wrong type or dtype, labels that are not a list of strings,
            colours of the wrong type, or a font that is not a path.
        ValueError: for a bad shape, boxes with x2 < x1 or y2 < y1 or non-finite coordinates, a label count
            other than the box count, too few colours or an unknown colour, a negative ``width``, a
            ``font_size`` < 1, or a font file that cannot be opened.
    """
    _check_rgb_image(image, allow_grayscale=True)
    _check_boxes(boxes)
    num_boxes = boxes.shape[0]
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
            raise TypeError(f"labels must be a list of strings, got {labels!r}")
        if len(labels) != num_boxes:
            raise ValueError(f"got {len(labels)} labels for {num_boxes} boxes; pass one label per box")
    if not isinstance(width, Integral) or isinstance(width, bool) or width < 0:
        raise ValueError(f"width must be a non-negative int, got {width!r}")
    box_colors = _parse_colors(colors, num_boxes)
    if label_colors is not None:
        text_colors = _parse_colors(label_colors, num_boxes)
    else:
        text_colors = [(0, 0, 0)] * num_boxes if fill_labels else box_colors
    if label_background_colors is not None:
        background_colors = _parse_colors(label_background_colors, num_boxes)
    else:
        background_colors = box_colors
    text_font = _load_font(font, font_size) if labels is not None else None
    if num_boxes == 0:
        warnings.warn("boxes holds no box: the image is returned as it is", stacklevel=3)
        return image

    from PIL import ImageDraw

    from visionzoo.transforms.functional import convert_image_dtype, pil_to_tensor, to_pil_image

    pixels = convert_image_dtype(image.expand(3, -1, -1), torch.uint8)
    canvas = to_pil_image(pixels)
    # In "RGBA" mode the fill's alpha blends it over the image instead of replacing the pixels.
    draw = ImageDraw.Draw(canvas, "RGBA" if fill else None)
    # Integer corners by truncation toward zero, as the reference's int64 cast does.
    corners = boxes.to(torch.int64).tolist()
    for index, box in enumerate(corners):
        color = box_colors[index]
        draw.rectangle(box, outline=color, width=width, fill=(*color, 100) if fill else None)
        if labels is None:
            continue
        origin = (box[0] + width + 1, box[1] + width + 1)  # one pixel clear of the outline
        if fill_labels:
            left, top, right, bottom = draw.textbbox(origin, labels[index], font=text_font)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=background_colors[index])
        draw.text(origin, labels[index], fill=text_colors[index], font=text_font)

    out = pil_to_tensor(canvas).to(image.device)
    if image.is_floating_point():
        # The reference's uint8 -> float conversion: a multiplication by 1/255 (not a division, which can
        # differ in the last bit).
        out = out.to(image.dtype).mul_(1.0 / 255)
    return out


@torch.no_grad()
def draw_keypoints(
    image: Tensor,
    keypoints: Tensor,
    connectivity: list[tuple[int, int]] | None = None,
    colors: Color | None = None,
    radius: int = 2,
    width: int = 3,
    visibility: Tensor | None = None,
) -> Tensor:
    """Draws keypoints as filled discs, and the connections between them as white lines, on an RGB image.

    Coordinates are truncated to integer pixels. A keypoint that is not visible is not drawn, nor is any
    connection to it.

    Args:
        image: ``(3, H, W)``, uint8 with values in [0, 255] or float with values in [0, 1] (drawn at 8 bits and
            converted back).
        keypoints: ``(N, K, 2)`` (or ``(N, K, 3)``, the third value ignored) x, y of K keypoints of N instances.
        connectivity: pairs of keypoint indices to join with a line (a skeleton).
        colors: the discs' colour; ``None`` draws no discs, only the connections (as the reference does).
        radius: the discs' radius in pixels.
        width: the lines' width in pixels.
        visibility: ``(N, K)`` (or ``(N, K, 1)``), cast to bool: which keypoints to draw; all by default.

    Returns:
        A ``(3, H, W)`` image with the dtype of ``image``.

    Raises:
        TypeError: an image, keypoints or visibility of the wrong type or dtype, or a bad colour type.
        ValueError: a bad shape, a visibility whose shape is not the keypoints', a connection naming a keypoint
            that does not exist, or an unknown colour.
    """
    _check_rgb_image(image)
    if not isinstance(keypoints, Tensor) or keypoints.is_complex():
        raise TypeError(f"keypoints must be a real-valued torch.Tensor, got {type(keypoints).__name__}")
    if keypoints.ndim != 3 or keypoints.shape[-1] not in (2, 3):
        raise ValueError(f"keypoints must have shape (N, K, 2), got shape {tuple(keypoints.shape)}")
    if visibility is None:
        visibility = torch.ones(keypoints.shape[:-1], dtype=torch.bool)
    if not isinstance(visibility, Tensor):
        raise TypeError(f"visibility must be a torch.Tensor, got {type(visibility).__name__}")
    if visibility.ndim == 3 and visibility.shape[-1] == 1:  # e.g. the last column of (N, K, 3) keypoints
        visibility = visibility.squeeze(-1)
    if visibility.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"visibility must have shape (N, K) = {tuple(keypoints.shape[:-1])}, like the keypoints, got "
            f"{tuple(visibility.shape)}"
        )
    num_keypoints = keypoints.shape[1]
    connections = [tuple(pair) for pair in connectivity or []]
    for pair in connections:
        if len(pair) != 2 or not all(isinstance(i, Integral) and -num_keypoints <= i < num_keypoints for i in pair):
            raise ValueError(f"connection {pair!r} must be two keypoint indices below {num_keypoints}")
    fill = None if colors is None else _to_rgb(colors)  # one colour for every keypoint

    from PIL import ImageDraw

    from visionzoo.transforms.functional import convert_image_dtype, pil_to_tensor, to_pil_image

    canvas = to_pil_image(convert_image_dtype(image, torch.uint8).cpu())
    draw = ImageDraw.Draw(canvas)
    points = keypoints[..., :2].to(torch.int64).tolist()
    shown = visibility.cpu().bool().tolist()
    for instance, visible in zip(points, shown):
        for (x, y), seen in zip(instance, visible):
            if seen:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=None, width=0)
        for start, end in connections:
            if visible[start] and visible[end]:
                draw.line((tuple(instance[start]), tuple(instance[end])), width=width)

    out = pil_to_tensor(canvas).to(image.device)
    if image.is_floating_point():
        out = out.to(image.dtype).mul_(1.0 / 255)  # the reference's uint8 -> float conversion
    return out


def _as_batch(tensor: Tensor | list[Tensor]) -> Tensor:
    """The images of ``make_grid``'s input as ``(B, C, H, W)``, single-channel images repeated to RGB."""
    if isinstance(tensor, list):
        if not tensor:
            raise ValueError("make_grid needs at least one image, got an empty list")
        for item in tensor:
            if not isinstance(item, Tensor):
                raise TypeError(f"expected a tensor or a list of tensors, got a list holding {type(item).__name__}")
        shapes = {tuple(item.shape) for item in tensor}
        if len(shapes) > 1:
            raise ValueError(f"the images of a list must all have the same shape, got shapes {sorted(shapes)}")
        tensor = torch.stack(tensor)
    elif not isinstance(tensor, Tensor):
        raise TypeError(f"expected a tensor or a list of tensors, got {type(tensor).__name__}")

    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), (C, H, W) or (H, W), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError("make_grid needs at least one image, got a batch of 0")
    if tensor.shape[1] == 1:
        tensor = tensor.repeat(1, 3, 1, 1)
    return tensor


def _rescale_(images: Tensor, low: float, high: float) -> None:
    """Maps ``[low, high]`` to ``[0, 1]`` in place, clamping values outside it first."""
    images.clamp_(min=low, max=high).sub_(low).div_(max(high - low, 1e-5))


@torch.no_grad()
def make_grid(
    tensor: Tensor | list[Tensor],
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> Tensor:
    """Tiles images into one image: rows of ``nrow`` images, separated and framed by ``padding`` pixels.

    Args:
        tensor: a ``(B, C, H, W)`` batch, one ``(C, H, W)`` or ``(H, W)`` image, or a list of same-shaped
            images. Single-channel images are repeated to three channels.
        nrow: images per row; the grid has ``ceil(B / nrow)`` rows.
        padding: pixels between the images and around the grid, filled with ``pad_value``.
        normalize: rescale a float input to [0, 1], from ``value_range`` (clamping values outside it) or,
            without one, from the input's min and max.
        value_range: ``(min, max)`` for ``normalize``.
        scale_each: with ``normalize``, take each image's own min and max instead of the batch's.
        pad_value: the value of the padding pixels.

    Returns:
        A ``(C, H', W')`` tensor; a single image comes back without padding.

    Raises:
        TypeError: for an input that is not a tensor or a list of tensors, ``normalize`` with a non-float
            input, or a ``value_range`` that is not a tuple.
        ValueError: for no images, images of different shapes or a bad shape, ``nrow`` < 1, ``padding`` < 0,
            or a ``value_range`` that is not two numbers.
    """
    batch = _as_batch(tensor)
    if not isinstance(nrow, Integral) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}")
    if not isinstance(padding, Integral) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")

    if normalize:
        if not batch.is_floating_point():
            raise TypeError(f"normalize needs a floating-point tensor, got {batch.dtype}")
        if value_range is not None:
            if not isinstance(value_range, tuple):
                raise TypeError(f"value_range must be a tuple (min, max), got {type(value_range).__name__}")
            if len(value_range) != 2 or not all(isinstance(v, Real) for v in value_range):
                raise ValueError(f"value_range must be a tuple of two numbers (min, max), got {value_range!r}")
        batch = batch.clone()
        for images in batch.unbind(0) if scale_each else (batch,):
            low, high = value_range if value_range is not None else (float(images.min()), float(images.max()))
            _rescale_(images, low, high)

    if batch.shape[0] == 1:
        return batch.squeeze(0)

    count, channels, height, width = batch.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    cell_height, cell_width = height + padding, width + padding
    # Each cell is an image with its padding above and to the left; the grid adds one band below and right.
    cells = batch.new_full((rows * columns, channels, cell_height, cell_width), pad_value)
    cells[:count, :, padding:, padding:] = batch
    tiled = cells.view(rows, columns, channels, cell_height, cell_width).permute(2, 0, 3, 1, 4)
    grid = batch.new_full((channels, rows * cell_height + padding, columns * cell_width + padding), pad_value)
    grid[:, : rows * cell_height, : columns * cell_width] = tiled.reshape(
        channels, rows * cell_height, columns * cell_width
    )
    return grid


def _check_save_format(fp: str | os.PathLike[str] | BinaryIO, format: str | None) -> None:
    from PIL import Image

    Image.init()  # registers every plugin, so SAVE and the extension table are complete
    if format is not None:
        if not isinstance(format, str) or format.upper() not in Image.SAVE:
            raise ValueError(f"PIL cannot write format {format!r}; it writes {sorted(Image.SAVE)}")
        return
    if not isinstance(fp, (str, os.PathLike)):
        raise ValueError("format is needed when saving to a file object: e.g. format='png'")
    extension = os.path.splitext(os.fspath(fp))[1].lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise ValueError(f"cannot tell an image format PIL writes from the file name {os.fspath(fp)!r}; pass format=")


@torch.no_grad()
def save_image(
    tensor: Tensor | list[Tensor],
    fp: str | os.PathLike[str] | BinaryIO,
    format: str | None = None,
    **grid_kwargs: object,
) -> None:
    """Saves float images with values in [0, 1] as one image file, tiled by :func:`make_grid`.

    Values are scaled to [0, 255] and rounded to the nearest integer.

    Args:
        tensor: what :func:`make_grid` accepts, with a floating-point dtype.
        fp: a file name or a binary file object.
        format: the image format (e.g. ``"png"``); taken from the file name's extension when omitted, so
            needed for file objects.
        **grid_kwargs: :func:`make_grid`'s options (``nrow``, ``padding``, ``normalize``, ...).

    Raises:
        TypeError: for a non-float input, or what :func:`make_grid` raises.
        ValueError: for an unknown format or file extension, a file object without ``format``, or what
            :func:`make_grid` raises.
    """
    images = tensor if isinstance(tensor, list) else [tensor]
    for image in images:
        if isinstance(image, Tensor) and not image.is_floating_point():
            raise TypeError(f"save_image expects float images with values in [0, 1], got {image.dtype}")
    _check_save_format(fp, format)
    grid = make_grid(tensor, **grid_kwargs)

    from visionzoo.transforms.functional import to_pil_image

    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to("cpu", torch.uint8)
    to_pil_image(pixels).save(fp, format=format)
