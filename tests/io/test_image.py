"""visionzoo.io.image against torchvision.io (the oracle), on images written here with Pillow.

Measured with Pillow 13.0 and torchvision 0.29.1 (both decode through libjpeg-turbo, libpng, libwebp): every
comparison below is exact, JPEG included. Where the reference has no answer (BMP, modes it refuses or gets
wrong), the test builds the expected value from the reference's decoding of the same pixels as a PNG.
"""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import visionzoo.io as vio
import visionzoo.io.image as vio_image
from tests.reference import io as ref_io

MODES = ("UNCHANGED", "GRAY", "GRAY_ALPHA", "RGB", "RGB_ALPHA")
ALL = MODES
H, W = 19, 27  # odd and unequal: chroma subsampling edges, transposes show


# ------------------------------------------------------------------------------------------ making images


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_image(mode: str, seed: int = 0, size: tuple[int, int] = (W, H)) -> Image.Image:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    pixels = _rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.frombytes(mode, size, pixels.tobytes())


def _smooth_rgb(size: tuple[int, int] = (64, 48)) -> torch.Tensor:
    """A gradient image: JPEG keeps it close, so round trips can be checked with a tight bound."""
    y, x = torch.meshgrid(torch.arange(size[1]), torch.arange(size[0]), indexing="ij")
    return torch.stack([x * 255 // size[0], y * 255 // size[1], (x + y) * 255 // sum(size)]).to(torch.uint8)


def _save(im: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(samples: np.ndarray, bit_depth: int, color_type: int) -> bytes:
    """A PNG written by hand, for what Pillow cannot write: 16-bit colour and 2-bit grey.

    Rows cycle through the None, Sub and Up filters so the decoder's unfiltering is exercised too.
    """
    height = samples.shape[0]
    if bit_depth == 16:
        rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
        bpp = rows.shape[1] // samples.shape[1]
    else:  # pack sub-byte grey samples, most significant first
        per_byte = 8 // bit_depth
        padded = np.zeros((height, -(-samples.shape[1] // per_byte) * per_byte), np.uint8)
        padded[:, : samples.shape[1]] = samples.reshape(height, -1)
        shifts = np.arange(per_byte)[::-1] * bit_depth
        rows = (padded.reshape(height, -1, per_byte) << shifts).sum(-1).astype(np.uint8)
        bpp = 1
    encoded = []
    for i, row in enumerate(rows.astype(np.int64)):
        kind = i % 3 if i > 0 else i % 2
        if kind == 1:
            row = np.concatenate([row[:bpp], row[bpp:] - row[:-bpp]])
        elif kind == 2:
            row = row - rows[i - 1]
        encoded.append(bytes([kind]) + (row % 256).astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", samples.shape[1], height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"".join(encoded)))
        + _chunk(b"IEND", b"")
    )


def _gif(frames: list[Image.Image], **options) -> bytes:
    return _save(frames[0], "GIF", save_all=len(frames) > 1, append_images=frames[1:], **options)


def _palette_image(colours: int, seed: int = 0) -> Image.Image:
    return _random_image("RGB", seed).quantize(colours)


@cache
def _case(name: str) -> bytes:
    png16 = {"png_L16": (1, 0), "png_LA16": (2, 4), "png_RGB16": (3, 2), "png_RGBA16": (4, 6)}
    if name in png16:
        channels, color_type = png16[name]
        return _raw_png(_rng(5).integers(0, 65536, (H, W, channels), dtype=np.uint16), 16, color_type)
    if name.startswith("png_") and name[4:] in ("L", "LA", "RGB", "RGBA"):
        return _save(_random_image(name[4:]), "PNG")
    makers = {
        "png_L_trns": lambda: _save(_random_image("L"), "PNG", transparency=7),
        "png_1bit": lambda: _save(_random_image("L").convert("1"), "PNG"),
        "png_2bit": lambda: _raw_png(_rng(3).integers(0, 4, (H, W), dtype=np.uint8), 2, 0),
        "png_P8": lambda: _save(_palette_image(200), "PNG"),
        "png_P8_trns": lambda: _save(_palette_image(200), "PNG", transparency=bytes(range(0, 250, 5))),
        "png_P4": lambda: _save(_palette_image(16), "PNG"),
        "png_P4_trns": lambda: _save(_palette_image(16), "PNG", transparency=3),
        "jpeg_L": lambda: _save(_random_image("L"), "JPEG", quality=90),
        "jpeg_RGB": lambda: _save(_random_image("RGB"), "JPEG", quality=90),
        "jpeg_RGB_444": lambda: _save(_random_image("RGB"), "JPEG", quality=70, subsampling=0),
        "jpeg_CMYK": lambda: _save(_random_image("CMYK"), "JPEG", quality=90),
        "webp_RGB": lambda: _save(_random_image("RGB"), "WEBP", lossless=True),
        "webp_RGBA": lambda: _save(_random_image("RGBA"), "WEBP", lossless=True),
        "webp_lossy": lambda: _save(_random_image("RGB"), "WEBP", quality=80),
        "gif": lambda: _gif([_palette_image(64)]),
        "gif_L": lambda: _gif([_random_image("L")]),
        "gif_animated": lambda: _gif([_palette_image(32, seed=1), _palette_image(32, seed=2)]),
        "gif_transparent": lambda: _gif([_palette_image(16)], transparency=2, background=5),
        "bmp_RGB": lambda: _save(_random_image("RGB"), "BMP"),
        "bmp_L": lambda: _save(_random_image("L"), "BMP"),
        "bmp_P": lambda: _save(_palette_image(16), "BMP"),
        "bmp_1bit": lambda: _save(_random_image("L").convert("1"), "BMP"),
    }
    return makers[name]()


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _reference(data: bytes, mode: str = "UNCHANGED", apply_exif_orientation: bool = False) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 deprecates its image io
        return ref_io.decode_image(_as_tensor(data), mode, apply_exif_orientation=apply_exif_orientation)


def _as_png(pixels: torch.Tensor) -> bytes:
    """The same 8-bit CHW pixels as a PNG, to ask the reference what a mode gives for them."""
    hwc = pixels.permute(1, 2, 0).contiguous().numpy()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[hwc.shape[2]]
    return _save(Image.frombytes(mode, (hwc.shape[1], hwc.shape[0]), hwc.tobytes()), "PNG")


def _assert_same(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert ours.dtype == expected.dtype and ours.shape == expected.shape, (
        f"{ours.dtype}{tuple(ours.shape)} != {expected.dtype}{tuple(expected.shape)}"
    )
    diff = (ours.to(torch.int64) - expected.to(torch.int64)).abs().max().item()
    assert diff == 0, f"max abs difference {diff}"


def _opaque(pixels: torch.Tensor) -> torch.Tensor:
    alpha = torch.full_like(pixels[:1], 255)
    return torch.cat([pixels, alpha])


# ------------------------------------------------------------------------------------------- parity


# (case, the modes in which the reference's own answer is the expectation)
PARITY = [
    ("png_L", ALL),
    ("png_LA", ALL),
    ("png_RGB", ALL),
    ("png_RGBA", ALL),
    ("png_L16", ALL),
    ("png_LA16", ALL),
    ("png_RGB16", ALL),
    ("png_RGBA16", ALL),
    ("png_L_trns", ALL),
    ("png_1bit", ("UNCHANGED", "GRAY", "RGB")),
    ("png_2bit", ("UNCHANGED", "GRAY", "RGB")),
    ("png_P8", ("UNCHANGED", "GRAY", "RGB")),
    ("png_P8_trns", ALL),
    ("png_P4", ("GRAY", "RGB")),
    ("png_P4_trns", ("GRAY", "GRAY_ALPHA", "RGB", "RGB_ALPHA")),
    ("jpeg_L", ("UNCHANGED", "GRAY", "RGB")),
    ("jpeg_RGB", ("UNCHANGED", "GRAY", "RGB")),
    ("jpeg_RGB_444", ("UNCHANGED", "GRAY", "RGB")),
    ("jpeg_CMYK", ("UNCHANGED", "GRAY", "RGB")),
    ("webp_RGB", ("UNCHANGED", "RGB", "RGB_ALPHA")),
    ("webp_RGBA", ("UNCHANGED", "RGB", "RGB_ALPHA")),
    ("webp_lossy", ("UNCHANGED", "RGB", "RGB_ALPHA")),
    ("gif", ("UNCHANGED", "RGB")),
    ("gif_L", ("UNCHANGED", "RGB")),
    ("gif_transparent", ("UNCHANGED", "RGB")),
]


@pytest.mark.parametrize("case,mode", [(case, mode) for case, modes in PARITY for mode in modes])
def test_decode_matches_reference(case: str, mode: str) -> None:
    data = _case(case)
    _assert_same(vio.decode_image(_as_tensor(data), mode), _reference(data, mode))


def test_sixteen_bit_png_is_uint16_with_full_range() -> None:
    for case, channels in (("png_L16", 1), ("png_LA16", 2), ("png_RGB16", 3), ("png_RGBA16", 4)):
        out = vio.decode_image(_case(case))
        assert out.dtype == torch.uint16 and out.shape == (channels, H, W)
        expected = _rng(5).integers(0, 65536, (H, W, channels), dtype=np.uint16)
        assert np.array_equal(out.view(torch.int16).permute(1, 2, 0).numpy().view(np.uint16), expected)


@pytest.mark.parametrize("case", ["png_P4", "png_P4_trns"])
def test_low_bit_depth_palette_unchanged_gives_indices(case: str) -> None:
    # The reference returns the packed 4-bit rows here (a bug); the indices are what 8-bit palettes give.
    indices = torch.from_numpy(np.asarray(Image.open(io.BytesIO(_case(case)))).copy())[None]
    _assert_same(vio.decode_image(_case(case)), indices)


@pytest.mark.parametrize("case", ["png_P8", "png_1bit", "png_2bit"])
@pytest.mark.parametrize("mode", ["GRAY_ALPHA", "RGB_ALPHA"])
def test_added_alpha_is_opaque(case: str, mode: str) -> None:
    # The reference gets these wrong: for a palette without tRNS it returns uninitialised memory as alpha,
    # for 1- and 2-bit grey an alpha of 1 or 3 (the maximum at the file's bit depth, not at 8 bits).
    data = _case(case)
    _assert_same(vio.decode_image(data, mode), _opaque(_reference(data, mode.replace("_ALPHA", ""))))


@pytest.mark.parametrize("case", ["jpeg_L", "jpeg_RGB", "jpeg_CMYK"])
@pytest.mark.parametrize("mode", ["GRAY_ALPHA", "RGB_ALPHA"])
def test_jpeg_alpha_modes_add_opaque_alpha(case: str, mode: str) -> None:
    # The reference refuses these modes for JPEG; we add an opaque alpha channel.
    data = _case(case)
    _assert_same(vio.decode_image(data, mode), _opaque(_reference(data, mode.replace("_ALPHA", ""))))


def test_cmyk_jpeg_unchanged_is_the_stored_samples() -> None:
    # Pillow writes Adobe CMYK, stored inverted; UNCHANGED returns it as stored, as the reference does.
    data = _case("jpeg_CMYK")
    _assert_same(vio.decode_image(data), 255 - _pillow_pixels(data))


def _pillow_pixels(data: bytes, mode: str | None = None) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        pixels = np.asarray(im if mode is None else im.convert(mode))
    return torch.from_numpy(pixels.reshape(pixels.shape[0], pixels.shape[1], -1).copy()).permute(2, 0, 1)


def _native_pixels(case: str) -> torch.Tensor:
    """The decoded pixels of a case, from a decoder other than ours (Pillow, or the reference for GIF colours)."""
    data = _case(case)
    if not case.startswith("gif"):
        return _pillow_pixels(data)
    rgb = _reference(data)
    with Image.open(io.BytesIO(data)) as im:
        if "transparency" not in im.info:
            return rgb
        opaque = torch.from_numpy(np.asarray(im) != im.info["transparency"])
    return torch.cat([rgb, opaque.to(torch.uint8)[None] * 255])


@pytest.mark.parametrize("case", ["webp_RGB", "webp_RGBA", "gif", "gif_transparent", "bmp_RGB"])
@pytest.mark.parametrize("mode", ["GRAY", "GRAY_ALPHA", "RGB_ALPHA"])
def test_modes_the_reference_ignores_convert_like_png(case: str, mode: str) -> None:
    # For WebP and GIF the reference ignores grey modes (GIF: every mode); BMP it does not read at all.
    # The expectation is the reference's PNG conversion of the same pixels.
    expected = _reference(_as_png(_native_pixels(case)), mode)
    _assert_same(vio.decode_image(_case(case), mode), expected)


def test_gif_transparency_becomes_alpha_and_background_colour() -> None:
    data = _case("gif_transparent")
    with Image.open(io.BytesIO(data)) as im:
        transparent = torch.from_numpy(np.asarray(im) == im.info["transparency"])
    assert transparent.any() and not transparent.all()
    rgba = vio.decode_image(data, "RGB_ALPHA")
    assert torch.equal(rgba[3], torch.where(transparent, 0, 255).to(torch.uint8))
    _assert_same(rgba[:3], _reference(data))


def test_animated_gif_gives_the_first_frame() -> None:
    data = _case("gif_animated")
    frames = _reference(data)
    assert frames.shape == (2, 3, H, W) and not torch.equal(frames[0], frames[1])
    _assert_same(vio.decode_image(data), frames[0])


def test_animated_webp_gives_the_first_frame() -> None:
    # The reference refuses animated WebP.
    first, second = _random_image("RGB", seed=1), _random_image("RGB", seed=2)
    data = _save(first, "WEBP", save_all=True, append_images=[second], lossless=True)
    _assert_same(vio.decode_image(data), _pillow_pixels(_save(first, "PNG")))


@pytest.mark.parametrize("case,pillow_mode", [("bmp_RGB", "RGB"), ("bmp_L", "L"), ("bmp_P", "RGB"), ("bmp_1bit", "L")])
def test_bmp_unchanged_matches_pillow(case: str, pillow_mode: str) -> None:
    # The reference cannot read BMP; Pillow's own pixels are the expectation (palettes expanded to RGB).
    _assert_same(vio.decode_image(_case(case)), _pillow_pixels(_case(case), pillow_mode))


def test_read_image_matches_decode_and_reference(tmp_path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_case("jpeg_RGB"))
    for mode in ("UNCHANGED", "GRAY", "RGB"):
        ours = vio.read_image(path, mode)
        _assert_same(ours, vio.decode_image(str(path), mode))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _assert_same(ours, ref_io.read_image(str(path), mode))


def test_read_file_matches_reference(tmp_path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_case("png_RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = ref_io.read_file(str(path))
    ours = vio.read_file(path)
    assert ours.dtype == torch.uint8 and torch.equal(ours, expected)
    ours[0] = 0  # the tensor owns writable memory
    (tmp_path / "empty").write_bytes(b"")
    assert vio.read_file(tmp_path / "empty").shape == (0,)


def test_decode_accepts_bytes_tensors_and_paths(tmp_path) -> None:
    data = _case("png_RGBA")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    expected = vio.decode_image(_as_tensor(data))
    for source in (data, bytearray(data), memoryview(data), str(path), path):
        assert torch.equal(vio.decode_image(source), expected)
    # a non-contiguous tensor view decodes from its own elements
    spread = torch.zeros(2 * len(data), dtype=torch.uint8)
    spread[::2] = _as_tensor(data)
    assert torch.equal(vio.decode_image(spread[::2]), expected)


def test_decode_png_and_decode_jpeg_check_the_format() -> None:
    assert torch.equal(vio.decode_png(_case("png_RGB")), vio.decode_image(_case("png_RGB")))
    assert torch.equal(vio.decode_jpeg(_case("jpeg_RGB"), "GRAY"), vio.decode_image(_case("jpeg_RGB"), "GRAY"))
    with pytest.raises(vio.ImageDecodeError, match="expected PNG data, found JPEG"):
        vio.decode_png(_case("jpeg_RGB"))
    with pytest.raises(vio.ImageDecodeError, match="expected JPEG data, found PNG"):
        vio.decode_jpeg(_case("png_RGB"))


# ------------------------------------------------------------------------------------------ read modes


def test_read_mode_accepts_names_in_any_case() -> None:
    data = _case("png_RGBA")
    expected = vio.decode_image(data, vio.ImageReadMode.RGB_ALPHA)
    for mode in ("rgb_alpha", "RGBA", "rgba", vio.ImageReadMode.RGBA, ref_io.ImageReadMode.RGB_ALPHA):
        assert torch.equal(vio.decode_image(data, mode), expected)
    assert vio.ImageReadMode("gray") is vio.ImageReadMode.GRAY
    assert [m.name for m in vio.ImageReadMode] == [m.name for m in ref_io.ImageReadMode]


@pytest.mark.parametrize("mode", ["CMYK", "", 3, None])
def test_unknown_read_mode_raises(mode) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        vio.decode_image(_case("png_RGB"), mode)


# -------------------------------------------------------------------------------------- EXIF orientation


def _with_orientation(fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = _random_image("RGB", seed=9)
    return _save(image, fmt, exif=exif, **({"quality": 90} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_reference_and_pillow(fmt: str, orientation: int) -> None:
    data = _with_orientation(fmt, orientation)
    ours = vio.decode_image(data, "RGB", apply_exif_orientation=True)
    _assert_same(ours, _reference(data, "RGB", apply_exif_orientation=True))
    with Image.open(io.BytesIO(data)) as im:
        upright = np.asarray(ImageOps.exif_transpose(im.convert("RGB")))
    _assert_same(ours, torch.from_numpy(upright.copy()).permute(2, 0, 1))
    assert ours.shape[1:] == ((W, H) if orientation >= 5 else (H, W))
    _assert_same(vio.decode_image(data, "RGB"), _reference(data, "RGB"))  # ignored unless asked for


def test_exif_orientation_on_sixteen_bit_png() -> None:
    data = _case("png_RGB16")
    exif = Image.Exif()
    exif[0x0112] = 6
    tiff = exif.tobytes()[len(b"Exif\0\0") :]  # an eXIf chunk holds the TIFF structure only
    with_exif = data[:33] + _chunk(b"eXIf", tiff) + data[33:]  # after IHDR, where libpng reads it
    ours = vio.decode_image(with_exif, apply_exif_orientation=True)
    _assert_same(ours, _reference(with_exif, apply_exif_orientation=True))
    assert ours.shape == (3, W, H)


# ------------------------------------------------------------------------------------------ bad data


def _valid_files() -> dict[str, bytes]:
    big = _random_image("RGB", size=(64, 48))
    return {
        "png": _save(big, "PNG"),
        "jpg": _save(big, "JPEG"),
        "gif": _save(big.quantize(64), "GIF"),
        "webp": _save(big, "WEBP", lossless=True),
        "bmp": _save(big, "BMP"),
    }


@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "webp", "bmp"])
def test_truncated_file_raises_naming_it(tmp_path, ext: str) -> None:
    data = _valid_files()[ext]
    # Cut inside the pixel data. (A file that lacks only its checksums or end marker still decodes.)
    for kept in (len(data) // 2, len(data) - 32):
        path = tmp_path / f"cut_{kept}.{ext}"
        path.write_bytes(data[:kept])
        with pytest.raises(vio.ImageDecodeError, match=str(path)):
            vio.read_image(path)


@pytest.mark.parametrize("prefix", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"BM"])
def test_random_bytes_raise_naming_the_file(tmp_path, prefix: bytes) -> None:
    data = prefix + _rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.bin"
    path.write_bytes(data)
    with pytest.raises(vio.ImageDecodeError, match=str(path)):
        vio.read_image(path)
    with pytest.raises(vio.ImageDecodeError, match="<bytes>"):
        vio.decode_image(_as_tensor(data))


def test_empty_text_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(vio.ImageDecodeError, match=f"{empty}: no data"):
        vio.read_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(vio.ImageDecodeError, match=f"{text}: not a JPEG, PNG, GIF, WebP or BMP image"):
        vio.read_image(text)
    with pytest.raises(vio.ImageDecodeError, match="my-upload: no data"):
        vio.decode_image(b"", name="my-upload")
    missing = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match="missing.png"):
        vio.read_image(missing)
    with pytest.raises(FileNotFoundError):
        vio.read_file(missing)


def test_other_formats_pillow_reads_are_refused() -> None:
    tiff = _save(_random_image("RGB"), "TIFF")
    with pytest.raises(vio.ImageDecodeError, match="not a JPEG, PNG, GIF, WebP or BMP"):
        vio.decode_image(tiff)


def test_bad_encoded_tensor_raises() -> None:
    with pytest.raises(TypeError, match="torch.uint8"):
        vio.decode_image(_as_tensor(_case("png_L")).to(torch.int32))
    with pytest.raises(ValueError, match="1-D"):
        vio.decode_image(_as_tensor(_case("png_L"))[None])
    with pytest.raises(TypeError, match="bytes or a path"):
        vio.decode_image(12)


# --------------------------------------------------------------------------------- decompression bombs


def _png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_valid_files()["jpg"])
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments up to the frame header
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(_valid_files()["gif"])
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def _bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(_valid_files()["bmp"])
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


@pytest.mark.parametrize(
    "bomb,dims",
    [
        (lambda: _png_declaring(100_000, 100_000), "100000x100000"),
        (lambda: _jpeg_declaring(60_000, 60_000), "60000x60000"),
        (lambda: _gif_declaring(65_535, 65_535), "65535x65535"),
        (lambda: _bmp_declaring(100_000, 100_000), "100000x100000"),
    ],
    ids=["png", "jpeg", "gif", "bmp"],
)
def test_decompression_bomb_is_refused_before_decoding(bomb, dims: str) -> None:
    data = bomb()
    start = time.perf_counter()
    with pytest.raises(vio.ImageDecodeError, match=f"<bytes>: image declares {dims} = .* pixels, more than"):
        vio.decode_image(data)
    assert time.perf_counter() - start < 1.0


def test_webp_bomb_is_refused() -> None:
    # Lossless WebP stores width-1 and height-1 in 14 bits each after the VP8L signature byte.
    data = bytearray(_valid_files()["webp"])
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | (16384 - 1) | ((16384 - 1) << 14))
    with pytest.raises(vio.ImageDecodeError, match="<bytes>: image declares 16384x16384 = .* pixels, more than"):
        vio.decode_image(bytes(data))


def test_pixel_limit_is_configurable(monkeypatch) -> None:
    data = _case("png_RGB")
    monkeypatch.setattr(vio_image, "MAX_IMAGE_PIXELS", H * W - 1)
    with pytest.raises(vio.ImageDecodeError, match=f"{W}x{H} = {W * H} pixels, more than the limit of {H * W - 1}"):
        vio.decode_image(data)
    monkeypatch.setattr(vio_image, "MAX_IMAGE_PIXELS", H * W)
    assert vio.decode_image(data).shape == (3, H, W)
    monkeypatch.setattr(vio_image, "MAX_IMAGE_PIXELS", None)
    assert vio.decode_image(data).shape == (3, H, W)


def test_pillow_size_limit_neither_warns_nor_refuses(monkeypatch) -> None:
    # Our limit is the one that applies: with Pillow's own set tiny, decoding gives no warning and no error.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    for case in ("png_RGB", "jpeg_RGB", "gif", "bmp_RGB"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert vio.decode_image(_case(case)).shape[1:] == (H, W)


# ---------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_is_exact(tmp_path, channels: int) -> None:
    image = torch.from_numpy(_rng(2).integers(0, 256, (channels, H, W), dtype=np.uint8))
    encoded = vio.encode_png(image)
    assert encoded.dtype == torch.uint8 and encoded.dim() == 1
    _assert_same(vio.decode_image(encoded), image)
    _assert_same(_reference(bytes(encoded.numpy())), image)
    path = tmp_path / "out.png"
    written = vio.write_png(image, path, compression_level=9)
    assert path.read_bytes() == bytes(written.numpy())
    _assert_same(vio.read_image(path), image)
    smooth = _smooth_rgb()[:channels]
    assert len(vio.encode_png(smooth, compression_level=0)) > 2 * len(vio.encode_png(smooth, compression_level=9))


def test_png_of_a_non_contiguous_view() -> None:
    image = torch.from_numpy(_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8)).permute(2, 0, 1)
    _assert_same(vio.decode_image(vio.encode_png(image)), image)
    flipped = image.flip(-1)
    _assert_same(vio.decode_image(vio.encode_png(flipped)), flipped)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_round_trip_is_close_and_matches_reference_encoder(tmp_path, channels: int) -> None:
    image = _smooth_rgb()[:channels]
    path = tmp_path / "out.jpg"
    written = vio.write_jpeg(image, path, quality=90)
    assert path.read_bytes() == bytes(written.numpy())
    decoded = vio.read_image(path)
    assert decoded.shape == image.shape
    assert (decoded.float() - image.float()).abs().mean() < 1.5
    # Same quality tables and 4:2:0 subsampling as the reference's libjpeg call: the same pixels come back.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = ref_io.encode_jpeg(image, quality=90)
    _assert_same(decoded, vio.decode_image(reference))


def test_jpeg_quality_changes_size() -> None:
    image = torch.from_numpy(_rng(6).integers(0, 256, (3, 32, 32), dtype=np.uint8))
    assert len(vio.encode_jpeg(image, quality=10)) < len(vio.encode_jpeg(image, quality=95))


def test_encode_jpeg_list() -> None:
    images = [_smooth_rgb(), _smooth_rgb()[:1]]
    encoded = vio.encode_jpeg(images)
    assert isinstance(encoded, list) and len(encoded) == 2
    assert [tuple(vio.decode_image(e).shape) for e in encoded] == [tuple(i.shape) for i in images]
    with pytest.raises(ValueError, match="empty list"):
        vio.encode_jpeg([])


BAD_IMAGES = [
    (torch.zeros(3, 4, 5), TypeError, "torch.uint8"),
    (torch.zeros(3, 4, 5, dtype=torch.int16), TypeError, "torch.uint8"),
    (torch.zeros(4, 5, dtype=torch.uint8), ValueError, r"\[1 or 3, height, width\]"),
    (torch.zeros(1, 3, 4, 5, dtype=torch.uint8), ValueError, r"\[1 or 3, height, width\]"),
    (torch.zeros(2, 4, 5, dtype=torch.uint8), ValueError, r"shape \(2, 4, 5\)"),
    (torch.zeros(4, 4, 5, dtype=torch.uint8), ValueError, r"shape \(4, 4, 5\)"),
    (torch.zeros(3, 0, 5, dtype=torch.uint8), ValueError, "empty"),
    (np.zeros((3, 4, 5), dtype=np.uint8), TypeError, "torch.Tensor"),
]


@pytest.mark.parametrize("image,error,message", BAD_IMAGES)
@pytest.mark.parametrize("writer", ["encode_png", "encode_jpeg", "write_png", "write_jpeg"])
def test_writers_reject_bad_images(tmp_path, writer: str, image, error, message: str) -> None:
    args = (image, tmp_path / "x") if writer.startswith("write") else (image,)
    with pytest.raises(error, match=message):
        getattr(vio, writer)(*args)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("level", [-1, 10, 2.5, True])
def test_png_compression_level_is_checked(level) -> None:
    with pytest.raises(ValueError, match="compression_level"):
        vio.encode_png(torch.zeros(3, 4, 5, dtype=torch.uint8), level)


@pytest.mark.parametrize("quality", [0, 101, 50.0])
def test_jpeg_quality_is_checked(quality) -> None:
    with pytest.raises(ValueError, match="quality"):
        vio.encode_jpeg(torch.zeros(3, 4, 5, dtype=torch.uint8), quality)


# --------------------------------------------------------------------------------------------- import


def test_import_does_not_load_pillow() -> None:
    import subprocess
    import sys

    code = "import sys, visionzoo.io; assert 'PIL' not in sys.modules, 'PIL imported'"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={**os.environ, "PYTHONPATH": root})
