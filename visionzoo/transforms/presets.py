"""Inference presets: the preprocessing each pretrained weight entry was evaluated with.

A weights entry holds ``transforms=partial(Preset, ...)``; calling the preset on a PIL image or a tensor
gives the float tensor its model expects, with the reference presets' numbers. Input checks live in
module-level helpers so that every preset (classification, segmentation, detection, video, flow)
rejects bad input with the same messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from . import functional as F
from .functional import InterpolationMode

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["ImageClassification", "ObjectDetection", "OpticalFlow", "SemanticSegmentation", "VideoClassification"]


_RGB_CHANNEL_HINTS = {
    1: "grayscale? repeat its channel 3 times first",
    2: "grayscale + alpha? convert to RGB first",
    4: "RGBA? convert to RGB first",
}

_PIL_TARGET_MODES = {1: "L", 3: "RGB"}


def _check_image(img: Tensor | PILImage, num_channels: int) -> None:
    """Raises TypeError/ValueError naming the problem unless ``img`` is an image the presets accept.

    Accepted: a PIL image with ``num_channels`` bands (mode RGB when that is 3; other 3-band modes such
    as YCbCr are a different colour space), or a uint8/floating tensor ``(C, H, W)`` or ``(N, C, H, W)``
    with ``C == num_channels``, no empty dimension and, for floating CPU tensors, no NaN or infinite value
    (see ``functional._count_non_finite`` for why other devices are not checked).
    """
    if F._is_pil_image(img):
        bands, width, height = len(img.getbands()), *img.size
        if bands != num_channels:
            target = _PIL_TARGET_MODES.get(num_channels)
            hint = f"; convert to {target} first with img.convert({target!r})" if target else ""
            raise ValueError(f"expected {num_channels} channels, got {bands} (PIL mode {img.mode!r}{hint})")
        if num_channels == 3 and img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got PIL mode {img.mode!r}; convert it with img.convert('RGB')")
        if width == 0 or height == 0:
            raise ValueError(f"zero-sized image: got a PIL image of size {width}x{height}")
        return

    if not isinstance(img, Tensor):
        hint = " (from an (H, W, C) array: torch.from_numpy(arr).permute(2, 0, 1))" if F._is_ndarray(img) else ""
        raise TypeError(f"expected a PIL image or a torch.Tensor, got {F._type_name(img)}{hint}")
    shape = tuple(img.shape)
    if img.ndim not in (3, 4):
        raise ValueError(f"expected a (C, H, W) image or an (N, C, H, W) batch, got a tensor of shape {shape}")
    if img.dtype not in (torch.uint8, torch.uint16) and not img.is_floating_point():
        raise ValueError(f"unsupported dtype {img.dtype}: expected torch.uint8, torch.uint16 or a floating-point dtype")
    channels = img.shape[-3]
    if channels != num_channels:
        if img.shape[-1] == num_channels:
            hint = "channels-last? permute (..., H, W, C) to (..., C, H, W)"
        else:
            hint = _RGB_CHANNEL_HINTS.get(channels, "") if num_channels == 3 else ""
        raise ValueError(f"expected {num_channels} channels, got {channels}" + (f" ({hint})" if hint else ""))
    if img.ndim == 4 and img.shape[0] == 0:
        raise ValueError(f"empty batch: got a tensor of shape {shape}")
    if img.shape[-1] == 0 or img.shape[-2] == 0:
        raise ValueError(f"zero-sized image: got a tensor of shape {shape}")
    bad = F._count_non_finite(img)
    if bad:
        raise ValueError(
            f"the image holds {bad} NaN or infinite values (tensor of shape {shape}): check the data source"
        )


def _sixteen_bit_to_float(img: Tensor | PILImage) -> Tensor | PILImage:
    """uint16 pixels (16-bit PNGs) -> float32 in [0, 1] (divided by 65535), so that the preset's resize and crop
    work in float; other inputs are returned as they are."""
    return F.convert_image_dtype(img, torch.float32) if isinstance(img, Tensor) and img.dtype == torch.uint16 else img


def _checked_input(img: Tensor | PILImage, num_channels: int) -> Tensor | PILImage:
    """Every preset's first step: refuse what it cannot take (with a clear error), widen 16-bit pixels to float."""
    _check_image(img, num_channels=num_channels)
    return _sixteen_bit_to_float(img)


