"""read_video of a range in the middle of a 60-second 640x360 clip vs decoding the clip from its start.

The issue's target: ``read_video`` of a 2-second range in the middle is at least 5x faster than decoding from the
start. The clip is H.264 at 30 fps with libx264's default keyframe interval (250 frames), written once and kept
in the system's temporary directory (encoding it takes a minute or more). Rows, each timed interleaved with ours:

* ``from_start``: PyAV's plain decode loop from the first frame, every frame converted to an RGB array (what a
  reader without seeking does), keeping those in the range and stopping after it;
* ``from_start_rgb_in_range``: the same loop converting only the frames in the range, which isolates what
  seeking alone saves.

All sides return the same frames (checked). Run: ``python -m benchmarks.video_io [--quick]``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ._harness import Report, median, paired_ratio, parse_settings, print_row, skip, time_interleaved

SECONDS, FPS, HEIGHT, WIDTH = 60, 30, 360, 640
RANGE = (30.0, 32.0)  # seconds, both ends inclusive
TARGET = 5.0  # speed-up over from_start


def _frames(first: int, count: int) -> torch.Tensor:
    """Blocks of colour sliding diagonally, with a disc circling over them: motion a codec has to work for."""
    gen = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=torch.uint8, generator=gen)
    base = tiles.repeat_interleave(8, 0).repeat_interleave(8, 1)
    yy, xx = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    out = []
    for t in range(first, first + count):
        frame = torch.roll(base, (2 * t, 3 * t), (0, 1)).clone()
        cx, cy = WIDTH / 2 + 200 * math.sin(t / 20), HEIGHT / 2 + 100 * math.cos(t / 15)
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 40**2] = torch.tensor([255, (5 * t) % 256, 0], dtype=torch.uint8)
        out.append(frame)
    return torch.stack(out)


def clip_path() -> Path:
    """The benchmark clip, written on first use (libx264, preset veryfast, otherwise the encoder's defaults)."""
    path = Path(tempfile.gettempdir()) / f"visionzoo-bench-{SECONDS}s-{WIDTH}x{HEIGHT}-{FPS}fps.mp4"
    if path.is_file():
        return path
    import av

    print(f"  writing {path} (once)", flush=True)
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast"}
        for first in range(0, SECONDS * FPS, 10 * FPS):
            for array in _frames(first, 10 * FPS).numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def from_start(path: Path, convert_all: bool) -> torch.Tensor:
    """Decode from the first frame; keep the frames in RANGE as RGB (converting every frame, or only those)."""
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter

    begin, end = RANGE
    kept = []
    reformatter = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            array = frame.to_ndarray(format="rgb24") if convert_all else None
            if frame.time > end:
                break
            if frame.time >= begin:
                kept.append(array if array is not None else reformatter.reformat(frame, format="rgb24").to_ndarray())
    return torch.from_numpy(np.stack(kept))


def main(argv: list[str] | None = None) -> Report:
    settings, _ = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("video_io", settings)
    try:
        import av  # noqa: F401
    except ImportError:
        skip(report, "video_io: PyAV is not installed (pip install visionzoo[video])")
        print(f"wrote {report.write()}")
        return report
    from visionzoo.io import read_video

    path = clip_path()
    begin, end = RANGE
    sides = {
        "ours": lambda: read_video(path, begin, end, pts_unit="sec")[0],
        "from_start": lambda: from_start(path, convert_all=True),
        "from_start_rgb_in_range": lambda: from_start(path, convert_all=False),
    }
    results = {name: fn() for name, fn in sides.items()}
    same = all(torch.equal(results["ours"], other) for other in results.values())
    start = time.perf_counter()
    times = time_interleaved(sides, settings)
    row: dict[str, Any] = {
        "clip": f"{SECONDS}s {WIDTH}x{HEIGHT} {FPS}fps h264",
        "range_s": f"{begin:g}-{end:g}",
        "frames": len(results["ours"]),
        "ours_s": median(times["ours"]),
        "from_start_s": median(times["from_start"]),
        "from_start_rgb_in_range_s": median(times["from_start_rgb_in_range"]),
        "speedup": 1 / paired_ratio(times, "ours", "from_start"),
        "speedup_seek_only": 1 / paired_ratio(times, "ours", "from_start_rgb_in_range"),
        "same_frames": same,
    }
    print_row(row)
    report.rows.append(row)
    report.summary = {
        "speedup": row["speedup"],
        "speedup_seek_only": row["speedup_seek_only"],
        "target": TARGET,
        "target_met": row["speedup"] >= TARGET and same,
        "seconds": time.perf_counter() - start,
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
