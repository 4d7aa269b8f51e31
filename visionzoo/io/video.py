"""Video files to tensors and back, with the API of the reference's former ``torchvision.io`` video functions.

PyAV (FFmpeg in a wheel) does the codec work; it is an optional dependency (``pip install visionzoo[video]``),
imported on first use so that ``import visionzoo.io`` works without it. On top of it this module adds:

* seeking: a range that starts later in the file seeks to the keyframe before its start instead of decoding
  from the beginning; of the frames between that keyframe and the start, only those that later frames refer
  to are decoded, and none is converted to RGB;
* bounded memory: only the frames of the requested range are kept, and :func:`read_video_clips` reads a long
  video as a stream of fixed-length clips;
* one error, :class:`VideoDecodeError`, for every file that cannot be read: missing, not a video, truncated or
  corrupt, a time range outside the video, or PyAV not installed.

Timestamps: ``pts_unit="pts"`` counts in the video stream's time base (what :func:`read_video_timestamps`
returns); ``pts_unit="sec"`` in seconds. Both ends of a range are inclusive.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import torch

from ._av import SLACK, VideoDecodeError, decoded_frames, import_av, open_video, read_audio, reason, start_decoding

if TYPE_CHECKING:
    import av.stream

__all__ = [
    "VideoClip",
    "VideoDecodeError",
    "read_video",
    "read_video_clips",
    "read_video_timestamps",
    "write_video",
]

PTS_UNITS = ("pts", "sec")
OUTPUT_FORMATS = ("THWC", "TCHW")

# Pixel formats written when the codec takes them, best first: RGB ones keep the frames exact with a lossless
# codec (FFV1 takes bgr0); the others get yuv420p, which every common player reads.
_RGB_PIXEL_FORMATS = ("rgb24", "bgr24", "rgb0", "bgr0", "gbrp")


def _check_arguments(start: float, end: float | None, pts_unit: str, output_format: str | None = None) -> None:
    if pts_unit not in PTS_UNITS:
        raise ValueError(f"pts_unit must be one of {', '.join(PTS_UNITS)}, got {pts_unit!r}")
    if output_format is not None and output_format.upper() not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if start < 0:
        raise ValueError(f"start_pts must be at least 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"end_pts must be at least start_pts, got start_pts={start} and end_pts={end}")


def _seconds(value: float | Fraction, pts_unit: str, time_base: Fraction) -> Fraction:
    """``value`` (in ``pts_unit``) in seconds, exactly (a float is taken at its exact binary value)."""
    return Fraction(value) * time_base if pts_unit == "pts" else Fraction(value)


def _describe(start: float, end: float | None, pts_unit: str) -> str:
    """A range as the user gave it, for messages: ``from 5.0 s to 6.5 s``, ``from pts 3000``."""

    def at(value: float) -> str:
        return f"{float(value):g} s" if pts_unit == "sec" else f"pts {value}"

    return f"from {at(start)}" + ("" if end is None else f" to {at(end)}")


def _range_in_pts(start: float, end: float | None, pts_unit: str, time_base: Fraction) -> tuple[int, int | float]:
    """A range in ``pts_unit`` as the stream timestamps it covers (both ends inclusive).

    Seconds become timestamps up to :data:`SLACK` of a tick, so that a float such as 0.1 (a hair above a tenth)
    still includes the frame at exactly a tenth of a second.
    """
    if pts_unit == "pts":
        return math.ceil(start), math.inf if end is None else math.floor(end)
    first = math.ceil(Fraction(start) / time_base - SLACK)
    return first, math.inf if end is None else math.floor(Fraction(end) / time_base + SLACK)


def _stack(frames: list[Any], stream: av.stream.Stream) -> torch.Tensor:
    if frames:
        import numpy as np

        return torch.from_numpy(np.stack(frames))
    return torch.empty(0, stream.height or 1, stream.width or 1, 3, dtype=torch.uint8)


def read_video(
    filename: str | os.PathLike[str],
    start_pts: float | Fraction = 0,
    end_pts: float | Fraction | None = None,
    pts_unit: str = "pts",
    output_format: str = "THWC",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Read the frames (and audio) of a video file between two timestamps.

    Args:
        filename: the video file.
        start_pts: the first timestamp to read (inclusive), in ``pts_unit``.
        end_pts: the last timestamp to read (inclusive), in ``pts_unit``; None reads to the end.
        pts_unit: ``"pts"`` (the video stream's time base, as :func:`read_video_timestamps` gives) or ``"sec"``.
        output_format: ``"THWC"`` (default) or ``"TCHW"`` for the frames.

    Returns:
        ``(video, audio, info)``: the frames as a uint8 tensor ``T x H x W x 3`` (or ``T x 3 x H x W``), the audio
        of the same range as float32 ``channels x samples`` in [-1, 1] (``1 x 0`` without audio), and a dict with
        ``video_fps`` and, when the file has audio, ``audio_fps`` (its sample rate).

    Raises:
        VideoDecodeError: the file is missing, not a video, truncated or corrupt; the range starts after the
            video's last frame; PyAV is not installed.
        ValueError: a bad ``pts_unit``, ``output_format`` or range (negative, or ending before it starts).
    """
    _check_arguments(start_pts, end_pts, pts_unit, output_format)
    path = os.fspath(filename)
    container, stream = open_video(path)
    with container:
        rgb = start_decoding(stream)
        time_base = stream.time_base
        first, last = _range_in_pts(start_pts, end_pts, pts_unit, time_base)
        frames = [
            rgb(frame)
            for frame in decoded_frames(container, stream, first, last, path, _describe(start_pts, end_pts, pts_unit))
        ]
        info: dict[str, float] = {}
        rate = stream.average_rate or stream.guessed_rate
        if rate is not None:
            info["video_fps"] = float(rate)
        if container.streams.audio:
            begin = _seconds(start_pts, pts_unit, time_base)
            finish = None if end_pts is None else _seconds(end_pts, pts_unit, time_base)
            audio = read_audio(container, begin, finish, path)
            info["audio_fps"] = container.streams.audio[0].rate
        else:
            audio = torch.empty(1, 0)
        video = _stack(frames, stream)
    if output_format.upper() == "TCHW":
        video = video.permute(0, 3, 1, 2)
    return video, audio, info


