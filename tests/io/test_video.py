"""visionzoo.io's video functions, checked against the clips the tests write themselves (the reference no longer
ships a video reader, so there is no oracle): exact frames with a lossless codec, close ones with lossy codecs,
ranges in both units, seeking, audio, the clip iterator, and one clear error per kind of bad file."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

pytest.importorskip("av", reason="PyAV is not installed (pip install visionzoo[video])")

import visionzoo.io._av as av_plumbing  # noqa: E402
from visionzoo.io import (  # noqa: E402
    VideoClip,
    VideoDecodeError,
    read_video,
    read_video_clips,
    read_video_timestamps,
    write_video,
)

FPS = 10
FRAMES = 20
RATE = 16000  # audio samples per second


def _noise(frames: int = FRAMES, height: int = 32, width: int = 48) -> torch.Tensor:
    return torch.randint(
        0, 256, (frames, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def _smooth(frames: int = 12, size: int = 64) -> torch.Tensor:
    """Gradients that drift over time: what lossy codecs are made for."""
    y = torch.linspace(0, 1, size).view(size, 1).expand(size, size)
    x = torch.linspace(0, 1, size).view(1, size).expand(size, size)
    video = [torch.stack([x * 200 + t * 4, y * 200 + t * 2, (x + y) * 100 + 30], dim=-1) for t in range(frames)]
    return torch.stack(video).round().clamp(0, 255).to(torch.uint8)


def _tone(seconds: float = FRAMES / FPS) -> torch.Tensor:
    """Two channels of different sine waves at half scale."""
    t = torch.arange(int(seconds * RATE)) / RATE
    return torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 660 * t)]) * 0.5


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    made = {
        "ffv1": root / "noise.mkv",
        "audio": root / "with_audio.mkv",
        "gop": root / "gop.mp4",
    }
    write_video(made["ffv1"], _noise(), FPS, video_codec="ffv1")
    write_video(
        made["audio"], _noise(), FPS, video_codec="ffv1", audio_array=_tone(), audio_fps=RATE, audio_codec="pcm_s16le"
    )
    # A keyframe every 5 frames and B-frames: seeking has keyframes to land on, and frames to reorder.
    write_video(made["gop"], _smooth(FRAMES), FPS, video_codec="libx264", options={"g": "5", "bf": "2"})
    return made


# ---------------------------------------------------------------------------------------------- round trips


def test_ffv1_round_trip_is_exact(clips):
    video, audio, info = read_video(clips["ffv1"])
    assert video.dtype == torch.uint8
    assert torch.equal(video, _noise())
    assert audio.shape == (1, 0)
    assert info == {"video_fps": FPS}


@pytest.mark.parametrize(
    ("codec", "suffix", "options", "mean_error"),
    [
        ("mpeg4", ".mp4", {"b": "2000000"}, 3.0),
        ("mpeg4", ".avi", {"b": "2000000"}, 3.0),
        ("libx264", ".mp4", None, 3.0),
    ],
)
def test_lossy_round_trip_is_close(tmp_path, codec, suffix, options, mean_error):
    expected = _smooth()
    path = tmp_path / f"clip{suffix}"
    write_video(path, expected, FPS, video_codec=codec, options=options)
    video, _, info = read_video(path)
    assert video.shape == expected.shape
    error = (video.float() - expected.float()).abs()
    assert error.mean() < mean_error
    assert error.max() < 32
    assert info["video_fps"] == FPS


def test_tchw(clips):
    thwc, _, _ = read_video(clips["ffv1"])
    tchw, _, _ = read_video(clips["ffv1"], output_format="tchw")
    assert tchw.shape == (FRAMES, 3, 32, 48)
    assert torch.equal(tchw, thwc.permute(0, 3, 1, 2))


def test_audio_round_trip(clips):
    video, audio, info = read_video(clips["audio"])
    assert torch.equal(video, _noise())
    assert info == {"video_fps": FPS, "audio_fps": RATE}
    expected = _tone()
    assert audio.dtype == torch.float32 and audio.shape == expected.shape
    torch.testing.assert_close(audio, expected, atol=1 / 32768 + 1e-6, rtol=0)  # 16-bit PCM


def test_audio_of_a_range(clips):
    _, audio, _ = read_video(clips["audio"], 0.5, 0.9, pts_unit="sec")
    # Both ends inclusive: the samples at 0.5 s up to and including the one at 0.9 s.
    expected = _tone()[:, int(0.5 * RATE) : int(0.9 * RATE) + 1]
    torch.testing.assert_close(audio, expected, atol=1 / 32768 + 1e-6, rtol=0)


def test_lossy_audio_keeps_rate_and_length(tmp_path):
    path = tmp_path / "aac.mp4"
    write_video(path, _smooth(FRAMES), FPS, audio_array=_tone(), audio_fps=RATE, audio_codec="aac")
    _, audio, info = read_video(path)
    assert info["audio_fps"] == RATE
    assert audio.shape[0] == 2
    assert abs(audio.shape[1] - _tone().shape[1]) <= 2048  # AAC pads to whole 1024-sample frames
    assert 0.2 < audio.abs().max() <= 1.0


# ---------------------------------------------------------------------------------------------- ranges and seeking


def test_read_video_timestamps(clips):
    stamps, fps = read_video_timestamps(clips["gop"])
    assert fps == FPS and len(stamps) == FRAMES
    assert stamps == sorted(stamps) and len(set(stamps)) == FRAMES
    seconds, _ = read_video_timestamps(clips["gop"], pts_unit="sec")
    assert seconds == [Fraction(i, FPS) for i in range(FRAMES)]


def test_ranges_in_pts_and_seconds(clips):
    everything = _noise()
    stamps, _ = read_video_timestamps(clips["ffv1"])
    by_pts, _, _ = read_video(clips["ffv1"], stamps[5], stamps[9])
    assert torch.equal(by_pts, everything[5:10])
    # 0.5 and 0.9 are not exact in binary; both ends still include the frames shown at those times.
    by_sec, _, _ = read_video(clips["ffv1"], 0.5, 0.9, pts_unit="sec")
    assert torch.equal(by_sec, everything[5:10])
    tail, _, _ = read_video(clips["ffv1"], 1.55, pts_unit="sec")
    assert torch.equal(tail, everything[16:])
    between, _, _ = read_video(clips["ffv1"], 0.51, 0.59, pts_unit="sec")
    assert between.shape == (0, 32, 48, 3)


def test_seeking_gives_the_frames_of_a_full_decode(clips):
    """Every start of a clip with keyframes every 5 frames and B-frames: the same frames as decoding it all."""
    full, _, _ = read_video(clips["gop"])
    stamps, _ = read_video_timestamps(clips["gop"])
    for start in range(FRAMES):
        part, _, _ = read_video(clips["gop"], stamps[start], stamps[min(start + 3, FRAMES - 1)])
        assert torch.equal(part, full[start : start + 4]), start


def test_a_late_start_does_not_decode_from_the_beginning(clips, monkeypatch):
    decoded = []
    frames_of = av_plumbing.frames_of

    def counting(*args, **kwargs):
        for frame in frames_of(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(av_plumbing, "frames_of", counting)
    stamps, _ = read_video_timestamps(clips["gop"])
    video, _, _ = read_video(clips["gop"], stamps[17], stamps[18])
    assert len(video) == 2
    assert min(decoded) == stamps[15]  # the keyframe before frame 17
    assert len(decoded) <= 5


# ---------------------------------------------------------------------------------------------- clips


def test_clips_follow_each_other(clips):
    everything = _noise()
    found = list(read_video_clips(clips["ffv1"], 8))
    assert [clip.index for clip in found] == [0, 1]
    assert all(isinstance(clip, VideoClip) for clip in found)
    assert torch.equal(found[0].frames, everything[:8]) and torch.equal(found[1].frames, everything[8:16])
    assert (found[0].start, found[0].end) == pytest.approx((0.0, 0.8))
    assert (found[1].start, found[1].end) == pytest.approx((0.8, 1.6))


def test_clips_with_a_short_last_one_overlap_and_tchw(clips):
    everything = _noise()
    found = list(read_video_clips(clips["ffv1"], 8, drop_last=False, output_format="TCHW"))
    assert [tuple(clip.frames.shape) for clip in found] == [(8, 3, 32, 48), (8, 3, 32, 48), (4, 3, 32, 48)]
    assert torch.equal(found[2].frames, everything[16:].permute(0, 3, 1, 2))
    overlapping = list(read_video_clips(clips["ffv1"], 8, step=4))
    assert [clip.start for clip in overlapping] == pytest.approx([0.0, 0.4, 0.8, 1.2])
    assert torch.equal(overlapping[1].frames, everything[4:12])


def test_clips_resampled_and_from_a_start(clips):
    everything = _noise()
    halved = list(read_video_clips(clips["ffv1"], 5, frame_rate=FPS / 2))
    assert len(halved) == 2
    assert torch.equal(halved[0].frames, everything[0:10:2]) and torch.equal(halved[1].frames, everything[10:20:2])
    assert halved[1].end == pytest.approx(2.0)
    late = list(read_video_clips(clips["gop"], 4, start_sec=1.0))
    full, _, _ = read_video(clips["gop"])
    assert [clip.start for clip in late] == pytest.approx([1.0, 1.4])
    assert torch.equal(late[0].frames, full[10:14])


def test_clip_arguments_are_checked(clips):
    with pytest.raises(ValueError, match="clip_len"):
        read_video_clips(clips["ffv1"], 0)
    with pytest.raises(ValueError, match="step"):
        read_video_clips(clips["ffv1"], 4, step=0)
    with pytest.raises(ValueError, match="frame_rate"):
        read_video_clips(clips["ffv1"], 4, frame_rate=-1)


# ---------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_video(tmp_path / "absent.mp4")
    with pytest.raises(VideoDecodeError, match="no such file"):
        read_video_timestamps(tmp_path / "absent.mp4")


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 20)
    with pytest.raises(VideoDecodeError, match="not a video file"):
        read_video(text)
    sound = tmp_path / "sound.wav"
    import av

    with av.open(str(sound), "w") as container:  # audio only
        stream = container.add_stream("pcm_s16le", rate=RATE)
        frame = av.AudioFrame.from_ndarray(_tone()[:1].numpy(), format="fltp", layout="mono")
        frame.sample_rate = RATE
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_video(sound)


@pytest.mark.parametrize("source", ["gop", "ffv1"])
def test_truncated_file(clips, tmp_path, source):
    data = clips[source].read_bytes()
    cut = tmp_path / f"cut{clips[source].suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_video(cut)


def test_range_outside_the_video(clips):
    with pytest.raises(VideoDecodeError, match=r"from 5 s lies outside the video, which is 2\.000 s long"):
        read_video(clips["ffv1"], 5.0, pts_unit="sec")
    with pytest.raises(VideoDecodeError, match="outside the video"):
        list(read_video_clips(clips["gop"], 4, start_sec=3.0))


def test_bad_arguments(clips):
    with pytest.raises(ValueError, match="end_pts must be at least start_pts"):
        read_video(clips["ffv1"], 1.0, 0.5, pts_unit="sec")
    with pytest.raises(ValueError, match="pts_unit"):
        read_video(clips["ffv1"], pts_unit="frames")
    with pytest.raises(ValueError, match="output_format"):
        read_video(clips["ffv1"], output_format="CTHW")
    with pytest.raises(ValueError, match="at least 0"):
        read_video(clips["ffv1"], -1)


def test_the_error_is_both_kinds_the_reference_raised():
    assert issubclass(VideoDecodeError, ValueError) and issubclass(VideoDecodeError, RuntimeError)


def test_write_video_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="T x H x W x 3"):
        write_video(tmp_path / "a.mp4", torch.zeros(4, 8, 8, dtype=torch.uint8), FPS)
    with pytest.raises(TypeError, match="uint8"):
        write_video(tmp_path / "a.mp4", torch.zeros(4, 8, 8, 3), FPS)
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "a.mp4", torch.zeros(4, 9, 8, 3, dtype=torch.uint8), FPS)
    with pytest.raises(ValueError, match="unknown video encoder"):
        write_video(tmp_path / "a.mp4", torch.zeros(4, 8, 8, 3, dtype=torch.uint8), FPS, video_codec="nope")
    with pytest.raises(ValueError, match="audio_fps"):
        write_video(tmp_path / "a.mp4", torch.zeros(4, 8, 8, 3, dtype=torch.uint8), FPS, audio_array=torch.zeros(1, 9))


def test_without_pyav(monkeypatch, clips):
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` meets when PyAV is not installed
    with pytest.raises(VideoDecodeError, match=r"pip install visionzoo\[video\]"):
        read_video(clips["ffv1"])
    with pytest.raises(VideoDecodeError, match=r"pip install visionzoo\[video\]"):
        write_video(clips["ffv1"].with_name("new.mkv"), _noise(), FPS)


def test_importing_visionzoo_io_does_not_import_av():
    code = "import sys; import visionzoo.io; assert 'av' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_seconds_that_floats_cannot_hold_exactly(clips):
    # 0.1 is a hair above a tenth and 0.3 a hair below three tenths: both still name the frames and samples there.
    video, audio, _ = read_video(clips["audio"], 0.1, 0.3, pts_unit="sec")
    assert torch.equal(video, _noise()[1:4])
    torch.testing.assert_close(audio, _tone()[:, 1600:4801], atol=1 / 32768 + 1e-6, rtol=0)


def test_clips_are_read_as_they_are_asked_for(clips, monkeypatch):
    """The iterator decodes as it goes: the first clip of 4 frames costs a few frames, not the whole video."""
    decoded = []
    frames_of = av_plumbing.frames_of

    def counting(*args, **kwargs):
        for frame in frames_of(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(av_plumbing, "frames_of", counting)
    stream = read_video_clips(clips["ffv1"], 4)
    first = next(stream)
    assert len(first.frames) == 4 and len(decoded) <= 5
    stream.close()
