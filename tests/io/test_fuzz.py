"""Fuzzing the image decoders with mutated JPEG, PNG, GIF and WebP files (hypothesis).

Each case takes a small valid file, applies one to four mutations (bit flips, overwritten bytes, "interesting"
integers such as 0xFFFF written over size fields, insertions, deletions, truncation, repeated or spliced
byte runs; half of them aimed at the first 64 bytes, where the headers are) and decodes the result in a
random read mode. Every case must either decode to a well-formed image or raise :class:`ImageDecodeError`,
the one exception ``decode_image``/``read_image`` document for bad data. Any other exception, a crash or a
hang fails the test, and hypothesis shrinks the input to a minimal reproducer.

Reproducible: ``derandomize=True`` and no example database, so CI runs the same cases every time.
``MAX_IMAGE_PIXELS`` is lowered to 4 Mpx while fuzzing: a mutated size field below the default limit could
otherwise make Pillow allocate hundreds of MB for a 200-byte input, slowing the run without testing anything
new (the default limit is tested in test_image.py and below).
"""

from __future__ import annotations

import collections
import hashlib
import io
import struct
import time
import warnings
import zlib

import pytest
import torch
from PIL import Image

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need the optional 'hypothesis' package")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import visionzoo.io as vio  # noqa: E402
import visionzoo.io.image as vio_image  # noqa: E402

CASES_PER_FORMAT = 2600  # x 4 formats: more than the 10,000 the reliability issue asks for
FUZZ_PIXEL_LIMIT = 1 << 22
READ_MODES = [*vio.ImageReadMode, "rgb", "GRAY"]
# Values that sit on the edges parsers get wrong when written over a length, size or offset field.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)
OPERATIONS = ("flip", "byte", "int", "insert", "delete", "truncate", "repeat", "splice")


# ------------------------------------------------------------------------------------------ seed files