def _preset_repr(preset: nn.Module, fields: dict[str, object]) -> str:
    """The reference's repr layout, so reprs compare equal; antialias only shows when it is not the default."""
    if preset.antialias is not True:
        fields["antialias"] = preset.antialias
    body = "".join(f"\n    {key}={value}" for key, value in fields.items())
    return f"{type(preset).__name__}({body}\n)"


def _to_float_tensor(img: Tensor | PILImage) -> Tensor:
    """PIL image or integer tensor -> float32 in [0, 1]; float tensors are cast to float32 unscaled."""
    if not isinstance(img, Tensor):
        img = F.pil_to_tensor(img)
    return F.convert_image_dtype(img, torch.float32)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ImageClassification(nn.Module):
    """Resize the shorter side, center crop, rescale to [0, 1], normalize.

    Accepts a PIL RGB image, or a uint8, uint16 (16-bit PNGs, scaled by 65535) or float tensor ``(C, H, W)`` /
    ``(N, C, H, W)``; returns float32.
    Float tensors are taken to be in [0, 1] already; on the CPU they are also checked for NaN and infinite
    values (ValueError). PIL images in other modes (L, RGBA, P, YCbCr, ...)
    raise ValueError instead of being converted silently: call ``img.convert("RGB")`` first.

    Attributes are stored like the reference's (``crop_size`` and ``resize_size`` as one-element lists,
    ``mean``/``std`` as lists) so that code inspecting a weights entry's transforms works unchanged.
    """

    def __init__(
        self,
        *,
        crop_size: int,
        resize_size: int = 256,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel each, got {list(mean)} and {list(std)}")
        self.crop_size = [_positive_int("crop_size", crop_size)]
        self.resize_size = [_positive_int("resize_size", resize_size)]
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation
        self.antialias = antialias

    def forward(self, img: Tensor | PILImage) -> Tensor:
        img = _checked_input(img, num_channels=len(self.mean))
        img = F.resize(img, self.resize_size, interpolation=self.interpolation, antialias=self.antialias)
        img = F.center_crop(img, self.crop_size)
        return F.normalize(_to_float_tensor(img), mean=self.mean, std=self.std)

    def __repr__(self) -> str:
        fields = {
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
        }
        return _preset_repr(self, fields)

    def describe(self) -> str:
        """A prose description of the preprocessing, to rebuild it in a custom pipeline."""
        (resize,), (crop,) = self.resize_size, self.crop_size
        interpolation = F._parse_interpolation(self.interpolation).value
        antialias = "with" if self.antialias else "without"
        return (
            "Accepts a PIL RGB image or a uint8/float tensor of shape (C, H, W) or (N, C, H, W). "
            f"The shorter side is resized to {resize} pixels and the longer one to int({resize} * long / short), "
            f"keeping the aspect ratio, with {interpolation} interpolation ({antialias} antialiasing for tensors; "
            "PIL always antialiases). "
            f"The central {crop}x{crop} pixels are then cropped (zero padding if the resized image is smaller). "
            "uint8 values are rescaled to [0.0, 1.0] by dividing by 255 (uint16 ones by 65535; float tensors are taken as already in "
            f"[0.0, 1.0]), and each channel is normalized as (x - mean) / std with mean={self.mean} and "
            f"std={self.std}. The output is a float32 tensor of shape (..., {len(self.mean)}, {crop}, {crop})."
        )


class SemanticSegmentation(nn.Module):
    """Resize the shorter side (optional), rescale to [0, 1], normalize; no crop, so every pixel gets a label.

    Accepts what :class:`ImageClassification` accepts (PIL RGB image, uint8 or float tensor, with or without a
    batch dimension) and rejects the same bad input; returns float32.

    Args:
        resize_size: the shorter side's length after resizing (the longer one keeps the aspect ratio), or
            None to keep the input's size.
        mean, std: per-channel normalisation.
        interpolation: resampling filter of the resize.
        antialias: antialias tensor downscaling (PIL always does).

    Attributes are stored like the reference's (``resize_size`` as a one-element list or None).
    """

    def __init__(
        self,
        *,
        resize_size: int | None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel each, got {list(mean)} and {list(std)}")
        self.resize_size = None if resize_size is None else [_positive_int("resize_size", resize_size)]
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation
        self.antialias = antialias

    def forward(self, img: Tensor | PILImage) -> Tensor:
        img = _checked_input(img, num_channels=len(self.mean))
        if self.resize_size is not None:
            img = F.resize(img, self.resize_size, interpolation=self.interpolation, antialias=self.antialias)
        return F.normalize(_to_float_tensor(img), mean=self.mean, std=self.std)

    def __repr__(self) -> str:
        fields = {
            "resize_size": self.resize_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
        }
        return _preset_repr(self, fields)

    def describe(self) -> str:
        """A prose description of the preprocessing, to rebuild it in a custom pipeline."""
        if self.resize_size is None:
            resize = "The image keeps its size. "
        else:
            (size,) = self.resize_size
            interpolation = F._parse_interpolation(self.interpolation).value
            antialias = "with" if self.antialias else "without"
            resize = (
                f"The shorter side is resized to {size} pixels and the longer one to int({size} * long / short), "
                f"keeping the aspect ratio, with {interpolation} interpolation ({antialias} antialiasing for tensors; "
                "PIL always antialiases); nothing is cropped, so the model labels every pixel. "
            )
        return (
            "Accepts a PIL RGB image or a uint8/float tensor of shape (C, H, W) or (N, C, H, W). "
            + resize
            + "uint8 values are rescaled to [0.0, 1.0] by dividing by 255 (float tensors are taken as already in "
            f"[0.0, 1.0]), and each channel is normalized as (x - mean) / std with mean={self.mean} and "
            f"std={self.std}. The output is a float32 tensor of shape (..., {len(self.mean)}, H, W)."
        )


class ObjectDetection(nn.Module):
    """Rescale to float32 in [0, 1]; nothing else (detectors resize and normalise inside, in their transform).

    Accepts a PIL RGB image or a uint8/float tensor ``(C, H, W)`` or ``(N, C, H, W)`` with 3 channels, and
    rejects bad input as the other presets do; float tensors are cast to float32 unscaled.
    """

    def forward(self, img: Tensor | PILImage) -> Tensor:
        return _to_float_tensor(_checked_input(img, num_channels=3))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def describe(self) -> str:
        """A prose description of the preprocessing, to rebuild it in a custom pipeline."""
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image ``torch.Tensor`` objects. "
            "The images are rescaled to ``[0.0, 1.0]``."
        )


def _size_list(name: str, value: int | Sequence[int], lengths: tuple[int, ...]) -> list[int]:
    """A size argument as the reference stores it (a list), checked: positive ints, ``lengths`` long."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else list(value)
    if len(values) not in lengths:
        raise ValueError(f"{name} must hold {' or '.join(map(str, lengths))} ints, got {value!r}")
    return [_positive_int(name, v) for v in values]


class VideoClassification(nn.Module):
    """Resize every frame, center crop, rescale to [0, 1], normalize, and move time behind the channels.

    Accepts a uint8 or float tensor of frames ``(T, C, H, W)`` or a batch of clips ``(B, T, C, H, W)`` (what
    ``read_video(..., output_format="TCHW")`` returns) and gives float32 ``(C, T, h, w)`` or ``(B, C, T, h, w)``,
    the layout of the video models. Float tensors are taken to be in [0, 1] already.

    Args:
        crop_size: (height, width) of the central crop (an int means a square).
        resize_size: ``(h, w)``, or ``(s,)`` for the shorter side (the longer keeps the aspect ratio).
        mean, std: per-channel normalisation; the defaults are the Kinetics-400 statistics of the video ResNets.
        interpolation: resampling filter of the resize, which never antialiases (the published weights were
            evaluated that way).

    Raises:
        TypeError, ValueError: a non-tensor input, a wrong number of dimensions or channels, an empty clip, an
            integer dtype other than uint8, or NaN / infinite values.
    """

    def __init__(
        self,
        *,
        crop_size: int | Sequence[int],
        resize_size: int | Sequence[int],
        mean: Sequence[float] = (0.43216, 0.394666, 0.37645),
        std: Sequence[float] = (0.22803, 0.22145, 0.216989),
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel each, got {list(mean)} and {list(std)}")
        crop = _size_list("crop_size", crop_size, (1, 2))
        self.crop_size = crop * 2 if len(crop) == 1 else crop
        self.resize_size = _size_list("resize_size", resize_size, (1, 2))
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation

    def _check_clip(self, vid: Tensor) -> None:
        if not isinstance(vid, Tensor):
            raise TypeError(
                f"expected a (T, C, H, W) or (B, T, C, H, W) torch.Tensor of frames, got {F._type_name(vid)}"
            )
        shape = tuple(vid.shape)
        if vid.ndim not in (4, 5):
            raise ValueError(f"expected frames (T, C, H, W) or a batch of clips (B, T, C, H, W), got shape {shape}")
        if vid.dtype != torch.uint8 and not vid.is_floating_point():
            raise ValueError(f"unsupported dtype {vid.dtype}: expected torch.uint8 or a floating-point dtype")
        channels = len(self.mean)
        if vid.shape[-3] != channels:
            hint = " (channels-last? permute (..., H, W, C) to (..., C, H, W))" if vid.shape[-1] == channels else ""
            raise ValueError(f"expected {channels} channels in dimension -3, got shape {shape}{hint}")
        if vid.numel() == 0:
            raise ValueError(f"empty clip: got a tensor of shape {shape}")
        bad = F._count_non_finite(vid)
        if bad:
            raise ValueError(f"the clip holds {bad} NaN or infinite values (tensor of shape {shape})")

    def forward(self, vid: Tensor) -> Tensor:
        self._check_clip(vid)
        single = vid.ndim == 4
        clips = vid.unsqueeze(0) if single else vid
        batch, frames = clips.shape[:2]
        out = F.resize(clips.flatten(0, 1), self.resize_size, interpolation=self.interpolation, antialias=False)
        out = F.center_crop(out, self.crop_size)
        out = F.normalize(_to_float_tensor(out), mean=self.mean, std=self.std)
        out = out.unflatten(0, (batch, frames)).transpose(1, 2)  # (B, T, C, h, w) -> (B, C, T, h, w)
        return out[0] if single else out

    def __repr__(self) -> str:
        fields = {
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
        }
        body = "".join(f"\n    {key}={value}" for key, value in fields.items())
        return f"{type(self).__name__}({body}\n)"

    def describe(self) -> str:
        """A prose description of the preprocessing, to rebuild it in a custom pipeline."""
        interpolation = F._parse_interpolation(self.interpolation).value
        if len(self.resize_size) == 1:
            resize = f"Each frame's shorter side is resized to {self.resize_size[0]} pixels (keeping the aspect ratio)"
        else:
            resize = f"Each frame is resized to {self.resize_size[0]}x{self.resize_size[1]} pixels"
        height, width = self.crop_size
        return (
            "Accepts a uint8/float tensor of video frames of shape (T, C, H, W) or a batch of clips (B, T, C, H, W). "
            f"{resize}, with {interpolation} interpolation and no antialiasing; the central "
            f"{height}x{width} pixels are then cropped. uint8 values are rescaled to [0.0, 1.0] by dividing by 255 "
            f"(float tensors are taken as already in [0.0, 1.0]), each channel is normalized as (x - mean) / std with "
            f"mean={self.mean} and std={self.std}, and the dimensions are permuted to (..., C, T, {height}, {width})."
        )


class OpticalFlow(nn.Module):
    """Prepare a pair of frames for a flow model: rescale each to float32 in [0, 1], then map to [-1, 1].

    Takes two images of the same shape (PIL RGB images, or uint8/uint16/float tensors ``(C, H, W)`` or
    ``(N, C, H, W)``; float tensors are taken to be in [0, 1]) and returns the two prepared tensors. Sizes are kept:
    the models need heights and widths divisible by 8 (resize or pad the frames first).
    """

    def forward(self, img1: Tensor | PILImage, img2: Tensor | PILImage) -> tuple[Tensor, Tensor]:
        first, second = (_to_float_tensor(_checked_input(img, num_channels=3)) for img in (img1, img2))
        if first.shape != second.shape:
            raise ValueError(
                f"the two frames must have the same shape, got {tuple(first.shape)} and {tuple(second.shape)}"
            )
        half = [0.5, 0.5, 0.5]
        return (
            F.normalize(first, mean=half, std=half).contiguous(),
            F.normalize(second, mean=half, std=half).contiguous(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def describe(self) -> str:
        """A prose description of the preprocessing, to rebuild it in a custom pipeline."""
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image ``torch.Tensor`` objects. "
            "The images are rescaled to ``[-1.0, 1.0]``."
        )
