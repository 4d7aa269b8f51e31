"""Reading and writing optical flow in the two formats flow benchmarks ship.

* Middlebury ``.flo`` (Middlebury, Sintel, FlyingChairs, ...): the 4 bytes ``PIEH`` (the float 202021.25), the
  width and the height as little-endian int32, then ``height * width`` little-endian float32 pairs ``(u, v)`` in
  row-major order.
* KITTI's 16-bit RGB PNG: red and green hold ``u`` and ``v`` as ``value = flow * 64 + 2**15`` (1/64 pixel steps,
  about +-512 pixels), blue is 1 where the ground truth is known and 0 elsewhere.

Flows are ``(2, H, W)`` float32 tensors (``u``, the rightward motion, first), as the flow models return them.
"""

from __future__ import annotations

import os
import struct
import zlib

import torch
from torch import Tensor

from .image import _read_bytes, _tensor_to_bytes, decode_image

__all__ = ["read_flo", "write_flo", "read_kitti_flow", "write_kitti_flow"]

_FLO_TAG = b"PIEH"
_FLO_HEADER = 12
_KITTI_SCALE = 64.0
_KITTI_ZERO = 2**15


def _check_flow(flow: Tensor, fn: str) -> None:
    if not isinstance(flow, Tensor):
        raise TypeError(f"{fn}: expected a torch.Tensor flow, got {type(flow).__name__}")
    if not flow.is_floating_point():
        raise TypeError(f"{fn}: expected a floating point flow, got {flow.dtype}")
    if flow.dim() != 3 or flow.shape[0] != 2 or flow.shape[1] == 0 or flow.shape[2] == 0:
        raise ValueError(f"{fn}: expected a flow of shape (2, H, W) with H, W > 0, got {tuple(flow.shape)}")


def read_flo(path: str | os.PathLike[str]) -> Tensor:
    """Read a Middlebury ``.flo`` file as a ``(2, H, W)`` float32 flow.

    Raises:
        ValueError: the file does not start with ``PIEH``, declares a non-positive size, or holds fewer or more
            values than its header declares.
    """
    data = _read_bytes(path)
    if len(data) < _FLO_HEADER or bytes(data[:4]) != _FLO_TAG:
        raise ValueError(f"{path} is not a .flo file: it does not start with the tag {_FLO_TAG!r}")
    width, height = struct.unpack_from("<ii", data, 4)
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: the .flo header declares a {width}x{height} flow")
    expected = _FLO_HEADER + 8 * width * height
    if len(data) != expected:
        raise ValueError(
            f"{path}: a {width}x{height} .flo file holds {expected} bytes, this one {len(data)} "
            f"({'truncated' if len(data) < expected else 'trailing data'})"
        )
    # torch's platforms are all little-endian, like the format, so the floats are read as they lie.
    values = torch.frombuffer(data, dtype=torch.float32, offset=_FLO_HEADER)
    return values.view(height, width, 2).permute(2, 0, 1).clone()


def write_flo(flow: Tensor, path: str | os.PathLike[str]) -> None:
    """Write a ``(2, H, W)`` flow to ``path`` as a Middlebury ``.flo`` file (float32).

    Raises:
        TypeError: ``flow`` is not a floating point tensor. ValueError: wrong shape.
    """
    _check_flow(flow, "write_flo")
    height, width = flow.shape[1:]
    values = flow.detach().to("cpu", torch.float32).permute(1, 2, 0).contiguous()
    with open(path, "wb") as f:
        f.write(_FLO_TAG + struct.pack("<ii", width, height))
        f.write(_tensor_to_bytes(values.view(torch.uint8)))


def read_kitti_flow(path: str | os.PathLike[str]) -> tuple[Tensor, Tensor]:
    """Read a KITTI flow PNG: the ``(2, H, W)`` float32 flow and the ``(H, W)`` bool mask of valid pixels.

    Raises:
        ValueError: the file is not a 16-bit RGB PNG (``ImageDecodeError`` when it is no image at all).
    """
    pixels = decode_image(torch.frombuffer(_read_bytes(path), dtype=torch.uint8))
    if pixels.dtype != torch.uint16 or pixels.shape[0] != 3:
        raise ValueError(
            f"{path} is not a KITTI flow file: expected a 16-bit RGB PNG, got {pixels.shape[0]} channels of "
            f"{pixels.dtype}"
        )
    values = pixels.to(torch.int32).to(torch.float32)
    flow = (values[:2] - _KITTI_ZERO) / _KITTI_SCALE
    return flow, values[2] != 0


def write_kitti_flow(flow: Tensor, path: str | os.PathLike[str], valid: Tensor | None = None) -> None:
    """Write a ``(2, H, W)`` flow to ``path`` as a KITTI 16-bit PNG.

    Values are rounded to 1/64 pixel and clamped to the format's range (about +-512 pixels).

    Args:
        valid: ``(H, W)`` bool mask of the pixels whose flow is known (default: all); the others are stored as 0.

    Raises:
        TypeError: ``flow`` is not a floating point tensor. ValueError: wrong shapes, or NaN/infinite flow at a
            valid pixel.
    """
    _check_flow(flow, "write_kitti_flow")
    height, width = flow.shape[1:]
    flow = flow.detach().to("cpu", torch.float64)
    if valid is None:
        valid = torch.ones(height, width, dtype=torch.bool)
    elif not isinstance(valid, Tensor) or valid.dtype != torch.bool or tuple(valid.shape) != (height, width):
        shape = tuple(valid.shape) if isinstance(valid, Tensor) else type(valid).__name__
        raise ValueError(f"write_kitti_flow: valid must be a ({height}, {width}) bool tensor, got {shape}")
    valid = valid.cpu()
    if not torch.isfinite(flow[:, valid]).all():
        raise ValueError("write_kitti_flow: the flow holds NaN or infinite values at valid pixels")
    encoded = (flow * _KITTI_SCALE + _KITTI_ZERO).round().clamp(0, 2**16 - 1)
    encoded = torch.where(valid, encoded, 0).to(torch.int32)
    samples = torch.cat([encoded, valid[None].to(torch.int32)])  # (3, H, W)
    with open(path, "wb") as f:
        f.write(_encode_png16_rgb(samples))


def _encode_png16_rgb(samples: Tensor) -> bytes:
    """A 16-bit RGB PNG of ``(3, H, W)`` int32 samples in [0, 65535] (Pillow cannot write 16-bit colour)."""
    _, height, width = samples.shape
    hwc = samples.permute(1, 2, 0)
    big_endian = torch.stack([hwc >> 8, hwc & 0xFF], dim=-1).to(torch.uint8).view(height, width * 6)
    rows = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), big_endian], dim=1)  # filter type 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, truecolour, no interlace
    pixels = zlib.compress(bytes(_tensor_to_bytes(rows.contiguous())), 6)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
