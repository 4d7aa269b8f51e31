"""Image operations used by the inference presets: resize, crop, normalize, and conversions between
PIL images, tensors and dtypes.

Every function accepts a PIL image or a tensor image of shape ``(..., C, H, W)`` where that makes sense,
and reproduces the numbers of the reference's ``transforms.functional`` (bit for bit on the inputs the
presets see). PIL is imported lazily, inside the functions that need it: ``import visionzoo.transforms``
must stay cheap. numpy is never required; ndarrays are accepted where the reference accepts them.
"""

from __future__ import annotations

import ctypes
import math
import sys
import warnings
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "InterpolationMode",
    "get_dimensions",
    "get_image_size",
    "get_image_num_channels",
    "pil_to_tensor",
    "to_pil_image",
    "convert_image_dtype",
    "resize",
    "crop",
    "center_crop",
    "normalize",
    "hflip",
]


class InterpolationMode(Enum):
    """Interpolation methods. Tensors support the first four; BOX, HAMMING and LANCZOS exist for PIL."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


# Pillow's integer resampling constants (Image.Resampling), accepted wherever a mode is.
_MODE_FROM_PIL_CODE = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}
_TENSOR_MODES = (
    InterpolationMode.NEAREST,
    InterpolationMode.NEAREST_EXACT,
    InterpolationMode.BILINEAR,
    InterpolationMode.BICUBIC,
)
_SMOOTH_MODES = (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)


def _is_pil_image(obj: Any) -> bool:
    # No PIL image can exist unless PIL.Image has been imported, so checking sys.modules avoids the import.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(obj, pil_image.Image)


def _is_ndarray(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _count_non_finite(tensor: Tensor) -> int:
    """How many NaN or infinite values a floating CPU tensor holds; 0 when it cannot be checked cheaply.

    One summing pass answers the common case (a finite sum means finite values; an exact count follows only
    when it is not), costing about 0.1% of a classifier's forward pass. Not checked, by design: tensors on
    other devices (reading the answer would wait for the device, stalling asynchronous execution and breaking
    CUDA graph capture), tensor subclasses (fake and functional tensors), and code being traced or compiled,
    where a branch on data cannot be recorded.
    """
    if type(tensor) is not Tensor or tensor.device.type != "cpu" or not tensor.is_floating_point():
        return 0
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return 0
    with torch.no_grad():
        # Half-precision sums of ordinary images overflow; accumulate those in float32.
        total = tensor.sum(dtype=torch.float32 if tensor.element_size() < 4 else None)
        if bool(total.isfinite()):
            return 0
        return int((~tensor.isfinite()).sum())


def _check_tensor_image(img: Tensor) -> None:
    if img.ndim < 2:
        raise ValueError(f"expected a tensor image of shape (..., H, W), got shape {tuple(img.shape)}")


def get_dimensions(img: Tensor | PILImage) -> list[int]:
    """Returns ``[channels, height, width]`` of a PIL image or a tensor image ``(..., C, H, W)``."""
    if isinstance(img, Tensor):
        _check_tensor_image(img)
        channels = 1 if img.ndim == 2 else img.shape[-3]
        return [channels, img.shape[-2], img.shape[-1]]
    if _is_pil_image(img):
        width, height = img.size
        return [len(img.getbands()), height, width]
    raise TypeError(f"expected a PIL image or a torch.Tensor, got {_type_name(img)}")


def get_image_size(img: Tensor | PILImage) -> list[int]:
    """Returns ``[width, height]`` (PIL's order, as the reference does)."""
    _, height, width = get_dimensions(img)
    return [width, height]


def get_image_num_channels(img: Tensor | PILImage) -> int:
    """Returns the number of channels (bands, for PIL images)."""
    return get_dimensions(img)[0]


# Non-8-bit PIL modes: element dtype and the byte order of Image.tobytes() (None: native).
_PIL_MODE_STORAGE: dict[str, tuple[torch.dtype, str | None]] = {
    "I": (torch.int32, None),
    "F": (torch.float32, None),
    "I;16": (torch.uint16, "little"),
    "I;16L": (torch.uint16, "little"),
    "I;16B": (torch.uint16, "big"),
    "I;16N": (torch.uint16, None),
}


def pil_to_tensor(pic: PILImage) -> Tensor:
    """Converts a PIL image to a ``(C, H, W)`` tensor, keeping its values and bit depth.

    8-bit modes give uint8, ``"1"`` gives bool, ``"I"`` int32, ``"F"`` float32 and the ``"I;16"`` family
    uint16 (big-endian ``"I;16B"`` included, which the reference rejects). The pixels are copied; the
    result is a channels-last view, like the reference's.
    """
    if not _is_pil_image(pic):
        raise TypeError(f"expected a PIL image, got {_type_name(pic)}")
    width, height = pic.size
    channels = len(pic.getbands())
    dtype, byteorder = _PIL_MODE_STORAGE.get(pic.mode, (torch.uint8, None))
    is_bilevel = pic.mode == "1"
    if is_bilevel:  # tobytes() packs 8 pixels per byte; unpack through 8-bit grayscale (0 or 255)
        pic = pic.convert("L")

    data = bytearray(pic.tobytes())
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != width * height * channels * itemsize:
        raise ValueError(f"unsupported PIL image mode {pic.mode!r}")
    if not data:  # torch.frombuffer refuses empty buffers
        flat = torch.empty(0, dtype=dtype)
    else:
        flat = torch.frombuffer(data, dtype=dtype)
    if byteorder is not None and byteorder != sys.byteorder:
        flat = flat.view(torch.uint8).view(-1, itemsize).flip(-1).reshape(-1).view(dtype)
    if is_bilevel:
        flat = flat != 0
    return flat.view(height, width, channels).permute(2, 0, 1)


# Single-channel dtype -> PIL mode. uint16 -> "I;16" is an addition: the reference only maps int16.
_SINGLE_CHANNEL_MODES = {
    torch.uint8: "L",
    torch.int16: "I;16",
    torch.uint16: "I;16",
    torch.int32: "I",
    torch.float32: "F",
}
_MULTI_CHANNEL_MODES = {2: ("LA",), 3: ("RGB", "YCbCr", "HSV"), 4: ("RGBA", "CMYK", "RGBX")}


def _tensor_bytes(tensor: Tensor) -> bytes:
    # Reads the CPU buffer directly, so converting to PIL needs no numpy.
    tensor = tensor.contiguous()
    return ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size())


