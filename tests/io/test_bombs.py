"""Decompression bombs: tiny files whose headers declare enormous images are refused before any allocation.

Each bomb below is a valid small file with its size fields rewritten. The checks run with Pillow's own limit
(``PIL.Image.MAX_IMAGE_PIXELS``) switched off, as many applications do to silence its warning, so that
visionzoo's limit alone must stop them. "Before allocation" is measured, not assumed: a child process decodes
every bomb and reports how far its peak virtual memory grew (Linux ``/proc``), and a control shows that the
measurement sees the canvas libwebp allocates when a WebP file is opened without our header check.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import visionzoo.io as vio

REPO_ROOT = Path(__file__).resolve().parents[2]


def _save(fmt: str, **options: object) -> bytearray:
    out = io.BytesIO()
    im = Image.new("RGB", (16, 12), (200, 30, 90))
    (im.quantize(8) if fmt == "GIF" else im).save(out, fmt, **options)
    return bytearray(out.getvalue())


def _png(width: int, height: int, bit_depth: int = 8) -> bytes:
    import zlib

    data = _save("PNG")
    data[16:26] = struct.pack(">IIBB", width, height, bit_depth, 2)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg(width: int, height: int, progressive: bool = False) -> bytes:
    data = _save("JPEG", progressive=progressive)
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments to the frame header
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_screen(width: int, height: int) -> bytes:
    data = _save("GIF")
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _gif_frame(width: int, height: int) -> bytes:
    """A small logical screen whose first frame is huge: Pillow grows the image to hold the frame."""
    data = _save("GIF")
    i = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # after the header and global palette
    while data[i] == 0x21:  # skip extension blocks: introducer, label, then sub-blocks up to a zero length
        i += 2
        while data[i]:
            i += data[i] + 1
        i += 1
    assert data[i] == 0x2C, "no image descriptor where expected"
    data[i + 5 : i + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def _bmp(width: int, height: int) -> bytes:
    data = _save("BMP")
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _webp_lossless(width: int, height: int) -> bytes:
    data = _save("WEBP", lossless=True)
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def _webp_lossy(width: int, height: int) -> bytes:
    data = _save("WEBP", quality=50)
    assert data[12:16] == b"VP8 " and data[23:26] == b"\x9d\x01\x2a"
    data[26:30] = struct.pack("<HH", width, height)
    return bytes(data)


def _webp_extended(width: int, height: int) -> bytes:
    data = _save("WEBP", lossless=True, exif=Image.Exif().tobytes())  # EXIF forces the VP8X header
    assert data[12:16] == b"VP8X"
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


# name -> (file, declared "WxH")
BOMBS = {
    "png": (lambda: _png(100_000, 100_000), "100000x100000"),
    "png_16bit": (lambda: _png(40_000, 40_000, bit_depth=16), "40000x40000"),
    "jpeg": (lambda: _jpeg(60_000, 60_000), "60000x60000"),
    "jpeg_progressive": (lambda: _jpeg(65_000, 30_000, progressive=True), "65000x30000"),
    "gif_screen": (lambda: _gif_screen(65_535, 65_535), "65535x65535"),
    "gif_first_frame": (lambda: _gif_frame(65_000, 65_000), "65000x65000"),
    "bmp": (lambda: _bmp(100_000, 100_000), "100000x100000"),
    "webp_lossless": (lambda: _webp_lossless(16_384, 16_384), "16384x16384"),
    "webp_lossy": (lambda: _webp_lossy(16_383, 16_383), "16383x16383"),
    "webp_extended": (lambda: _webp_extended(60_000, 60_000), "60000x60000"),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_by_our_limit_alone(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own check off: ours must do the work
    make, dims = BOMBS[name]
    data = make()
    assert len(data) < 2048
    with pytest.raises(vio.ImageDecodeError, match=f"<bytes>: image declares {dims} = .* pixels, more than the limit"):
        vio.decode_image(data)


def test_bomb_refused_with_pillows_limit_too_names_pillows_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow checks the grown size of a GIF frame itself; when its limit is the lower one, the message says so.
    import visionzoo.io.image as vio_image

    monkeypatch.setattr(vio_image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(vio.ImageDecodeError, match=r"exceeds limit .*PIL\.Image\.MAX_IMAGE_PIXELS.* GIF files"):
        vio.decode_image(_gif_frame(65_000, 65_000))


_CHILD = """
import json, sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
import visionzoo.io as vio
from tests.io.test_bombs import BOMBS, _webp_lossless

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmPeak:"))

files = {name: make() for name, (make, _) in BOMBS.items()}
report = {"baseline": peak_kib(), "errors": {}}
for name, data in files.items():
    try:
        vio.decode_image(data)
        report["errors"][name] = "decoded"
    except vio.ImageDecodeError as error:
        report["errors"][name] = str(error)
report["after_bombs"] = peak_kib()
if sys.argv[1] == "control":  # what our WebP header check prevents: libwebp sizes its canvas on open
    import io
    from PIL import WebPImagePlugin
    WebPImagePlugin.WebPImageFile(io.BytesIO(_webp_lossless(16_384, 16_384))).close()
report["after_control"] = peak_kib()
print(json.dumps(report))
"""


def test_bombs_allocate_nothing_before_being_refused() -> None:
    if not Path("/proc/self/status").exists():  # the errors are checked above on every platform
        pytest.skip("measuring peak virtual memory needs Linux /proc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, "control"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for name, (_, dims) in BOMBS.items():
        assert f"image declares {dims}" in report["errors"][name], (name, report["errors"][name])
    grown_mib = (report["after_bombs"] - report["baseline"]) / 1024
    assert grown_mib < 64, f"decoding {len(BOMBS)} bombs grew peak virtual memory by {grown_mib:.0f} MiB"
    # The control: opening the 16384x16384 WebP without the header check reserves its 1 GiB canvas (twice).
    assert (report["after_control"] - report["after_bombs"]) / 1024 > 1024, report
