"""The PyAV plumbing behind :mod:`visionzoo.io.video`: importing PyAV on first use, opening a file with the
reason it cannot be read, seeking, and decoding one stream's frames of a time range.

Every failure is a :class:`VideoDecodeError`.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import av
    import av.container
    import av.stream

# Leading bytes of the containers video is usually stored in. A file that starts like one of these but cannot
# be opened is reported as truncated or corrupt rather than as "not a video".
_CONTAINER_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4, MOV, 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75"),  # ASF, WMV
)

# Times given in seconds match a timestamp (or an audio sample) when within this fraction of one tick of it:
# floats such as 0.1 are a hair off the decimal they stand for.
SLACK = Fraction(1, 1000)


class VideoDecodeError(ValueError, RuntimeError):
    """A video file cannot be read: missing, not a video, truncated or corrupt, a time range outside it, or
    PyAV (the decoder) not installed.

    It is both a ``ValueError`` and a ``RuntimeError``: the reference raised the one for bad ranges and the
    other for unreadable files, so code written against it catches ours too.
    """

    __module__ = "visionzoo.io.video"  # where users import it from


def import_av() -> Any:
    """The ``av`` module, or a :class:`VideoDecodeError` saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoDecodeError(
            "Reading and writing video needs PyAV, which is not installed: pip install visionzoo[video]"
        ) from None
    return av


# ---------------------------------------------------------------------------------------------------- opening


def _looks_like_video_container(filename: str) -> bool:
    with open(filename, "rb") as f:
        head = f.read(16)
    return any(head[at : at + len(magic)] == magic for at, magic in _CONTAINER_SIGNATURES)


def open_video(filename: str | os.PathLike[str]) -> tuple[av.container.InputContainer, av.stream.Stream]:
    """Open ``filename`` for reading and return it with its first video stream.

    Raises:
        VideoDecodeError: the file is missing, cannot be opened as media, or has no video stream.
    """
    av = import_av()
    path = os.fspath(filename)
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoDecodeError(f"{path}: a directory, not a video file")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.FFmpegError as error:
        what = "truncated or corrupt" if _looks_like_video_container(path) else "not a video file"
        raise VideoDecodeError(f"{path}: {what} (FFmpeg: {reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: not a video file (it holds no video stream)")
    return container, container.streams.video[0]


def reason(error: BaseException) -> str:
    """What FFmpeg said, without the errno and file name PyAV wraps it in."""
    return getattr(error, "strerror", None) or str(error)


# ---------------------------------------------------------------------------------------------------- decoding


def frames_of(
    container: av.container.InputContainer, stream: av.stream.Stream, path: str, skip_before: int | None = None
) -> Iterator[Any]:
    """Every timestamped frame of ``stream`` from the container's position on, decoding only that stream.

    Packets shown before ``skip_before`` that no other frame refers to (most B-frames) are not decoded at all:
    they could only be thrown away, and the frames that follow do not need them.
    """
    av = import_av()
    context = stream.codec_context
    try:
        for packet in container.demux(stream):
            if skip_before is not None:
                early = packet.pts is not None and packet.pts < skip_before
                context.skip_frame = "NONREF" if early else "DEFAULT"
            for frame in packet.decode():
                if frame.pts is not None:
                    yield frame
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{path}: truncated or corrupt {stream.type} data (FFmpeg: {reason(error)})") from None


def seek(container: av.container.InputContainer, stream: av.stream.Stream, pts: int, path: str) -> None:
    """Move to the keyframe of ``stream`` at or before ``pts``."""
    av = import_av()
    try:
        container.seek(pts, backward=True, any_frame=False, stream=stream)
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{path}: truncated or corrupt (FFmpeg: {reason(error)})") from None


