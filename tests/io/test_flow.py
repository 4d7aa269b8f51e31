"""Flow files: Middlebury .flo and KITTI 16-bit PNG, by round trip, against hand-made files, and against the
reference's readers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch

from tests import reference
from visionzoo.io import read_flo, read_kitti_flow, write_flo, write_kitti_flow, write_png


def _flow(height: int = 5, width: int = 7, scale: float = 20.0) -> torch.Tensor:
    return torch.randn(2, height, width, generator=torch.Generator().manual_seed(0)) * scale


# ------------------------------------------------------------------------------------------------------------- .flo


def test_flo_round_trip_is_exact(tmp_path: Path) -> None:
    flow = _flow()
    write_flo(flow, tmp_path / "a.flo")
    got = read_flo(tmp_path / "a.flo")
    assert got.dtype == torch.float32 and got.shape == (2, 5, 7)
    assert torch.equal(got, flow)
    write_flo(flow.double(), str(tmp_path / "b.flo"))  # float64 is stored as float32
    assert torch.equal(read_flo(tmp_path / "b.flo"), flow)


def test_flo_reads_a_hand_made_file(tmp_path: Path) -> None:
    # 3 wide, 2 high; pixel (row y, column x) holds u = 10 * y + x and v = -u
    values = [value for y in range(2) for x in range(3) for value in (10.0 * y + x, -(10.0 * y + x))]
    (tmp_path / "hand.flo").write_bytes(b"PIEH" + struct.pack("<ii", 3, 2) + struct.pack("<12f", *values))
    flow = read_flo(tmp_path / "hand.flo")
    assert flow.tolist() == [[[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], [[-0.0, -1.0, -2.0], [-10.0, -11.0, -12.0]]]


def test_flo_writes_the_format_byte_for_byte(tmp_path: Path) -> None:
    flow = torch.tensor([[[1.5, -2.0]], [[0.25, 8.0]]])  # 2 wide, 1 high
    write_flo(flow, tmp_path / "out.flo")
    expected = struct.pack("<f", 202021.25) + struct.pack("<ii", 2, 1) + struct.pack("<4f", 1.5, 0.25, -2.0, 8.0)
    assert (tmp_path / "out.flo").read_bytes() == expected
    assert expected[:4] == b"PIEH"


def test_flo_files_read_as_the_reference_reads_them(tmp_path: Path) -> None:
    flow = _flow(9, 4)
    write_flo(flow, tmp_path / "a.flo")
    theirs = reference.flow_file_readers()._read_flo(str(tmp_path / "a.flo"))
    assert torch.equal(torch.from_numpy(theirs.copy()), flow)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "does not start with the tag"),
        (b"XXXX" + struct.pack("<ii", 1, 1) + bytes(8), "does not start with the tag"),
        (b"PIEH" + struct.pack("<ii", 0, 3), r"declares a 0x3 flow"),
        (b"PIEH" + struct.pack("<ii", 2, 2) + bytes(24), "holds 44 bytes, this one 36 \\(truncated\\)"),
        (b"PIEH" + struct.pack("<ii", 1, 1) + bytes(12), "trailing data"),
        (b"PIEH" + struct.pack("<ii", 2**30, 2**30), "truncated"),  # a huge header is refused, not allocated
    ],
)
def test_bad_flo_files_raise_clear_errors(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "bad.flo").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_flo(tmp_path / "bad.flo")


@pytest.mark.parametrize(
    ("flow", "error", "match"),
    [
        (torch.zeros(3, 4, 4), ValueError, r"shape \(2, H, W\).*\(3, 4, 4\)"),
        (torch.zeros(1, 2, 4, 4), ValueError, r"got \(1, 2, 4, 4\)"),
        (torch.zeros(2, 4, 4, dtype=torch.int64), TypeError, "floating point"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_writing_a_bad_flow_raises_clear_errors(tmp_path: Path, flow: object, error: type, match: str) -> None:
    for write in (write_flo, write_kitti_flow):
        with pytest.raises(error, match=match):
            write(flow, tmp_path / "x")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ KITTI PNG


def test_kitti_round_trip_keeps_flow_to_a_64th_of_a_pixel_and_the_mask(tmp_path: Path) -> None:
    flow = _flow(6, 10)
    valid = torch.rand(6, 10, generator=torch.Generator().manual_seed(1)) > 0.3
    write_kitti_flow(flow, tmp_path / "k.png", valid)
    got, got_valid = read_kitti_flow(tmp_path / "k.png")
    assert got.dtype == torch.float32 and got.shape == (2, 6, 10) and got_valid.dtype == torch.bool
    assert torch.equal(got_valid, valid)
    torch.testing.assert_close(got[:, valid], torch.round(flow * 64)[:, valid] / 64, atol=0, rtol=0)
    assert torch.equal(got[:, ~valid], torch.full_like(got[:, ~valid], -512.0))  # invalid pixels store 0
    write_kitti_flow(flow, tmp_path / "all.png")  # no mask: every pixel valid
    assert bool(read_kitti_flow(tmp_path / "all.png")[1].all())


def test_kitti_files_read_as_the_reference_reads_them(tmp_path: Path) -> None:
    flow = _flow(4, 9, scale=100.0)
    valid = torch.ones(4, 9, dtype=torch.bool)
    valid[0, :3] = False
    write_kitti_flow(flow, tmp_path / "k.png", valid)
    theirs_flow, theirs_valid = reference.flow_file_readers()._read_16bits_png_with_flow_and_valid_mask(
        str(tmp_path / "k.png")
    )
    ours_flow, ours_valid = read_kitti_flow(tmp_path / "k.png")
    assert torch.equal(torch.from_numpy(theirs_flow), ours_flow)
    assert torch.equal(torch.from_numpy(theirs_valid), ours_valid)


def _png16(width: int, height: int, samples: list[int]) -> bytes:
    """A hand-assembled 16-bit RGB PNG (big-endian samples, filter byte 0 per row)."""
    row_size = 3 * width
    raw = b"".join(
        b"\x00" + struct.pack(f">{row_size}H", *samples[r * row_size : (r + 1) * row_size]) for r in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_kitti_reads_a_hand_made_file(tmp_path: Path) -> None:
    # two pixels: u = +1.5, v = -2 (valid); then a pixel without ground truth
    first = (32768 + 96, 32768 - 128, 1)
    (tmp_path / "hand.png").write_bytes(_png16(2, 1, [*first, 0, 0, 0]))
    flow, valid = read_kitti_flow(tmp_path / "hand.png")
    assert flow[:, 0, 0].tolist() == [1.5, -2.0]
    assert valid.tolist() == [[True, False]]
    write_kitti_flow(flow, tmp_path / "again.png", valid)  # and our writer stores the same samples
    again, again_valid = read_kitti_flow(tmp_path / "again.png")
    assert torch.equal(again, flow) and torch.equal(again_valid, valid)


def test_kitti_clamps_to_the_formats_range(tmp_path: Path) -> None:
    flow = torch.tensor([[[600.0, -600.0, 0.0078]], [[0.0, 0.0, -0.0079]]])
    write_kitti_flow(flow, tmp_path / "k.png")
    got, _ = read_kitti_flow(tmp_path / "k.png")
    assert got[0].tolist() == [[(65535 - 32768) / 64, -512.0, 0.0]]
    assert got[1, 0, 2].item() == -1 / 64


def test_kitti_bad_files_and_arguments_raise_clear_errors(tmp_path: Path) -> None:
    write_png(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "eight_bit.png")
    with pytest.raises(ValueError, match="expected a 16-bit RGB PNG"):
        read_kitti_flow(tmp_path / "eight_bit.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError):
        read_kitti_flow(tmp_path / "junk.png")
    with pytest.raises(ValueError, match=r"valid must be a \(4, 4\) bool tensor, got \(4, 5\)"):
        write_kitti_flow(torch.zeros(2, 4, 4), tmp_path / "k.png", torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_kitti_flow(torch.full((2, 4, 4), float("nan")), tmp_path / "k.png")
    nan_where_invalid = torch.zeros(2, 4, 4)
    nan_where_invalid[:, 0, 0] = float("nan")
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 0] = False
    write_kitti_flow(nan_where_invalid, tmp_path / "ok.png", mask)  # unknown pixels may hold anything
    assert read_kitti_flow(tmp_path / "ok.png")[1].tolist() == mask.tolist()
