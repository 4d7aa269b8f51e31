"""``visionzoo download``, ``verify`` and ``convert`` against checkpoints served from 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from tests._cli_zoo import TinyZoo, install_zoo, run
from tests._http import FileServer
from visionzoo import hub
from visionzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAT = str(ROOT / "assets" / "chelsea.jpg")


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "5")


def statuses(out: str) -> dict[str, str]:
    """``weights -> status`` from a download/convert report table."""
    lines = out.strip().splitlines()
    return {line.split()[1]: line.split()[0] for line in lines[2:-1]}


# ---------------------------------------------------------------------------------------------- download


def test_download_to_a_directory_then_skip(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    usb = tmp_path / "usb"
    status, out, err = run(["download", "tiny*", "--weights", "all", "--to", str(usb)], capsys)
    assert status == 0, err
    assert statuses(out) == {"TinyNet_Weights.V1": "downloaded", "TinyNet_Weights.V2": "downloaded"}
    assert out.strip().splitlines()[-1] == "2 downloaded, 0 copied, 0 skipped, 0 failed"
    assert "note: tinydet: no pretrained weights" in err and "Downloading" in err  # progress on stderr
    for name in zoo.files.values():
        assert (usb / name).read_bytes() == (zoo.served / name).read_bytes()
    assert not list(hub.get_dir().glob("*.pth"))  # --to bypasses the cache

    for name in zoo.files.values():
        (zoo.served / name).unlink()  # a second run needs no network
    status, out, _ = run(["download", "tinynet", "--weights", "ALL", "--to", str(usb), "--quiet"], capsys)
    assert status == 0 and out.strip().splitlines()[-1] == "0 downloaded, 0 copied, 2 skipped, 0 failed"

    # The directory serves as VISIONZOO_WEIGHTS_DIR on an offline machine.
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(usb))
    status, out, _ = run(["predict", CAT, "--model", "tinynet", "--topk", "1", "--quiet"], capsys)
    assert status == 0 and "class_9" in out
    status, out, _ = run(["download", "tinynet", "--quiet"], capsys)  # into the cache: already in the directory
    assert status == 0 and statuses(out) == {"TinyNet_Weights.V2": "skipped"}


def test_download_into_the_cache_copies_from_a_mirror_directory(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = zoo.files["V1"]
    (zoo.served / name).rename(mirror / name)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    status, out, _ = run(["download", "TinyNet_Weights.V1", "--to", str(tmp_path / "copy"), "--quiet"], capsys)
    assert status == 0 and statuses(out) == {"TinyNet_Weights.V1": "copied"}
    assert (tmp_path / "copy" / name).read_bytes() == (mirror / name).read_bytes()


def test_download_failures_are_counted_and_exit_non_zero(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (zoo.served / zoo.files["V1"]).unlink()  # 404
    status, out, err = run(["download", "tinynet", "--weights", "all", "--to", str(tmp_path / "d"), "--quiet"], capsys)
    assert status == 1
    assert statuses(out) == {"TinyNet_Weights.V1": "failed", "TinyNet_Weights.V2": "downloaded"}
    assert out.strip().splitlines()[-1] == "1 downloaded, 0 copied, 0 skipped, 1 failed"
    assert err.count("\n") == 1 and f"visionzoo: TinyNet_Weights.V1: not available: download: {zoo.base_url}" in err
    assert "HTTP error 404" in err

    (zoo.served / zoo.files["V2"]).write_bytes(b"tampered")  # served bytes no longer match the name's digest
    status, out, err = run(["download", "tinynet", "--quiet"], capsys)
    assert status == 1 and statuses(out) == {"TinyNet_Weights.V2": "failed"} and "promises a digest" in err
    assert not (hub.get_dir() / zoo.files["V2"]).exists()


def test_download_resumes_an_interrupted_transfer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FileServer() as server:
        base = server.url("/w").rstrip("/")
        served = tmp_path / "served"
        served.mkdir()
        zoo = install_zoo(monkeypatch, base, served)
        name = zoo.files["V2"]
        data = (served / name).read_bytes()
        server.serve(f"/w/{name}", data, mode="drop")  # half the body, then a reset
        target = tmp_path / "usb"
        status, out, _ = run(["download", "tinynet", "--to", str(target), "--quiet"], capsys)
        assert status == 1 and statuses(out) == {"TinyNet_Weights.V2": "failed"}
        kept = (target / f"{name}.partial").stat().st_size
        assert 0 < kept < len(data)
        server.serve(f"/w/{name}", data)
        status, out, _ = run(["download", "tinynet", "--to", str(target), "--quiet"], capsys)
        assert status == 0 and (target / name).read_bytes() == data
        assert server.requests[-1].headers.get("Range") == f"bytes={kept}-"


def test_download_errors(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["download", "nosuch*"], capsys)
    assert status == 2 and err == "visionzoo: error: no model matches 'nosuch*' (visionzoo list shows them all)\n"
    status, _, err = run(["download", "tinynet", "--weights", "V9"], capsys)
    assert status == 2 and "Unknown weights 'V9' for TinyNet_Weights. Valid names: V1, V2, DEFAULT" in err
    status, _, err = run(["download", "tinydet"], capsys)
    assert status == 2 and "no weights entry selected: tinydet: no pretrained weights" in err


# ---------------------------------------------------------------------------------------------- verify


def test_verify_reports_good_bad_and_unchecked_files(
    zoo: TinyZoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "weights"
    assert main(["download", "tinynet", "--weights", "all", "--to", str(directory), "--quiet"]) == 0
    (directory / "notes.txt").write_text("not a checkpoint")  # ignored
    (directory / "mine.pth").write_bytes(b"no digest in the name")
    capsys.readouterr()
    status, out, _ = run(["verify", str(directory), "--quiet"], capsys)
    assert status == 0
    rows = {line.split()[1]: line.split()[0] for line in out.strip().splitlines()[2:-1]}
    assert rows == {"mine.pth": "unchecked", zoo.files["V1"]: "ok", zoo.files["V2"]: "ok"}
    assert out.strip().splitlines()[-1] == f"3 files in {directory}: 2 ok, 0 bad, 1 unchecked"

    damaged = directory / zoo.files["V1"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    damaged.write_bytes(bytes(data))
    status, out, _ = run(["verify", str(directory), "--quiet"], capsys)
    assert status == 1 and out.strip().splitlines()[-1] == f"3 files in {directory}: 1 ok, 1 bad, 1 unchecked"
    bad = next(line for line in out.splitlines() if line.startswith("BAD"))
    assert zoo.files["V1"] in bad and "(its name)" in bad


def test_verify_defaults_to_the_places_the_loader_reads(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(["verify"], capsys)
    assert status == 0 and out.strip() == f"No checkpoint files in {hub.get_dir()}."
    assert main(["download", "tinynet", "--quiet"]) == 0  # V2 into the cache
    mirror = tmp_path / "mirror"
    assert main(["download", "TinyNet_Weights.V1", "--to", str(mirror), "--quiet"]) == 0
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    capsys.readouterr()
    status, out, _ = run(["verify", "--quiet"], capsys)
    assert (
        status == 0
        and out.strip().splitlines()[-1] == f"2 files in {mirror} and {hub.get_dir()}: 2 ok, 0 bad, 0 unchecked"
    )
    assert str(mirror / zoo.files["V1"]) in out and str(hub.get_dir() / zoo.files["V2"]) in out


def test_verify_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(["verify", str(tmp_path / "nowhere")], capsys)
    assert status == 2 and err == f"visionzoo: error: {tmp_path / 'nowhere'}: no such directory\n"


# ---------------------------------------------------------------------------------------------- convert


def test_convert_to_safetensors_used_by_the_loader(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors import safe_open

    offline = tmp_path / "offline"
    status, out, err = run(
        ["convert", "tinynet", "--weights", "all", "--to", str(offline), "--format", "safetensors", "--quiet"], capsys
    )
    assert status == 0, err
    assert statuses(out) == {"TinyNet_Weights.V1": "converted", "TinyNet_Weights.V2": "converted"}
    for entry, name in zoo.files.items():
        converted = offline / hub.safetensors_name(name)
        digest = hashlib.sha256(converted.read_bytes()).hexdigest()
        assert (offline / f"{converted.name}.sha256").read_text() == f"{digest}  {converted.name}\n"
        with safe_open(str(converted), "pt") as f:
            assert f.metadata()["source"] == name
            assert f.metadata()["source_sha256"] == hashlib.sha256((zoo.served / name).read_bytes()).hexdigest()
            for key, tensor in zoo.states[entry].items():
                assert torch.equal(f.get_tensor(key), tensor)
    assert sorted(p.name for p in offline.iterdir()) == sorted(
        n for name in zoo.files.values() for n in (hub.safetensors_name(name), hub.safetensors_name(name) + ".sha256")
    )  # no pickle files, no leftovers

    status, out, _ = run(["convert", "tinynet", "--weights", "all", "--to", str(offline), "--quiet"], capsys)
    assert status == 0 and out.strip().splitlines()[-1] == "0 converted, 2 skipped, 0 failed"
    status, out, _ = run(["verify", str(offline), "--quiet"], capsys)
    assert status == 0 and "2 ok, 0 bad, 0 unchecked" in out

    # An offline machine with only the safetensors files: the loader finds and verifies them.
    for name in zoo.files.values():
        (zoo.served / name).unlink()
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(offline))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    assert hub.find_local(zoo.files["V2"]) == offline / hub.safetensors_name(zoo.files["V2"])
    status, out, err = run(["predict", CAT, "--model", "tinynet", "--topk", "1", "--quiet"], capsys)
    assert status == 0 and "class_9" in out, err
    _, card, _ = run(["info", "tinynet"], capsys)
    assert "in VISIONZOO_WEIGHTS_DIR, safetensors copy" in card


def test_convert_replaces_a_damaged_output_and_reports_failures(
    zoo: TinyZoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = tmp_path / "offline"
    assert main(["download", "tinynet", "--to", str(offline), "--quiet"]) == 0
    assert main(["convert", "tinynet", "--to", str(offline), "--quiet"]) == 0
    converted = offline / hub.safetensors_name(zoo.files["V2"])
    converted.write_bytes(converted.read_bytes() + b" ")  # no longer what its digest file records
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(offline))
    capsys.readouterr()
    status, out, err = run(["convert", "tinynet", "--to", str(offline), "--quiet"], capsys)
    assert status == 0 and statuses(out) == {"TinyNet_Weights.V2": "converted"}, err
    assert hub.read_sidecar(converted) == hub.sha256_of(converted)

    (zoo.served / zoo.files["V1"]).unlink()  # neither on disk nor downloadable
    status, out, err = run(["convert", "TinyNet_Weights.V1", "--to", str(tmp_path / "out"), "--quiet"], capsys)
    assert status == 1 and statuses(out) == {"TinyNet_Weights.V1": "failed"}
    assert err.startswith(f"visionzoo: TinyNet_Weights.V1 needs {zoo.files['V1']}, which is not available")
    assert err.count("\n") == 1