def read_video_timestamps(
    filename: str | os.PathLike[str], pts_unit: str = "pts"
) -> tuple[list[int] | list[Fraction], float | None]:
    """The presentation timestamps of every frame of a video, in order, and its frame rate.

    Reads the container's packets without decoding them, so it is fast even for long videos.

    Args:
        filename: the video file.
        pts_unit: ``"pts"`` for the stream's integer timestamps, ``"sec"`` for exact seconds (``Fraction``).

    Returns:
        ``(timestamps, video_fps)``; ``video_fps`` is None when the container does not give a rate.

    Raises:
        VideoDecodeError: as :func:`read_video`.
    """
    _check_arguments(0, None, pts_unit)
    path = os.fspath(filename)
    av = import_av()
    container, stream = open_video(path)
    with container:
        try:
            stamps = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
        except av.FFmpegError as error:
            raise VideoDecodeError(f"{path}: truncated or corrupt video data (FFmpeg: {reason(error)})") from None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate is not None else None
        if pts_unit == "sec":
            return [pts * stream.time_base for pts in stamps], fps
        return stamps, fps


# ---------------------------------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class VideoClip:
    """A run of consecutive frames from :func:`read_video_clips`.

    Attributes:
        frames: uint8 frames, ``T x H x W x 3`` (or ``T x 3 x H x W``).
        start: the first frame's time in seconds.
        end: the time in seconds at which the last frame stops showing (its time plus one frame interval).
        index: the clip's position in the stream of clips (0, 1, ...).
    """

    frames: torch.Tensor
    start: float
    end: float
    index: int