def to_pil_image(pic: Tensor | Any, mode: str | None = None) -> PILImage:
    """Converts a ``(C, H, W)`` or ``(H, W)`` tensor, or an ``(H, W, C)``/``(H, W)`` ndarray, to a PIL image.

    Float data is scaled by 255 and truncated to uint8 unless ``mode="F"``. Without ``mode``, the mode is
    inferred: 1 channel -> L / I;16 / I / F by dtype, 2 -> LA, 3 -> RGB, 4 -> RGBA (multi-channel data must
    be uint8). ``mode`` may pick another mode with the same channel count (e.g. YCbCr, CMYK, RGBX).

    Raises:
        TypeError: for an input that is not a tensor or ndarray, or a dtype no PIL mode can hold.
        ValueError: for a bad shape, more than 4 channels, or a ``mode`` that does not fit the data.
    """
    from PIL import Image

    if isinstance(pic, Tensor):
        if pic.ndim not in (2, 3):
            raise ValueError(f"expected a (C, H, W) or (H, W) tensor, got shape {tuple(pic.shape)}")
        data = pic.detach().cpu()
        if data.ndim == 3:
            data = data.permute(1, 2, 0)
    elif _is_ndarray(pic):
        if pic.ndim not in (2, 3):
            raise ValueError(f"expected an (H, W, C) or (H, W) array, got shape {pic.shape}")
        data = torch.tensor(pic)
    else:
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {_type_name(pic)}")

    if data.ndim == 2:
        data = data.unsqueeze(-1)
    height, width, channels = data.shape
    if channels > 4:
        raise ValueError(f"a PIL image holds at most 4 channels, got {channels}")
    if data.is_floating_point() and mode != "F":
        data = (data * 255).to(torch.uint8)

    if channels == 1:
        natural = _SINGLE_CHANNEL_MODES.get(data.dtype)
        if natural is None:
            raise TypeError(f"no PIL mode holds single-channel {data.dtype} data")
        if mode is not None and mode != natural:
            raise ValueError(f"mode {mode!r} does not fit single-channel {data.dtype} data; expected {natural!r}")
        mode = natural
        rawmode = "I;16N" if mode == "I;16" else mode  # our bytes are in native order
    else:
        allowed = _MULTI_CHANNEL_MODES[channels]
        if mode is not None and mode not in allowed:
            raise ValueError(f"mode {mode!r} does not fit {channels}-channel data; expected one of {allowed}")
        if data.dtype != torch.uint8:
            raise TypeError(f"{channels}-channel images must be uint8 (or float in [0, 1]), got {data.dtype}")
        mode = mode or allowed[0]
        rawmode = mode

    if data.numel() == 0:
        return Image.new(mode, (width, height))
    return Image.frombytes(mode, (width, height), _tensor_bytes(data), "raw", rawmode)


