"""Image files to CHW tensors and back, with the behaviour of ``torchvision.io``'s image functions.

Pillow does the codec work. Around it this module adds what the reference's own decoders do: its channel
conversions (PNG's libpng luma formula, JPEG's luma taken straight from the YCbCr planes, CMYK returned as
stored), 16-bit PNGs as ``uint16`` and palette PNGs as their indices. It also refuses hostile input before
allocating for it: only the five formats below are handed to Pillow, declared sizes above
:data:`MAX_IMAGE_PIXELS` are refused, and truncated or corrupt data raises :class:`ImageDecodeError`
instead of giving a partly grey image.

Formats: JPEG, PNG, GIF (first frame only), WebP (first frame of an animation), BMP.
"""

from __future__ import annotations

import enum
import io
import os
import sys
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ImageDecodeError",
    "ImageReadMode",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "encode_jpeg",
    "encode_png",
    "read_file",
    "read_image",
    "write_jpeg",
    "write_png",
]

MAX_IMAGE_PIXELS: int | None = 178_956_970
"""Decoders refuse images whose declared width * height exceeds this; ``None`` turns the check off.

The default is the size at which Pillow itself gives up (twice its warning threshold). Set it on this module,
``visionzoo.io.image.MAX_IMAGE_PIXELS = ...``, not on a name imported from it.
"""

_EXIF_ORIENTATION_TAG = 0x0112

# libpng's rgb_to_gray weights as the reference sets them (0.2989, 0.587 and the rest for blue), in 1/32768ths.
# libpng floors for 8-bit samples and rounds for 16-bit ones; doing the same here matches it exactly.
_LUMA_WEIGHTS = (9794, 19234, 3740)


class ImageReadMode(enum.Enum):
    """The channels a decoder returns. Functions also accept the names as strings, in any case ("rgb").

    - ``UNCHANGED``: the channels stored in the file (palette PNGs: the palette indices; GIF: RGB).
    - ``GRAY``, ``GRAY_ALPHA``, ``RGB``, ``RGB_ALPHA`` (alias ``RGBA``): converted to these channels.
    """

    UNCHANGED = 0
    GRAY = 1
    GRAY_ALPHA = 2
    RGB = 3
    RGB_ALPHA = 4
    RGBA = RGB_ALPHA

    @classmethod
    def _missing_(cls, value: object) -> ImageReadMode | None:
        if isinstance(value, str):
            return cls.__members__.get(value.upper())
        return None


class ImageDecodeError(ValueError):
    """The data is not an image this module can decode: corrupt, truncated, unsupported or too large."""


def _as_read_mode(mode: ImageReadMode | str) -> ImageReadMode:
    if isinstance(mode, ImageReadMode):
        return mode
    # Strings, and members of look-alike enums (the reference's own ImageReadMode), by name.
    name = mode if isinstance(mode, str) else getattr(mode, "name", None)
    if isinstance(name, str) and name.upper() in ImageReadMode.__members__:
        return ImageReadMode[name.upper()]
    choices = ", ".join(ImageReadMode.__members__)
    raise ValueError(f"mode must be an ImageReadMode or one of {choices} (as a string), got {mode!r}")


# ---------------------------------------------------------------------------------------------------- reading


def _read_bytes(path: str | os.PathLike[str]) -> bytearray:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(size)
        n = f.readinto(buf)
        if n < size:  # the file shrank while we read it
            del buf[n:]
        rest = f.read()  # non-regular files report no size; a file that grew goes on here
        if rest:
            buf += rest
    return buf


def _bytes_to_tensor(buf: bytes | bytearray) -> torch.Tensor:
    if not buf:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(buf if isinstance(buf, bytearray) else bytearray(buf), dtype=torch.uint8)


def _tensor_to_bytes(t: torch.Tensor) -> bytearray:
    """The bytes of a uint8 tensor in C order, without going through NumPy (not a dependency)."""
    buf = bytearray(t.numel())
    if buf:
        torch.frombuffer(buf, dtype=torch.uint8).copy_(t.reshape(-1))
    return buf


def read_file(path: str | os.PathLike[str]) -> torch.Tensor:
    """Returns the bytes of the file at ``path`` as a 1-D ``uint8`` tensor (empty for an empty file).

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: as ``open`` does.
    """
    return _bytes_to_tensor(_read_bytes(path))


