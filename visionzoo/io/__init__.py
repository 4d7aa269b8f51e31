"""Reading and writing images and videos as tensors, with the API of ``torchvision.io``.

Video needs PyAV (``pip install visionzoo[video]``), imported on first use: importing this package does not.
"""

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
from .video import VideoClip, VideoDecodeError, read_video, read_video_clips, read_video_timestamps, write_video

__all__ = [
    "ImageDecodeError",
    "ImageReadMode",
    "VideoClip",
    "VideoDecodeError",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "encode_jpeg",
    "encode_png",
    "read_file",
    "read_image",
    "read_video",
    "read_video_clips",
    "read_video_timestamps",
    "write_jpeg",
    "write_png",
    "write_video",
]