def decoded_frames(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    start: int,
    end: int | float,
    path: str,
    request: str,
) -> Iterator[Any]:
    """The frames of ``stream`` whose timestamps lie in ``[start, end]``, in presentation order, unconverted.

    A ``start`` after the stream's first frame seeks to the keyframe at or before it; decoding stops at the
    first frame past ``end``. ``request`` describes the range for error messages.

    Raises:
        VideoDecodeError: the data cannot be decoded; the stream stops before the duration its container
            declares (truncated); the range starts after the video ends.
    """
    origin = stream.start_time or 0
    frames = frames_of(container, stream, path)
    if start > origin:
        seek(container, stream, start, path)
        frames = frames_of(container, stream, path, skip_before=start)
        head = next(frames, None)
        if head is None or head.pts > start:
            # The demuxer's index had no keyframe at or before the start: decode from the beginning instead.
            seek(container, stream, origin, path)
            frames = frames_of(container, stream, path, skip_before=start)
        else:
            frames = itertools.chain([head], frames)
    last_seen: int | None = None
    found = False
    for frame in frames:
        last_seen = frame.pts
        if frame.pts < start:
            continue
        if frame.pts > end:
            return
        found = True
        yield frame
    # The stream ended inside the range: check that it ends where the container says it does.
    time_base = stream.time_base
    interval = 1 / Fraction(stream.average_rate or stream.guessed_rate or 1)
    decoded_end = Fraction(last_seen - origin) * time_base + interval if last_seen is not None else Fraction(0)
    declared = _declared_length(container, stream)
    if declared is not None and decoded_end + max(2 * interval, Fraction(1, 10)) < declared:
        raise VideoDecodeError(
            f"{path}: truncated: its video stops at {float(decoded_end):.3f} s of the {float(declared):.3f} s "
            "the container declares"
        )
    if not found and Fraction(start - origin) * time_base >= decoded_end:
        raise VideoDecodeError(
            f"{path}: the range {request} lies outside the video, which is {float(decoded_end):.3f} s long"
        )


def _declared_length(container: av.container.InputContainer, stream: av.stream.Stream) -> Fraction | None:
    """The video stream's length as the container's header states it, in seconds (None: not stated)."""
    if stream.duration is not None:
        return Fraction(stream.duration) * stream.time_base
    tag = next((value for key, value in stream.metadata.items() if key.upper() == "DURATION"), None)
    if tag:  # Matroska: "HH:MM:SS.nnnnnnnnn"
        try:
            hours, minutes, seconds = tag.split(":")
            return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
        except ValueError:
            return None
    if container.duration is not None and len(container.streams) == 1:
        return Fraction(container.duration, 1_000_000)  # in AV_TIME_BASE units; the video's only if it is alone
    return None


def _audio_samples(frame: Any) -> torch.Tensor:
    """A decoded audio frame as float32 samples in [-1, 1], channels x samples."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: one row of interleaved samples
        array = array.reshape(-1, len(frame.layout.channels)).T
    samples = torch.from_numpy(array.copy())
    if samples.dtype == torch.uint8:
        return (samples.float() - 128) / 128
    if samples.dtype in (torch.int16, torch.int32):
        return samples.float() / (2 ** (8 * samples.element_size() - 1))
    return samples.float()


def read_audio(
    container: av.container.InputContainer, start: Fraction, end: Fraction | None, path: str
) -> torch.Tensor:
    """The first audio stream's samples from ``start`` to ``end`` seconds (inclusive), channels x samples."""
    stream = container.streams.audio[0]
    time_base = stream.time_base
    # Always seek: reading the video moved the container's position.
    seek(container, stream, math.floor(start / time_base), path)
    pieces: list[torch.Tensor] = []
    channels = stream.channels or 1
    for frame in frames_of(container, stream, path):
        begin = Fraction(frame.pts) * time_base
        if end is not None and begin > end:
            break
        samples = _audio_samples(frame)
        channels = samples.shape[0]
        # Sample i plays at begin + i / rate: keep those with start <= time <= end (up to SLACK of a sample).
        first = max(0, math.ceil((start - begin) * frame.sample_rate - SLACK))
        stop = samples.shape[1]
        if end is not None:
            stop = min(stop, math.floor((end - begin) * frame.sample_rate + SLACK) + 1)
        if stop > first:
            pieces.append(samples[:, first:stop])
    return torch.cat(pieces, dim=1) if pieces else torch.empty(channels, 0)


def start_decoding(stream: av.stream.Stream) -> Callable[[Any], Any]:
    """Set up ``stream``'s decoder; return the function that turns its frames into H x W x 3 uint8 arrays."""
    from av.video.reformatter import VideoReformatter

    stream.thread_type = "AUTO"  # frame and slice threads: several frames decode at once
    # One reformatter for every frame keeps its swscale context; a frame's own to_ndarray sets one up each time,
    # which costs more than the conversion itself.
    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()