def _image(mode: str, size: tuple[int, int] = (13, 9), seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    pixels = torch.randint(0, 256, (size[1], size[0], channels), dtype=torch.uint8, generator=generator)
    return Image.frombytes(mode, size, pixels.numpy().tobytes())


def _save(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16_rgb(width: int = 7, height: int = 5) -> bytes:
    """A 16-bit RGB PNG, which Pillow cannot write: the decoder's two-pass 16-bit path is fuzzed too."""
    rows = b"".join(b"\0" + bytes((i * 37 + y * 11) % 256 for i in range(width * 6)) for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _seeds() -> dict[str, list[bytes]]:
    rgb, rgba = _image("RGB"), _image("RGBA", seed=1)
    palette = rgb.quantize(16)
    return {
        "JPEG": [
            _save(rgb, "JPEG", quality=90),
            _save(_image("L", seed=2), "JPEG"),
            _save(rgb, "JPEG", progressive=True),
            _save(_image("CMYK", seed=3), "JPEG"),
            _save(rgb, "JPEG", subsampling=0, exif=_exif(6)),
        ],
        "PNG": [
            _save(rgb, "PNG"),
            _save(rgba, "PNG"),
            _save(palette, "PNG", transparency=3),
            _save(_image("L", seed=4).convert("1"), "PNG"),
            _save(_image("RGB", seed=5).convert("I;16"), "PNG", exif=_exif(3)),
            _png16_rgb(),
        ],
        "GIF": [
            _save(palette, "GIF"),
            _save(palette, "GIF", save_all=True, append_images=[_image("RGB", seed=6).quantize(8)], duration=10),
            _save(palette, "GIF", transparency=2, background=5),
            _save(_image("L", seed=7), "GIF"),
        ],
        "WebP": [
            _save(rgb, "WEBP", lossless=True),
            _save(rgba, "WEBP", lossless=True),
            _save(rgb, "WEBP", quality=60),
            _save(rgba, "WEBP", quality=60),  # VP8X with an ALPH chunk
            _save(rgb, "WEBP", save_all=True, append_images=[rgb.rotate(90)], lossless=True),
        ],
    }


SEEDS = _seeds()
ALL_SEEDS = [data for files in SEEDS.values() for data in files]


# ------------------------------------------------------------------------------------------ mutations


def _fix_png_checksums(data: bytearray) -> None:
    """Recompute the CRC of every chunk that still fits, so that mutations reach the decoder behind the check."""
    offset = 8
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        end = offset + 8 + length
        if end + 4 > len(data):
            return
        data[end : end + 4] = struct.pack(">I", zlib.crc32(data[offset + 4 : end]))
        offset = end + 4


def _mutate_png_scanlines(draw: st.DrawFn, data: bytearray) -> None:
    """Change, cut or extend the decompressed scanlines (filter bytes included) and recompress them.

    Random changes to the compressed stream mostly break zlib; this reaches the unfiltering and sample unpacking.
    """
    start = data.find(b"IDAT") - 4
    if start < 0:
        return
    length = int.from_bytes(data[start : start + 4], "big")
    try:
        raw = bytearray(zlib.decompress(bytes(data[start + 8 : start + 8 + length])))
    except zlib.error:
        return
    position = draw(st.integers(0, max(len(raw) - 1, 0)))
    change = draw(st.sampled_from(("byte", "cut", "extend")))
    if change == "byte" and raw:
        raw[position] = draw(st.integers(0, 255))
    elif change == "cut":
        del raw[position:]
    else:
        raw += draw(st.binary(min_size=1, max_size=64))
    data[start : start + 12 + length] = _chunk(b"IDAT", zlib.compress(bytes(raw)))


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    is_png = data.startswith(b"\x89PNG")
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        size = len(data)
        # Half the mutations hit the headers behind the format signatures (at most 12 bytes), which only the
        # sniffer reads; the other half land anywhere.
        header = st.integers(min(12, size - 1), min(size, 76) - 1)
        position = draw(st.one_of(header, st.integers(0, size - 1)))
        operation = draw(st.sampled_from(OPERATIONS + (("scanlines",) if is_png else ())))
        if operation == "scanlines":
            _mutate_png_scanlines(draw, data)
        elif operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "byte":
            data[position] = draw(st.integers(0, 255))
        elif operation == "int":
            width = draw(st.sampled_from((1, 2, 4)))
            value = draw(st.sampled_from(INTERESTING)) & ((1 << 8 * width) - 1)
            data[position : position + width] = value.to_bytes(width, draw(st.sampled_from(("big", "little"))))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif operation == "truncate":
            del data[position:]
        elif operation == "repeat":
            data[position:position] = data[position : position + draw(st.integers(1, 64))]
        else:  # splice in the tail of another seed file, possibly of another format
            other = draw(st.sampled_from(ALL_SEEDS))
            data[position:] = other[draw(st.integers(0, len(other) - 1)) :]
    # Three PNG cases in four get valid checksums again; the fourth checks that bad ones are caught.
    if is_png and draw(st.integers(0, 3)):
        _fix_png_checksums(data)
    return bytes(data)


# ------------------------------------------------------------------------------------------ the fuzz test


def _check_decoded(out: torch.Tensor) -> None:
    assert isinstance(out, torch.Tensor) and out.dim() == 3, (
        f"not a CHW tensor: {type(out)} {getattr(out, 'shape', '')}"
    )
    assert out.dtype in (torch.uint8, torch.uint16), out.dtype
    channels, height, width = out.shape
    assert 1 <= channels <= 4 and height >= 1 and width >= 1, tuple(out.shape)
    assert height * width <= FUZZ_PIXEL_LIMIT, tuple(out.shape)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fmt", list(SEEDS))
def test_mutated_files_decode_or_raise_image_decode_error(fmt: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(vio_image, "MAX_IMAGE_PIXELS", FUZZ_PIXEL_LIMIT)
    for data in SEEDS[fmt]:  # the seeds themselves are valid files of the format under test
        _check_decoded(vio.decode_image(data))
    stats: collections.Counter[str] = collections.Counter()
    seen: set[bytes] = set()
    path = tmp_path / f"fuzz.{fmt.lower()}"
    slowest = 0.0

    @settings(
        max_examples=CASES_PER_FORMAT,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=_mutated(SEEDS[fmt]), mode=st.sampled_from(READ_MODES), exif=st.booleans(), via=st.integers(0, 7))
    def decode_one(data: bytes, mode: object, exif: bool, via: int) -> None:
        nonlocal slowest
        digest = hashlib.sha1(data).digest()
        assume(digest not in seen)  # every counted case is a byte string not tried before
        seen.add(digest)
        stats["tried"] += 1
        start = time.process_time()  # CPU time: other processes on a busy CI machine do not count
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if via == 0:  # one case in eight goes through a file
                    path.write_bytes(data)
                    out = vio.read_image(path, mode, apply_exif_orientation=exif)
                elif via == 1:
                    out = vio.decode_image(
                        torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else data, mode, exif
                    )
                else:
                    out = vio.decode_image(data, mode, apply_exif_orientation=exif)
        except vio.ImageDecodeError as error:
            assert str(error).startswith((str(path), "<bytes>")), f"the message must name the input: {error}"
            stats["refused"] += 1
        else:
            _check_decoded(out)
            stats["decoded"] += 1
        stats["warned"] += bool(caught)
        slowest = max(slowest, time.process_time() - start)

    start, cpu_start = time.perf_counter(), time.process_time()
    decode_one()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"\n{fmt}: {stats['tried']} distinct mutated files in {elapsed:.1f} s ({cpu:.1f} s CPU): "
        f"{stats['decoded']} decoded, {stats['refused']} refused with ImageDecodeError, "
        f"{stats['warned']} raised warnings; slowest case {slowest * 1000:.0f} ms CPU"
    )
    assert stats["tried"] == len(seen) >= CASES_PER_FORMAT
    # Both outcomes must be common, or the mutations are too weak (all decode) or too blunt (all rejected).
    assert stats["decoded"] >= 0.02 * stats["tried"] and stats["refused"] >= 0.02 * stats["tried"], stats
    assert slowest < 2.0, f"a {fmt} case took {slowest:.1f} s of CPU time: something close to a hang"