def _sampled(
    frames: Iterator[Any], time_base: Fraction, frame_rate: Fraction | None, native_interval: Fraction
) -> Iterator[tuple[Any, Fraction]]:
    """``(frame, time)`` pairs; with ``frame_rate``, resampled to that rate by taking, at each tick of the new
    rate, the frame on screen then (frames are dropped or repeated). The last frame shows for
    ``native_interval``."""
    if frame_rate is None:
        for frame in frames:
            yield frame, frame.pts * time_base
        return
    interval = 1 / frame_rate
    held, tick = None, Fraction(0)
    for frame in frames:
        time = frame.pts * time_base
        if held is None:
            tick = time
        while held is not None and tick < time:
            yield held, tick
            tick += interval
        held = frame
    if held is not None:
        shown_until = held.pts * time_base + (native_interval or interval)
        while tick < shown_until:
            yield held, tick
            tick += interval


def read_video_clips(
    filename: str | os.PathLike[str],
    clip_len: int,
    *,
    step: int | None = None,
    frame_rate: float | None = None,
    start_sec: float = 0,
    end_sec: float | None = None,
    drop_last: bool = True,
    output_format: str = "THWC",
) -> Iterator[VideoClip]:
    """Read a video as a stream of clips of ``clip_len`` frames, decoding it once, front to back.

    Memory holds one clip at a time (plus the frames the next clip shares with it), however long the video.

    Args:
        filename: the video file.
        clip_len: frames per clip.
        step: frames between the starts of consecutive clips (default ``clip_len``: clips follow each other;
            smaller values overlap them).
        frame_rate: resample the video to this many frames per second first (None: keep the file's frames).
        start_sec, end_sec: the part of the video to read, in seconds (inclusive); a start seeks to the
            keyframe before it.
        drop_last: leave out a last clip that would be shorter than ``clip_len`` (else it is yielded short).
        output_format: ``"THWC"`` (default) or ``"TCHW"``.

    Yields:
        :class:`VideoClip` objects, in order.

    Raises:
        VideoDecodeError: as :func:`read_video` (raised when iteration reaches the problem).
        ValueError: a bad argument.
    """
    if not isinstance(clip_len, int) or clip_len < 1:
        raise ValueError(f"clip_len must be a positive int, got {clip_len!r}")
    step = clip_len if step is None else step
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    if frame_rate is not None and not frame_rate > 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate!r}")
    _check_arguments(start_sec, end_sec, "sec", output_format)
    return _clips(filename, clip_len, step, frame_rate, start_sec, end_sec, drop_last, output_format.upper())


def _clips(
    filename: str | os.PathLike[str],
    clip_len: int,
    step: int,
    frame_rate: float | None,
    start_sec: float,
    end_sec: float | None,
    drop_last: bool,
    output_format: str,
) -> Iterator[VideoClip]:
    import numpy as np

    path = os.fspath(filename)
    container, stream = open_video(path)
    with container:
        rgb = start_decoding(stream)
        time_base = stream.time_base
        first, last = _range_in_pts(start_sec, end_sec, "sec", time_base)
        rate = Fraction(frame_rate).limit_denominator(1_000_000) if frame_rate is not None else None
        native = stream.average_rate or stream.guessed_rate
        native_interval = 1 / Fraction(native) if native else Fraction(0)
        interval = 1 / rate if rate is not None else native_interval
        window: list[tuple[Any, Fraction]] = []  # (RGB array, time) of the clip being gathered
        skip = 0  # frames still to drop before the next clip starts (when step > clip_len)
        fresh = 0  # frames of the window that no clip yielded so far
        index = 0
        converted: tuple[Any, Any] | None = None  # the last frame converted, reused when resampling repeats it

        def emit(items: list[tuple[Any, Fraction]]) -> VideoClip:
            video = torch.from_numpy(np.stack([array for array, _ in items]))
            if output_format == "TCHW":
                video = video.permute(0, 3, 1, 2)
            return VideoClip(video, float(items[0][1]), float(items[-1][1] + interval), index)

        for frame, time in _sampled(
            decoded_frames(container, stream, first, last, path, _describe(start_sec, end_sec, "sec")),
            time_base,
            rate,
            native_interval,
        ):
            if skip:
                skip -= 1
                continue
            if converted is None or converted[0] is not frame:
                converted = (frame, rgb(frame))
            window.append((converted[1], time))
            fresh += 1
            if len(window) == clip_len:
                yield emit(window)
                index += 1
                window, fresh = window[step:], 0
                skip = max(0, step - clip_len)
        if fresh and not drop_last:
            yield emit(window)


