"""Reading and writing images as tensors, with the API of ``torchvision.io``'s image functions, and optical flow
files (Middlebury ``.flo``, KITTI 16-bit PNG)."""

from __future__ import annotations

from .flow import read_flo, read_kitti_flow, write_flo, write_kitti_flow
from .image import (
    ImageDecodeError,
    ImageReadMode,
    decode_image,
    decode_jpeg,
    decode_png,
    encode_jpeg,
    encode_png,
    read_file,
    read_image,
    write_jpeg,
    write_png,
)

__all__ = [
    "ImageDecodeError",
    "ImageReadMode",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "encode_jpeg",
    "encode_png",
    "read_file",
    "read_flo",
    "read_image",
    "read_kitti_flow",
    "write_flo",
    "write_jpeg",
    "write_kitti_flow",
    "write_png",
]