def read_image(
    path: str | os.PathLike[str],
    mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
    apply_exif_orientation: bool = False,
) -> torch.Tensor:
    """Reads and decodes the image file at ``path``; see :func:`decode_image`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageDecodeError: the file is not a decodable image; the message names ``path``.
    """
    return _decode(_read_bytes(path), mode, apply_exif_orientation, name=os.fspath(path), expected=None)


def decode_image(
    data: torch.Tensor | bytes | bytearray | str | os.PathLike[str],
    mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
    apply_exif_orientation: bool = False,
    *,
    name: str | None = None,
) -> torch.Tensor:
    """Decodes a JPEG, PNG, GIF, WebP or BMP image into a ``[channels, height, width]`` tensor.

    The result is ``uint8``, except for 16-bit PNGs, which give ``uint16`` in [0, 65535] whatever the mode.

    Args:
        data: the encoded bytes (a 1-D ``uint8`` tensor or a bytes-like object), or a path to read them from.
        mode: the channels to return (:class:`ImageReadMode` or its name). ``UNCHANGED`` keeps the file's own:
            1 to 4 for PNG (palette PNGs give their indices, 1 channel), 1/3/4 for JPEG (CMYK as stored, as the
            reference does), 3 or 4 for WebP, 3 for GIF, 1, 3 or 4 for BMP (palettes expanded). Unlike the
            reference, every mode works for every format: alpha is added as opaque, and GRAY works for WebP
            and GIF as well.
        apply_exif_orientation: rotate/flip the image as its EXIF orientation tag says (any format whose
            EXIF Pillow reads, JPEG and PNG included).
        name: how error messages name the data; defaults to the path, or ``"<bytes>"``.

    Returns:
        The image. An animated GIF or WebP gives its first frame only (the reference returns every GIF frame
        as ``[frames, 3, height, width]``).

    Raises:
        ImageDecodeError: the data is empty, corrupt, truncated, not one of the formats above, or declares more
            than :data:`MAX_IMAGE_PIXELS` pixels. (Truncation is detected while pixel data is missing; a file
            that lacks only a trailing checksum or end marker decodes. Setting Pillow's process-wide
            ``ImageFile.LOAD_TRUNCATED_IMAGES`` turns truncation into grey pixels here too.)
        TypeError, ValueError: ``data`` is a tensor that is not 1-D ``uint8``, or ``mode`` is unknown.
    """
    buf, default_name = _as_encoded_bytes(data)
    return _decode(buf, mode, apply_exif_orientation, name=name or default_name, expected=None)


def decode_png(
    data: torch.Tensor | bytes | bytearray,
    mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
    apply_exif_orientation: bool = False,
    *,
    name: str | None = None,
) -> torch.Tensor:
    """:func:`decode_image`, raising :class:`ImageDecodeError` unless ``data`` is a PNG."""
    buf, default_name = _as_encoded_bytes(data)
    return _decode(buf, mode, apply_exif_orientation, name=name or default_name, expected="PNG")


def decode_jpeg(
    data: torch.Tensor | bytes | bytearray,
    mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
    apply_exif_orientation: bool = False,
    *,
    name: str | None = None,
) -> torch.Tensor:
    """:func:`decode_image`, raising :class:`ImageDecodeError` unless ``data`` is a JPEG."""
    buf, default_name = _as_encoded_bytes(data)
    return _decode(buf, mode, apply_exif_orientation, name=name or default_name, expected="JPEG")


def _as_encoded_bytes(data: Any) -> tuple[bytes | bytearray | memoryview, str]:
    if isinstance(data, torch.Tensor):
        if data.dtype != torch.uint8:
            raise TypeError(f"encoded image tensor must be torch.uint8, got {data.dtype}")
        if data.dim() != 1:
            raise ValueError(f"encoded image tensor must be 1-D, got shape {tuple(data.shape)}")
        return _tensor_to_bytes(data.cpu()), "<bytes>"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data, "<bytes>"
    if isinstance(data, (str, os.PathLike)):
        return _read_bytes(data), os.fspath(data)
    raise TypeError(f"data must be a uint8 tensor, bytes or a path, got {type(data).__name__}")


