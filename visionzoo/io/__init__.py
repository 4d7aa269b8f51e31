"""Reading and writing images as tensors, with the API of ``torchvision.io``'s image functions."""

from __future__ import annotations

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
    "read_image",
    "write_jpeg",
    "write_png",
]