def _max_value(dtype: torch.dtype) -> float:
    if dtype.is_floating_point:
        return 1.0
    if dtype == torch.bool:
        return 1.0
    return float(torch.iinfo(dtype).max)


# Integer ranges wider than the float's mantissa: the top values would collide or overflow.
_UNSAFE_FLOAT_TO_INT = {
    (torch.float32, torch.int32),
    (torch.float32, torch.uint32),
    (torch.float32, torch.int64),
    (torch.float32, torch.uint64),
    (torch.float64, torch.int64),
    (torch.float64, torch.uint64),
}


def convert_image_dtype(image: Tensor, dtype: torch.dtype = torch.float) -> Tensor:
    """Converts a tensor image to ``dtype``, rescaling values between the dtypes' ranges.

    Integers span ``[0, max]`` of their dtype, floats ``[0, 1]``. int -> float divides by the integer
    maximum; float -> int multiplies by ``max + 1 - 1e-3`` and truncates (so only exactly 1.0 reaches
    ``max``); int -> int shifts by the ratio of the ranges. Returns ``image`` itself when the dtype matches.

    Raises:
        ValueError: for float -> integer casts the float cannot represent exactly (e.g. float32 -> int32),
            where the reference raises RuntimeError.
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {_type_name(image)}")
    if image.dtype == dtype:
        return image

    if image.is_floating_point():
        if dtype.is_floating_point:
            return image.to(dtype)
        if (image.dtype, dtype) in _UNSAFE_FLOAT_TO_INT:
            raise ValueError(f"the cast from {image.dtype} to {dtype} cannot be performed safely")
        return image.mul(_max_value(dtype) + 1.0 - 1e-3).to(dtype)

    input_max = _max_value(image.dtype)
    if dtype.is_floating_point:
        return image.to(dtype) / input_max

    output_max = _max_value(dtype)
    if input_max > output_max:
        factor = int((input_max + 1) // (output_max + 1))
        return torch.div(image, factor, rounding_mode="floor").to(dtype)
    factor = int((output_max + 1) // (input_max + 1))
    return image.to(dtype) * factor


def _parse_interpolation(interpolation: InterpolationMode | int | str) -> InterpolationMode:
    if isinstance(interpolation, InterpolationMode):
        return interpolation
    if isinstance(interpolation, int) and interpolation in _MODE_FROM_PIL_CODE:
        return _MODE_FROM_PIL_CODE[interpolation]
    if isinstance(interpolation, str):
        try:
            return InterpolationMode(interpolation)
        except ValueError:
            pass
    raise TypeError(
        f"interpolation must be an InterpolationMode, its value or a Pillow resampling constant, got {interpolation!r}"
    )


def _resized_output_size(height: int, width: int, size: Sequence[int], max_size: int | None) -> tuple[int, int]:
    if len(size) == 2:
        return size[0], size[1]
    if min(height, width) == 0:
        raise ValueError(f"cannot resize a zero-sized image ({height}x{width}) by its shorter side")
    short, long = (width, height) if width <= height else (height, width)
    new_short = size[0]
    # Truncation, not rounding: the reference's rule, which the pretrained weights were evaluated with.
    new_long = int(new_short * long / short)
    if max_size is not None:
        if max_size <= new_short:
            raise ValueError(f"max_size={max_size} must be greater than the shorter-side size {new_short}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize(
    img: Tensor | PILImage,
    size: int | Sequence[int],
    interpolation: InterpolationMode | int | str = InterpolationMode.BILINEAR,
    max_size: int | None = None,
    antialias: bool | None = True,
) -> Tensor | PILImage:
    """Resizes a PIL image or a tensor image ``(..., H, W)``.

    Args:
        size: ``(h, w)``, or one int (or a 1-element sequence) for the shorter side; the longer side is
            then ``int(size * long / short)``, keeping the aspect ratio.
        interpolation: tensors support nearest, nearest-exact, bilinear and bicubic; PIL images also box,
            hamming and lanczos.
        max_size: caps the longer side when ``size`` gives the shorter one (the shorter side shrinks to fit).
        antialias: low-pass filters tensors when downsampling with bilinear/bicubic. ``None`` means False
            (legacy). PIL always antialiases; passing False with a PIL image warns.

    Integer tensors are resized in float32, clamped to the dtype's range, rounded and cast back, which
    gives exactly the reference's uint8 output. The input is returned as is when the size does not change.
    """
    interpolation = _parse_interpolation(interpolation)
    if isinstance(size, int):
        size = [size]
    if not isinstance(size, Sequence) or len(size) not in (1, 2):
        raise ValueError(f"size must be an int or a sequence of 1 or 2 ints, got {size!r}")
    if not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"size must hold positive ints, got {size!r}")
    if max_size is not None and len(size) != 1:
        raise ValueError(f"max_size is only allowed when size gives the shorter side, got size={size!r}")

    _, height, width = get_dimensions(img)
    out_height, out_width = _resized_output_size(height, width, size, max_size)
    if (out_height, out_width) == (height, width):
        return img

    if not isinstance(img, Tensor):
        return _resize_pil(img, out_height, out_width, interpolation, antialias)
    return _resize_tensor(img, out_height, out_width, interpolation, antialias)


def _resize_pil(
    img: PILImage, height: int, width: int, interpolation: InterpolationMode, antialias: bool | None
) -> PILImage:
    from PIL import Image

    if antialias is False:
        warnings.warn("PIL always antialiases; antialias=False is ignored for PIL images", stacklevel=3)
    name = "NEAREST" if interpolation is InterpolationMode.NEAREST_EXACT else interpolation.name
    return img.resize((width, height), Image.Resampling[name])


def _resize_tensor(
    img: Tensor, height: int, width: int, interpolation: InterpolationMode, antialias: bool | None
) -> Tensor:
    if interpolation not in _TENSOR_MODES:
        raise ValueError(
            f"{interpolation} is only available for PIL images; tensors support "
            f"{', '.join(mode.value for mode in _TENSOR_MODES)}"
        )
    smooth = interpolation in _SMOOTH_MODES
    # interpolate() wants (N, C, H, W). Views keep 3D/4D inputs' strides (channels-last included), which
    # selects the same kernel, and so the same float rounding, as the reference.
    if img.ndim == 2:
        batch = img[None, None]
    elif img.ndim == 3:
        batch = img[None]
    else:
        batch = img.reshape(math.prod(img.shape[:-3]), *img.shape[-3:])

    out_dtype = img.dtype
    if out_dtype not in (torch.float32, torch.float64):
        batch = batch.to(torch.float32)
    batch = torch.nn.functional.interpolate(
        batch,
        size=(height, width),
        mode=interpolation.value,
        align_corners=False if smooth else None,
        antialias=bool(antialias) and smooth,
    )
    if not out_dtype.is_floating_point and out_dtype != torch.bool:
        # Bicubic overshoots; bilinear and nearest stay in range, so the clamp only acts on bicubic.
        info = torch.iinfo(out_dtype)
        batch = batch.clamp(info.min, info.max).round()
    return batch.to(out_dtype).reshape(*img.shape[:-2], height, width)


def crop(img: Tensor | PILImage, top: int, left: int, height: int, width: int) -> Tensor | PILImage:
    """Crops the box ``(top, left, height, width)``; parts of the box outside the image are zeros."""
    if not isinstance(img, Tensor):
        if not _is_pil_image(img):
            raise TypeError(f"expected a PIL image or a torch.Tensor, got {_type_name(img)}")
        return img.crop((left, top, left + width, top + height))  # PIL fills outside pixels with 0

    _check_tensor_image(img)
    image_height, image_width = img.shape[-2:]
    bottom, right = top + height, left + width
    inside = img[..., max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)]
    if top >= 0 and left >= 0 and bottom <= image_height and right <= image_width:
        return inside
    padding = [
        min(max(-left, 0), width),
        min(max(right - image_width, 0), width),
        min(max(-top, 0), height),
        min(max(bottom - image_height, 0), height),
    ]
    return torch.nn.functional.pad(inside, padding, value=0)


def _crop_offset(image_length: int, crop_length: int) -> int:
    if crop_length > image_length:
        # Zero padding: the extra pixel of an odd margin goes after the image.
        return -((crop_length - image_length) // 2)
    # Python's round() rounds halves to even, so an odd margin puts its extra pixel before or after the
    # crop depending on its size. Kept, because the reference's numbers depend on it.
    return int(round((image_length - crop_length) / 2.0))


def center_crop(img: Tensor | PILImage, output_size: int | Sequence[int]) -> Tensor | PILImage:
    """Crops the center ``output_size`` (int, or ``(h, w)``), padding with zeros where the image is smaller."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    elif isinstance(output_size, Sequence) and len(output_size) == 1:
        output_size = (output_size[0], output_size[0])
    if not isinstance(output_size, Sequence) or len(output_size) != 2:
        raise ValueError(f"output_size must be an int or a sequence of 1 or 2 ints, got {output_size!r}")
    crop_height, crop_width = (int(s) for s in output_size)
    if crop_height <= 0 or crop_width <= 0:
        raise ValueError(f"output_size must be positive, got {output_size!r}")

    _, height, width = get_dimensions(img)
    top, left = _crop_offset(height, crop_height), _crop_offset(width, crop_width)
    return crop(img, top, left, crop_height, crop_width)