def _sniff_format(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BM"):
        return "BMP"
    return None


def _open_with_pillow(buf: bytes | bytearray | memoryview, fmt: str) -> Image.Image:
    """Builds Pillow's image object for ``fmt`` directly: that reads the header only and, unlike
    ``Image.open``, neither tries Pillow's other formats nor applies Pillow's own size limit (ours follows)."""
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin

    if fmt == "WebP":
        from PIL import WebPImagePlugin

        if not getattr(WebPImagePlugin, "SUPPORTED", True):
            raise ImageDecodeError("this Pillow was built without WebP support")
        return WebPImagePlugin.WebPImageFile(io.BytesIO(buf))
    factory = {
        "PNG": PngImagePlugin.PngImageFile,
        "JPEG": JpegImagePlugin.JpegImageFile,
        "GIF": GifImagePlugin.GifImageFile,
        "BMP": BmpImagePlugin.BmpImageFile,
    }[fmt]
    return factory(io.BytesIO(buf))


def _decode(
    buf: bytes | bytearray | memoryview,
    mode: ImageReadMode | str,
    apply_exif_orientation: bool,
    *,
    name: str,
    expected: str | None,
) -> torch.Tensor:
    mode = _as_read_mode(mode)
    if len(buf) == 0:
        raise ImageDecodeError(f"{name}: no data (empty file or buffer)")
    fmt = _sniff_format(bytes(buf[:12]))
    if fmt is None:
        raise ImageDecodeError(f"{name}: not a JPEG, PNG, GIF, WebP or BMP image (starts with {bytes(buf[:8])!r})")
    if expected is not None and fmt != expected:
        raise ImageDecodeError(f"{name}: expected {expected} data, found {fmt}")
    try:
        if fmt == "WebP":  # libwebp allocates the whole canvas while Pillow opens the file: check it first
            declared = _webp_declared_size(bytes(buf[:30]))
            if declared is not None:
                _check_size(declared)
        with _open_with_pillow(buf, fmt) as im:
            _check_size(im.size)
            pixels, layout, bits = _load_pixels(im, buf, fmt, mode)
            orientation = _exif_orientation(im) if apply_exif_orientation else 1
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{name}: {e}") from None
    except _pillow_bomb_error() as e:
        # Pillow applies its own limit inside some decoders (WebP, GIF frames larger than their screen).
        raise ImageDecodeError(
            f"{name}: {e} This is Pillow's limit, PIL.Image.MAX_IMAGE_PIXELS, which also applies to {fmt} files"
        ) from e
    except Exception as e:  # Pillow signals bad data with many types (OSError, SyntaxError, struct.error, ...)
        cause = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ImageDecodeError(f"{name}: cannot decode {fmt} data ({cause})") from e

    pixels = _convert_channels(pixels, layout, mode, bits)
    pixels = _orient(pixels, orientation)
    if bits == 16:
        pixels = _to_uint16(pixels)
    return pixels.permute(2, 0, 1)


def _webp_declared_size(head: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP header declares (VP8X, VP8L or VP8 first chunk), or None if it cannot tell."""
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended format: 24-bit canvas width-1 and height-1
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit width-1 and height-1 after the signature
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit sizes, 2 scale bits
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def _pillow_bomb_error() -> type[Exception]:
    from PIL import Image

    return Image.DecompressionBombError


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    limit = MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ImageDecodeError(
            f"image declares {width}x{height} = {width * height} pixels, more than the limit of "
            f"{limit} (a possible decompression bomb); raise visionzoo.io.image.MAX_IMAGE_PIXELS to read it"
        )


# -------------------------------------------------------------------------------- Pillow image -> HWC tensor
#
# _load_pixels returns (pixels, layout, bits): an HWC tensor, what its channels are ("L", "LA", "RGB", "RGBA",
# or "CMYK" for JPEG UNCHANGED), and the sample depth. 8-bit pixels are uint8; 16-bit ones are int32 until the
# very end, because uint16 arithmetic is missing from older torch releases.


def _load_pixels(im: Image.Image, buf: Any, fmt: str, mode: ImageReadMode) -> tuple[torch.Tensor, str, int]:
    if fmt == "PNG":
        if bytes(buf[12:16]) != b"IHDR":  # Pillow has parsed it, but make sure it is where we read it from
            raise ImageDecodeError("invalid PNG: the first chunk is not IHDR")
        bit_depth, color_type = buf[24], buf[25]
        if bit_depth == 16:
            layout = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}.get(color_type, "")
            return _load_png16(im, buf, color_type), layout, 16
        if im.mode == "P" and mode is ImageReadMode.UNCHANGED:
            im.load()
            return _pillow_to_tensor(im), "L", 8  # the palette indices, as the reference returns them
    if fmt == "JPEG":
        return _load_jpeg(im, mode)
    if fmt == "GIF":
        return _load_gif_first_frame(im, with_alpha=mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA))

    im.load()
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        # Only a palette's own alpha counts; a tRNS chunk on a grey or RGB PNG is ignored, as libpng does.
        has_alpha = im.mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageDecodeError(f"unsupported {fmt} pixel mode {im.mode!r}")
    return _pillow_to_tensor(im), im.mode, 8


def _load_jpeg(im: Image.Image, mode: ImageReadMode) -> tuple[torch.Tensor, str, int]:
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA) and im.mode == "RGB":
        # Ask libjpeg for the luma plane itself, as the reference does, instead of converting decoded RGB.
        im.draft("L", im.size)
    inverted = _tile_rawmode(im) == "CMYK;I"  # Adobe CMYK is stored inverted; Pillow undoes that
    im.load()
    if im.mode == "CMYK":
        if mode is ImageReadMode.UNCHANGED:  # the reference returns the samples as stored
            cmyk = _pillow_to_tensor(im)
            return (255 - cmyk if inverted else cmyk), "CMYK", 8
        im = im.convert("L" if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA) else "RGB")
    if im.mode not in ("L", "RGB"):
        raise ImageDecodeError(f"unsupported JPEG pixel mode {im.mode!r}")
    return _pillow_to_tensor(im), im.mode, 8


def _load_gif_first_frame(im: Image.Image, with_alpha: bool) -> tuple[torch.Tensor, str, int]:
    """The first frame as RGB, plus alpha if asked for and the frame has a transparent colour.

    Transparent pixels get the logical screen's background colour, as the reference's GIF decoder paints them.
    """
    im.load()
    transparency = im.info.get("transparency")
    if im.mode not in ("P", "L") or not isinstance(transparency, int):
        return _pillow_to_tensor(im.convert("RGB")), "RGB", 8
    rgb = _pillow_to_tensor(im.convert("RGB"))
    transparent = _pillow_to_tensor(im)[..., 0] == transparency
    background = im.info.get("background", 0)
    if im.mode == "L":  # Pillow drops identity grey palettes: the index is the grey level
        colour: list[int] | None = [background] * 3 if isinstance(background, int) else None
    else:
        palette = im.global_palette.palette if getattr(im, "global_palette", None) else b""
        start = 3 * background if isinstance(background, int) else len(palette)
        colour = list(palette[start : start + 3]) if start + 3 <= len(palette) else None
    if colour is not None:
        rgb[transparent] = torch.tensor(colour, dtype=torch.uint8)
    if not with_alpha:
        return rgb, "RGB", 8
    alpha = (~transparent).to(torch.uint8).mul_(255).unsqueeze(-1)
    return torch.cat([rgb, alpha], dim=-1), "RGBA", 8


def _load_png16(im: Image.Image, buf: Any, color_type: int) -> torch.Tensor:
    """16-bit PNG samples as int32 HWC.

    Pillow keeps 16-bit grey as is, but cuts 16-bit colour to its high bytes. Its unpackers for the
    little-endian layouts pick the other byte of each big-endian pair, so decoding colour twice, once per
    byte, recovers the samples; grey+alpha decodes in one pass as 4 raw bytes per pixel.
    """
    if color_type == 0:
        im.load()
        if im.mode == "I;16":
            raw = im.tobytes("raw", "I;16" if sys.byteorder == "little" else "I;16B")
            samples = _bytes_to_tensor(bytearray(raw)).view(torch.int16).to(torch.int32).bitwise_and_(0xFFFF)
            return samples.reshape(im.size[1], im.size[0], 1)
        if im.mode == "I":
            return _pillow_to_tensor(im).view(torch.int32).reshape(im.size[1], im.size[0], 1)
        raise ImageDecodeError(f"unexpected Pillow mode {im.mode!r} for a 16-bit grey PNG")

    expected = {2: ("RGB", "RGB;16B"), 4: ("RGBA", "LA;16B"), 6: ("RGBA", "RGBA;16B")}.get(color_type)
    if expected is None:
        raise ImageDecodeError(f"invalid PNG: colour type {color_type} cannot have 16-bit samples")
    if (im.mode, _tile_rawmode(im)) != expected:
        raise ImageDecodeError(
            f"this Pillow decodes 16-bit PNG colour type {color_type} as {im.mode}/{_tile_rawmode(im)}, "
            f"not {expected[0]}/{expected[1]} as visionzoo expects"
        )
    if color_type == 4:
        raw = _decode_with_rawmode(im, "RGBA").to(torch.int32)  # L high, L low, A high, A low
        return torch.stack([raw[..., 0] * 256 + raw[..., 1], raw[..., 2] * 256 + raw[..., 3]], dim=-1)
    high = _decode_with_rawmode(im, expected[1]).to(torch.int32)
    with _open_with_pillow(buf, "PNG") as second:
        low = _decode_with_rawmode(second, expected[1].replace("16B", "16L"))
    return high * 256 + low


def _tile_rawmode(im: Image.Image) -> str | None:
    if len(im.tile) != 1:
        return None
    args = im.tile[0][3]
    return args[0] if isinstance(args, tuple) else args


def _decode_with_rawmode(im: Image.Image, rawmode: str) -> torch.Tensor:
    tile = im.tile[0]
    codec, extents, offset, args = tile
    fields = (codec, extents, offset, (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode)
    im.tile = [fields if type(tile) is tuple else type(tile)(*fields)]  # a NamedTuple since Pillow 11
    im.load()
    return _pillow_to_tensor(im)


def _pillow_to_tensor(im: Image.Image) -> torch.Tensor:
    """An 8-bit-per-channel Pillow image as a uint8 HWC tensor (a 32-bit "I" image as 4 bytes per pixel)."""
    width, height = im.size
    data = _bytes_to_tensor(bytearray(im.tobytes()))
    return data.reshape(height, width, -1)


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a malformed EXIF block leaves the pixels as they are; it is not worth failing for
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# ------------------------------------------------------------------------------------- channel conversions


def _luma(rgb: torch.Tensor, bits: int) -> torch.Tensor:
    dtype = torch.int32 if bits == 8 else torch.int64
    r, g, b = rgb.to(dtype).unbind(-1)
    wr, wg, wb = _LUMA_WEIGHTS
    rounding = 0 if bits == 8 else 1 << 14
    y = (wr * r + wg * g + wb * b + rounding) >> 15
    return y.to(rgb.dtype).unsqueeze(-1)


def _convert_channels(pixels: torch.Tensor, layout: str, mode: ImageReadMode, bits: int) -> torch.Tensor:
    if mode is ImageReadMode.UNCHANGED:
        return pixels
    # CMYK only reaches here for UNCHANGED; every other JPEG mode was converted by Pillow.
    has_colour, has_alpha = layout in ("RGB", "RGBA"), layout in ("LA", "RGBA")
    want_colour = mode in (ImageReadMode.RGB, ImageReadMode.RGB_ALPHA)
    want_alpha = mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA)
    if (has_colour, has_alpha) == (want_colour, want_alpha):
        return pixels

    colour = pixels[..., :3] if has_colour else pixels[..., :1]
    if want_colour and not has_colour:
        colour = colour.expand(-1, -1, 3)
    elif has_colour and not want_colour:
        colour = _luma(colour, bits)
    if not want_alpha:
        return colour.contiguous()
    if has_alpha:
        alpha = pixels[..., -1:]
    else:
        alpha = torch.full_like(pixels[..., :1], (1 << bits) - 1)
    return torch.cat([colour, alpha], dim=-1)


def _orient(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """Applies an EXIF orientation (1-8) to an HWC tensor: the transform that makes the image upright."""
    if orientation == 2:
        return pixels.flip(1)
    if orientation == 3:
        return pixels.flip(0, 1)
    if orientation == 4:
        return pixels.flip(0)
    if orientation == 5:
        return pixels.transpose(0, 1)
    if orientation == 6:  # rotated 90 degrees clockwise in the viewer's eyes
        return pixels.transpose(0, 1).flip(1)
    if orientation == 7:
        return pixels.transpose(0, 1).flip(0, 1)
    if orientation == 8:
        return pixels.transpose(0, 1).flip(0)
    return pixels


def _to_uint16(pixels: torch.Tensor) -> torch.Tensor:
    """int32 samples in [0, 65535] to uint16, by way of int16 bit patterns (casts to uint16 need torch 2.3+
    kernels that not every op has)."""
    wrapped = torch.where(pixels >= 1 << 15, pixels - (1 << 16), pixels)
    return wrapped.to(torch.int16).view(torch.uint16)


# ---------------------------------------------------------------------------------------------------- writing


def _image_for_encoding(input: Any, fn: str) -> Image.Image:
    from PIL import Image

    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}: expected a torch.Tensor image, got {type(input).__name__}")
    if input.dtype != torch.uint8:
        raise TypeError(f"{fn}: expected a torch.uint8 image, got {input.dtype}")
    if input.dim() != 3 or input.shape[0] not in (1, 3):
        raise ValueError(f"{fn}: expected a [1 or 3, height, width] image, got shape {tuple(input.shape)}")
    channels, height, width = input.shape
    if height == 0 or width == 0:
        raise ValueError(f"{fn}: the image is empty, shape {tuple(input.shape)}")
    hwc = input.detach().cpu().permute(1, 2, 0).contiguous()
    return Image.frombytes("L" if channels == 1 else "RGB", (width, height), bytes(_tensor_to_bytes(hwc)))


def _encode(im: Image.Image, fmt: str, **options: Any) -> torch.Tensor:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return _bytes_to_tensor(bytearray(out.getbuffer()))


def encode_png(input: torch.Tensor, compression_level: int = 6) -> torch.Tensor:
    """Encodes a ``uint8`` ``[1 or 3, H, W]`` image as PNG; returns the file's bytes as a 1-D ``uint8`` tensor.

    Args:
        compression_level: zlib level, 0 (none) to 9 (smallest).
    """
    if isinstance(compression_level, bool) or not isinstance(compression_level, int) or not 0 <= compression_level <= 9:
        raise ValueError(f"compression_level must be an int in [0, 9], got {compression_level!r}")
    return _encode(_image_for_encoding(input, "encode_png"), "PNG", compress_level=compression_level)


def write_png(input: torch.Tensor, filename: str | os.PathLike[str], compression_level: int = 6) -> torch.Tensor:
    """Encodes ``input`` as PNG (see :func:`encode_png`), writes it to ``filename`` and returns the bytes."""
    data = encode_png(input, compression_level)
    _write_bytes(filename, data)
    return data


def encode_jpeg(input: torch.Tensor | list[torch.Tensor], quality: int = 75) -> torch.Tensor | list[torch.Tensor]:
    """Encodes a ``uint8`` ``[1 or 3, H, W]`` image (or a list of them) as JPEG; returns 1-D ``uint8`` tensors.

    Args:
        quality: 1 (smallest) to 100 (best); chroma is subsampled 4:2:0, as libjpeg does by default.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int in [1, 100], got {quality!r}")
    if isinstance(input, (list, tuple)):
        if not input:
            raise ValueError("encode_jpeg: got an empty list of images")
        return [encode_jpeg(image, quality) for image in input]  # type: ignore[misc]
    return _encode(_image_for_encoding(input, "encode_jpeg"), "JPEG", quality=quality)


def write_jpeg(input: torch.Tensor, filename: str | os.PathLike[str], quality: int = 75) -> torch.Tensor:
    """Encodes ``input`` as JPEG (see :func:`encode_jpeg`), writes it to ``filename`` and returns the bytes."""
    data = encode_jpeg(input, quality)
    assert isinstance(data, torch.Tensor)
    _write_bytes(filename, data)
    return data


def _write_bytes(filename: str | os.PathLike[str], data: torch.Tensor) -> None:
    with open(filename, "wb") as f:
        f.write(_tensor_to_bytes(data))