# ---------------------------------------------------------------------------------------------------- writing


def _pixel_format(codec: Any, options: dict[str, str]) -> str:
    if "pix_fmt" in options:
        return options["pix_fmt"]
    supported = {fmt.name for fmt in codec.video_formats or ()}
    return next((name for name in _RGB_PIXEL_FORMATS if name in supported), "yuv420p")


def write_video(
    filename: str | os.PathLike[str],
    video_array: torch.Tensor,
    fps: float,
    video_codec: str = "libx264",
    options: dict[str, Any] | None = None,
    audio_array: torch.Tensor | None = None,
    audio_fps: int | None = None,
    audio_codec: str | None = None,
    audio_options: dict[str, Any] | None = None,
) -> None:
    """Write frames (and optionally audio) to a video file; the container follows the file's suffix.

    Lossless codecs that take RGB (``ffv1``) store the frames exactly; other codecs get yuv420p unless
    ``options`` name a ``pix_fmt``.

    Args:
        filename: where to write (``.mp4``, ``.mkv``, ``.avi``, ...).
        video_array: uint8 frames, ``T x H x W x 3``.
        fps: frames per second.
        video_codec: an FFmpeg encoder name (``libx264``, ``mpeg4``, ``ffv1``, ...).
        options: encoder options, e.g. ``{"crf": "17"}``.
        audio_array: float audio in [-1, 1], ``channels x samples``.
        audio_fps: the audio's sample rate (required with ``audio_array``).
        audio_codec: an FFmpeg audio encoder (default ``aac``).
        audio_options: audio encoder options.

    Raises:
        ValueError, TypeError: bad frames, audio, rate or codec name.
        VideoDecodeError: PyAV is not installed.
    """
    if not isinstance(video_array, torch.Tensor):
        raise TypeError(f"video_array must be a tensor, got {type(video_array).__name__}")
    if video_array.ndim != 4 or video_array.shape[-1] != 3:
        raise ValueError(f"video_array must be T x H x W x 3, got shape {tuple(video_array.shape)}")
    if video_array.dtype != torch.uint8:
        raise TypeError(f"video_array must be uint8, got {video_array.dtype}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if audio_array is not None:
        if not isinstance(audio_array, torch.Tensor) or audio_array.ndim != 2:
            raise ValueError("audio_array must be a channels x samples tensor")
        if not audio_fps:
            raise ValueError("audio_fps (the sample rate) is required with audio_array")
    av = import_av()
    options = {str(k): str(v) for k, v in (options or {}).items()}
    try:
        codec = av.codec.Codec(video_codec, "w")
    except (av.FFmpegError, ValueError):  # PyAV's UnknownCodecError is a ValueError
        codec = None
    if codec is None or codec.type != "video":
        raise ValueError(f"unknown video encoder {video_codec!r} (e.g. libx264, mpeg4, ffv1)")
    pixel_format = _pixel_format(codec, options)
    height, width = video_array.shape[1:3]
    if pixel_format in ("yuv420p", "yuvj420p", "nv12") and (height % 2 or width % 2):
        raise ValueError(f"{video_codec} with {pixel_format} needs an even width and height, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    frames = video_array.cpu().contiguous().numpy()
    with av.open(os.fspath(filename), mode="w") as container:
        stream = container.add_stream(video_codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.options = {k: v for k, v in options.items() if k != "pix_fmt"}
        audio_stream = None
        if audio_array is not None:
            audio_stream = container.add_stream(audio_codec or "aac", rate=int(audio_fps))
            audio_stream.layout = {1: "mono", 2: "stereo"}.get(audio_array.shape[0], f"{audio_array.shape[0]}c")
            audio_stream.options = {str(k): str(v) for k, v in (audio_options or {}).items()}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            samples = audio_array.detach().cpu().float().clamp(-1, 1).contiguous().numpy()
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=audio_stream.layout.name)
            frame.sample_rate = int(audio_fps)
            frame.pts = 0
            container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode())