def normalize(
    tensor: Tensor, mean: Sequence[float] | float, std: Sequence[float] | float, inplace: bool = False
) -> Tensor:
    """Returns ``(tensor - mean) / std`` per channel for a float tensor image ``(..., C, H, W)``.

    Raises:
        TypeError: if ``tensor`` is not a floating-point tensor.
        ValueError: if it has fewer than 3 dims, ``mean``/``std`` do not match its channels, or ``std``
            holds a zero.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {_type_name(tensor)}")
    if not tensor.is_floating_point():
        raise TypeError(f"normalize expects a floating-point tensor, got {tensor.dtype}")
    if tensor.ndim < 3:
        raise ValueError(f"expected a tensor image of shape (..., C, H, W), got shape {tuple(tensor.shape)}")

    channels = tensor.shape[-3]
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
    for name, stat in (("mean", mean_t), ("std", std_t)):
        if stat.ndim > 1 or stat.numel() not in (1, channels):
            raise ValueError(f"{name} must hold 1 or {channels} values (one per channel), got {stat.tolist()}")
    if (std_t == 0).any():
        raise ValueError(f"std evaluated to zero in {tensor.dtype}, which would divide by zero: {std!r}")
    if mean_t.ndim == 1:
        mean_t = mean_t.view(-1, 1, 1)
    if std_t.ndim == 1:
        std_t = std_t.view(-1, 1, 1)

    out = tensor if inplace else tensor.clone()
    # Subtract then divide (not multiply by 1/std): the reference's order, so results agree to the bit.
    return out.sub_(mean_t).div_(std_t)


def hflip(img: Tensor | PILImage) -> Tensor | PILImage:
    """Mirrors an image left to right (a PIL image, or a tensor image ``(..., H, W)``)."""
    if not isinstance(img, Tensor):
        if not _is_pil_image(img):
            raise TypeError(f"expected a PIL image or a torch.Tensor, got {_type_name(img)}")
        from PIL import Image

        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    _check_tensor_image(img)
    return img.flip(-1)
