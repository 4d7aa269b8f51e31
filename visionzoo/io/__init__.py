"""Reading and writing images and videos as tensors, with the API of ``torchvision.io``, and optical flow files
(Middlebury ``.flo``, KITTI 16-bit PNG).

Video needs PyAV (``pip install visionzoo[video]``), imported on first use: importing this package does not.
"""

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
    "read_flo",
    "read_image",
    "read_kitti_flow",
    "read_video",
    "read_video_clips",
    "read_video_timestamps",
    "write_flo",
    "write_jpeg",
    "write_kitti_flow",
    "write_png",
    "write_video",
]
