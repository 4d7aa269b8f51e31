"""The weight loading pipeline against a real HTTP server on 127.0.0.1 (tests/_http.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from visionzoo import hub
from visionzoo.hub import (
    CheckpointError,
    ChecksumError,
    WeightsError,
    WeightsUnavailableError,
    fetch_checkpoint,
    get_dir,
    load_checkpoint,
    load_state_dict_from_url,
    sha256_of,
    verify,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own TORCH_HOME and no visionzoo settings from the outside world."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("VISIONZOO_WEIGHTS_DIR", "VISIONZOO_WEIGHTS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "5")  # nothing below may hang for the default 30 s
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def dead_url() -> str:
    """A URL on a port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/"


def make_checkpoint(stem: str = "tiny", *, numel: int = 4096, legacy: bool = False, seed: int = 0):
    """A small state dict saved with torch.save, and its torch.hub-style name `<stem>-<sha256[:8]>.pth`."""
    gen = torch.Generator().manual_seed(seed)
    state = {"conv.weight": torch.randn(numel, generator=gen), "fc.bias": torch.arange(10.0)}
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    data = buf.getvalue()
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth", data, state


def leftovers(directory: Path, name: str) -> list[str]:
    """Files in `directory` that belong to `name` apart from its lock file."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(name) and not p.name.endswith(".lock"))


def assert_state_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- locations


def test_get_dir_follows_torch_hub_conventions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_dir() == tmp_path / "th" / "hub" / "checkpoints"
    monkeypatch.delenv("TORCH_HOME")
    assert get_dir() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))  # expanduser on Windows
    assert get_dir() == tmp_path / "home" / ".cache" / "torch" / "hub" / "checkpoints"
    assert not any(tmp_path.iterdir()), "get_dir() must not create anything"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50-11ad3fa6.pth", "11ad3fa6"),
        ("mnasnet0.5_top1_67.823-3ffadce67e.pth", "3ffadce67e"),
        ("vit_h_14_swag-80465313.pth", "80465313"),
        ("a-b-c0ffee12.safetensors", "c0ffee12"),
        ("resnet50_fbgemm_bf931d71.pth", None),  # no '-': nothing promised
        ("model-2.pth", None),  # a version number, not a digest
        ("model-final.pth", None),
        ("plain.pth", None),
    ],
)
def test_expected_hash_prefix(name: str, expected: str | None) -> None:
    assert hub.expected_hash_prefix(name) == expected


def test_sha256_of_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 123)  # several read chunks and a ragged end
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_import_is_cheap() -> None:
    code = (
        "import sys, visionzoo.hub; "
        "heavy = ('torch', 'tqdm', 'urllib.request', 'http.client', 'safetensors'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_file_names_and_timeout_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="file_name"):
        fetch_checkpoint("http://127.0.0.1/models/")
    with pytest.raises(ValueError, match="file name"):
        fetch_checkpoint("http://127.0.0.1/m/a.pth", file_name="../evil.pth")
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="VISIONZOO_DOWNLOAD_TIMEOUT"):
        fetch_checkpoint("http://127.0.0.1/m/a.pth")


# ---------------------------------------------------------------------------------------------- happy paths


def test_download_shows_progress_and_lands_in_cache(server, cache_dir: Path, capsys) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/models/{name}", data)
    path = fetch_checkpoint(url)
    assert path == cache_dir / name
    assert path.read_bytes() == data
    err = capsys.readouterr().err
    assert name in err and "100%" in err and url in err
    assert leftovers(cache_dir, name) == [name]  # no .partial left behind
    assert server.count(f"/models/{name}") == 1


def test_download_without_progress_is_silent(server, cache_dir: Path, capsys) -> None:
    name, data, _ = make_checkpoint()
    fetch_checkpoint(server.serve(f"/m/{name}", data), progress=False)
    assert capsys.readouterr().err == ""


def test_cache_is_reused_without_network(server, cache_dir: Path, capsys) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    first = fetch_checkpoint(url)
    server.stop()
    capsys.readouterr()
    assert fetch_checkpoint(url) == first
    assert capsys.readouterr().err == "", "a cache hit prints nothing"


def test_file_name_overrides_url_basename(server, cache_dir: Path) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve("/m/download?id=7", data)
    assert fetch_checkpoint(url, file_name=name, progress=False) == cache_dir / name


def test_weights_dir_hit_needs_no_network(tmp_path: Path, dead_url: str, capsys, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    weights_dir = tmp_path / "offline"
    weights_dir.mkdir()
    (weights_dir / name).write_bytes(data)
    before = {p.name: p.stat().st_mtime_ns for p in weights_dir.iterdir()}
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    assert fetch_checkpoint(dead_url + name) == weights_dir / name
    assert capsys.readouterr().err == ""
    assert {p.name: p.stat().st_mtime_ns for p in weights_dir.iterdir()} == before, "never write there"


def test_weights_dir_wins_over_cache(server, tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    fetch_checkpoint(server.serve(f"/m/{name}", data), progress=False)
    weights_dir = tmp_path / "offline"
    weights_dir.mkdir()
    (weights_dir / name).write_bytes(data)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    assert fetch_checkpoint(server.url(f"/m/{name}")) == weights_dir / name


def test_mirror_url_replaces_the_original_host(server, dead_url: str, cache_dir: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    server.serve(f"/mirror/{name}", data)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", server.url("/mirror/"))  # trailing slash is fine
    path = fetch_checkpoint(dead_url + name, progress=False)
    assert path == cache_dir / name and path.read_bytes() == data
    assert server.count(f"/mirror/{name}") == 1


def test_mirror_url_may_be_a_file_url(tmp_path: Path, dead_url: str, cache_dir: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    share = tmp_path / "share"
    share.mkdir()
    (share / name).write_bytes(data)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", share.as_uri())
    assert fetch_checkpoint(dead_url + name, progress=False).read_bytes() == data


def test_load_state_dict_from_url_end_to_end(server) -> None:
    name, data, state = make_checkpoint()
    got = load_state_dict_from_url(server.serve(f"/m/{name}", data), progress=False)
    assert_state_equal(got, state)


# ---------------------------------------------------------------------------------------------- hash checks


def test_tampered_download_is_rejected_and_not_cached(server, cache_dir: Path) -> None:
    name, _, _ = make_checkpoint(seed=0)
    _, other, _ = make_checkpoint(seed=1)
    url = server.serve(f"/m/{name}", other)
    with pytest.raises(ChecksumError) as info:
        fetch_checkpoint(url, progress=False)
    message = str(info.value)
    assert name in message and url in message and name.rsplit("-")[1][:8] in message
    assert hashlib.sha256(other).hexdigest() in message
    assert leftovers(cache_dir, name) == []
    # check_hash=False is the explicit escape hatch
    assert fetch_checkpoint(url, progress=False, check_hash=False).read_bytes() == other


def test_corrupted_cache_file_is_moved_aside_and_fetched_again(server, cache_dir: Path) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    path = fetch_checkpoint(url, progress=False)
    bad = bytes(b ^ 0xFF for b in data[:64]) + data[64:]  # same size: only the content changes
    path.write_bytes(bad)
    later = path.stat().st_mtime_ns + 2_000_000_000  # a write lands at a later time than the download
    os.utime(path, ns=(later, later))

    with pytest.warns(UserWarning, match="moved it to"):
        again = fetch_checkpoint(url, progress=False)
    assert again == path and path.read_bytes() == data
    aside = [p for p in leftovers(cache_dir, name) if ".corrupt-" in p]
    assert len(aside) == 1 and (cache_dir / aside[0]).read_bytes() == bad
    assert server.count(f"/m/{name}") == 2


def test_check_hash_false_skips_verification(server, cache_dir: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    path = fetch_checkpoint(url, progress=False)
    path.write_bytes(b"not the checkpoint")
    monkeypatch.setattr(verify, "sha256_of", lambda p: pytest.fail("hashed although check_hash=False"))
    assert fetch_checkpoint(url, check_hash=False).read_bytes() == b"not the checkpoint"


def test_corrupt_weights_dir_file_raises_and_is_left_alone(server, tmp_path: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    weights_dir = tmp_path / "offline"
    weights_dir.mkdir()
    (weights_dir / name).write_bytes(data[:-10])
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    with pytest.raises(ChecksumError) as info:
        fetch_checkpoint(url)
    message = str(info.value)
    assert str(weights_dir / name) in message and "VISIONZOO_WEIGHTS_DIR" in message and url in message
    assert (weights_dir / name).read_bytes() == data[:-10]
    assert os.listdir(weights_dir) == [name]
    assert server.count(f"/m/{name}") == 0


def test_verified_digest_memo_avoids_rehashing(tmp_path: Path, cache_dir: Path, dead_url: str, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    weights_dir = tmp_path / "offline"
    weights_dir.mkdir()
    path = weights_dir / name
    path.write_bytes(data)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    calls: list[Path] = []
    real = hub.sha256_of
    monkeypatch.setattr(verify, "sha256_of", lambda p: calls.append(Path(p)) or real(p))

    fetch_checkpoint(dead_url + name)
    fetch_checkpoint(dead_url + name)
    assert calls == [path], "the second load of an unchanged file must come from the memo"
    assert str(path) in json.loads((cache_dir / hub.MEMO_FILE_NAME).read_text())["files"]

    later = path.stat().st_mtime_ns + 2_000_000_000  # touched: hash again
    os.utime(path, ns=(later, later))
    fetch_checkpoint(dead_url + name)
    assert len(calls) == 2

    (cache_dir / hub.MEMO_FILE_NAME).write_text("{ not json")  # a corrupt memo is ignored, then rewritten
    fetch_checkpoint(dead_url + name)
    fetch_checkpoint(dead_url + name)
    assert len(calls) == 3


def test_downloaded_file_is_memoised(server, cache_dir: Path, monkeypatch) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    fetch_checkpoint(url, progress=False)  # hashed while streaming
    monkeypatch.setattr(verify, "sha256_of", lambda p: pytest.fail("re-hashed a file verified at download"))
    fetch_checkpoint(url)


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "failure, reason",
    [
        (404, "HTTP error 404"),
        (500, "HTTP error 500"),
        ("short", "closed the connection after"),
        ("drop", "onnection"),  # reset while reading, or a short body: either way the connection failed
        ("stall_body", "timed out"),
        ("stall_headers", "timed out"),
    ],
)
def test_download_failures_are_explained(server, cache_dir: Path, monkeypatch, failure, reason: str) -> None:
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "1")
    name, data, _ = make_checkpoint(numel=64 * 1024)
    path = f"/m/{name}"
    url = server.fail(path, failure) if isinstance(failure, int) else server.serve(path, data, failure)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_checkpoint(url, progress=False)
    assert time.monotonic() - start < 4, "VISIONZOO_DOWNLOAD_TIMEOUT was not honoured"
    message = str(info.value)
    for needle in (url, name, str(cache_dir), reason, "To fix"):
        assert needle in message, f"{needle!r} missing from:\n{message}"
    assert not (cache_dir / name).exists()

    server.serve(path, data)  # the server recovers: a retry succeeds
    assert fetch_checkpoint(url, progress=False).read_bytes() == data
    assert leftovers(cache_dir, name) == [name]


def test_interrupted_download_resumes_with_range(server, cache_dir: Path) -> None:
    name, data, _ = make_checkpoint(numel=64 * 1024)
    path = f"/m/{name}"
    url = server.serve(path, data, "short")
    with pytest.raises(WeightsUnavailableError):
        fetch_checkpoint(url, progress=False)
    partial = cache_dir / f"{name}.partial"
    assert not (cache_dir / name).exists()
    assert partial.read_bytes() == data[: len(data) // 2]  # not complete-looking: it keeps its suffix

    server.serve(path, data)
    assert fetch_checkpoint(url, progress=False).read_bytes() == data
    assert server.requests_for(path)[-1].headers.get("Range") == f"bytes={len(data) // 2}-"
    assert leftovers(cache_dir, name) == [name]


def test_interrupted_download_without_hash_starts_over(server, cache_dir: Path) -> None:
    _, data, _ = make_checkpoint(numel=64 * 1024)
    path = "/m/plain.pth"  # no digest in the name, so spliced bytes could not be vetted
    url = server.serve(path, data, "short")
    with pytest.raises(WeightsUnavailableError):
        fetch_checkpoint(url, progress=False)
    assert leftovers(cache_dir, "plain.pth") == []
    server.serve(path, data)
    assert fetch_checkpoint(url, progress=False).read_bytes() == data
    assert "Range" not in server.requests_for(path)[-1].headers


@pytest.mark.parametrize("stale", ["foreign_prefix", "too_long"])
def test_stale_partial_file_is_discarded(server, cache_dir: Path, stale: str) -> None:
    name, data, _ = make_checkpoint()
    path = f"/m/{name}"
    url = server.serve(path, data)
    cache_dir.mkdir(parents=True)
    junk = b"x" * (100 if stale == "foreign_prefix" else len(data) + 100)
    (cache_dir / f"{name}.partial").write_bytes(junk)
    assert fetch_checkpoint(url, progress=False).read_bytes() == data
    ranges = [r.headers.get("Range") for r in server.requests_for(path)]
    # a spliced file fails the hash (or the server answers 416), then one clean download follows
    assert ranges == [f"bytes={len(junk)}-", None]
    assert leftovers(cache_dir, name) == [name]


def test_offline_with_nothing_anywhere_says_how_to_fix(
    tmp_path: Path, cache_dir: Path, dead_url: str, monkeypatch
) -> None:
    name, _, _ = make_checkpoint()
    weights_dir = tmp_path / "offline"
    weights_dir.mkdir()
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(weights_dir))
    url = dead_url + name
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_checkpoint(url, progress=False)
    message = str(info.value)
    assert isinstance(info.value, WeightsError)
    for needle in (
        name,
        str(weights_dir / name),  # each place tried...
        str(cache_dir / name),
        url,
        "ConnectionRefusedError",  # ...and why it failed
        f"download {url} on a machine with internet access and put it in {cache_dir}",
        "VISIONZOO_WEIGHTS_DIR",
        "VISIONZOO_WEIGHTS_URL",
    ):
        assert needle in message, f"{needle!r} missing from:\n{message}"


def test_unwritable_cache_is_explained(tmp_path: Path, dead_url: str, monkeypatch) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")  # fails for root too, unlike chmod
    monkeypatch.setenv("TORCH_HOME", str(blocker))
    name, _, _ = make_checkpoint()
    with pytest.raises(WeightsUnavailableError, match="cannot be created") as info:
        fetch_checkpoint(dead_url + name)
    assert name in str(info.value) and "VISIONZOO_WEIGHTS_DIR" in str(info.value)


def test_concurrent_processes_download_once(server, cache_dir: Path, tmp_path: Path) -> None:
    name, data, _ = make_checkpoint(numel=64 * 1024)
    url = server.serve(f"/m/{name}", data, delay_s=1.0)  # slow, so every process arrives mid-download
    go = tmp_path / "go"
    child = (
        "import os, sys, time\n"
        "from visionzoo.hub import fetch_checkpoint, sha256_of\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
        "path = fetch_checkpoint(sys.argv[1], progress=False)\n"
        "print(path, sha256_of(path))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, url, str(go)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(0.3)  # let the interpreters start, then release them together
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in results]
    digest = hashlib.sha256(data).hexdigest()
    assert {out.strip() for out, _ in results} == {f"{cache_dir / name} {digest}"}
    assert server.count(f"/m/{name}") == 1
    assert leftovers(cache_dir, name) == [name]


# ---------------------------------------------------------------------------------------------- loading


@pytest.fixture
def spy_torch_load(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_zip_checkpoint_is_memory_mapped(tmp_path: Path, spy_torch_load: list[dict]) -> None:
    name, data, state = make_checkpoint()
    path = tmp_path / name
    path.write_bytes(data)
    got = load_checkpoint(path)
    assert_state_equal(got, state)
    assert spy_torch_load == [{"map_location": "cpu", "weights_only": True, "mmap": True}]
    maps = Path("/proc/self/maps")
    if maps.exists():  # Linux: the tensors really live in a mapping of the file
        assert str(path) in maps.read_text()
    load_checkpoint(path, mmap=False)
    assert spy_torch_load[-1]["mmap"] is False


def test_legacy_checkpoint_loads_without_mmap(tmp_path: Path, spy_torch_load: list[dict]) -> None:
    name, data, state = make_checkpoint(legacy=True)
    assert not data.startswith(b"PK")
    path = tmp_path / name
    path.write_bytes(data)
    assert_state_equal(load_checkpoint(path, mmap=True), state)
    assert spy_torch_load[-1]["mmap"] is False and spy_torch_load[-1]["weights_only"] is True


class _Exploit:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        command = f'"{sys.executable}" -c "open({str(self.marker)!r}, \'w\').close()"'
        return (os.system, (command,))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Exploit(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "malicious" in str(info.value)
    assert not marker.exists(), "the payload ran"
    # Control: an unsafe load of the same file does run it, so the assertion above can fail.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_safetensors_checkpoint(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch", reason="safetensors not installed")
    _, _, state = make_checkpoint()
    path = tmp_path / "tiny.safetensors"
    st.save_file(state, str(path))
    assert_state_equal(load_checkpoint(path), state)
    with pytest.raises(CheckpointError, match="must be a device"):
        load_checkpoint(path, map_location=lambda storage, loc: storage)
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_safetensors_missing_package_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors...` fail
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"irrelevant")
    with pytest.raises(CheckpointError, match="pip install safetensors"):
        load_checkpoint(path)


def test_unloadable_files_raise_checkpoint_error(tmp_path: Path) -> None:
    name, data, _ = make_checkpoint()
    truncated = tmp_path / name
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt") as info:
        load_checkpoint(truncated)
    assert str(truncated) in str(info.value)
    assert isinstance(info.value, ValueError)

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match="unsupported extension '.onnx'"):
        load_checkpoint(onnx)

    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(tensor_only)

    with pytest.raises(WeightsUnavailableError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")


def test_wrapped_checkpoints_are_returned_as_is(tmp_path: Path) -> None:
    _, _, state = make_checkpoint()
    path = tmp_path / "wrapped.pth"
    torch.save({"model": state, "epoch": 3}, path)
    got = load_checkpoint(path)
    assert got.keys() == {"model", "epoch"} and got["epoch"] == 3
    assert_state_equal(got["model"], state)


def test_find_local_looks_in_mirror_then_cache(tmp_path, monkeypatch):
    cache = hub.get_dir()
    assert hub.find_local("a-12345678.pth") is None
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "a-12345678.pth").write_bytes(b"x")
    assert hub.find_local("a-12345678.pth") == cache / "a-12345678.pth"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a-12345678.pth").write_bytes(b"y")
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(mirror))
    assert hub.find_local("a-12345678.pth") == mirror / "a-12345678.pth"


# ---------------------------------------------------------------------------------------------- download_to


def test_download_to_downloads_then_keeps_a_good_copy(server, tmp_path: Path, cache_dir: Path) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    target = tmp_path / "usb"
    assert hub.download_to(url, target, progress=False) == (target / name, "downloaded")
    assert (target / name).read_bytes() == data and not (cache_dir / name).exists()
    server.stop()
    assert hub.download_to(url, target, progress=False) == (target / name, "present")


def test_download_to_copies_a_local_copy_without_network(tmp_path: Path, cache_dir: Path, dead_url: str) -> None:
    name, data, _ = make_checkpoint()
    cache_dir.mkdir(parents=True)
    (cache_dir / name).write_bytes(data)
    path, how = hub.download_to(dead_url + name, tmp_path / "usb", progress=False)
    assert how == "copied" and path.read_bytes() == data
    assert leftovers(tmp_path / "usb", name) == [name]


def test_download_to_replaces_a_corrupt_copy_and_skips_a_corrupt_source(
    server, tmp_path: Path, cache_dir: Path
) -> None:
    name, data, _ = make_checkpoint()
    url = server.serve(f"/m/{name}", data)
    cache_dir.mkdir(parents=True)
    (cache_dir / name).write_bytes(b"not it")  # a bad local source must not be copied
    target = tmp_path / "usb"
    target.mkdir()
    (target / name).write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="moved it to"):
        path, how = hub.download_to(url, target, progress=False)
    assert how == "downloaded" and path.read_bytes() == data
    aside = [p for p in target.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == b"damaged"


def test_download_to_failure_is_explained(tmp_path: Path, dead_url: str) -> None:
    name, _, _ = make_checkpoint()
    with pytest.raises(WeightsUnavailableError, match=name) as info:
        hub.download_to(dead_url + name, tmp_path / "usb", progress=False)
    assert str(tmp_path / "usb") in str(info.value)
    # The same facts as data, for callers that report them their own way (the command line's one-liners).
    assert info.value.file_name == name
    assert info.value.tried[-1].startswith(f"download: {dead_url}{name}: ")
    assert all(line in str(info.value) for line in info.value.tried)


# ---------------------------------------------------------------------------------------------- safetensors copies


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50-11ad3fa6.pth", "resnet50-11ad3fa6.safetensors"),
        ("mnasnet0.5_top1_67.823-3ffadce67e.pth", "mnasnet0.5_top1_67.823-3ffadce67e.safetensors"),
        ("odd.name", "odd.name.safetensors"),
    ],
)
def test_safetensors_name_keeps_the_stem(name: str, expected: str) -> None:
    assert hub.safetensors_name(name) == expected


def test_sidecar_round_trip_and_garbage(tmp_path: Path) -> None:
    target = tmp_path / "a.safetensors"
    digest = hashlib.sha256(b"x").hexdigest()
    sidecar = hub.write_sidecar(target, digest)
    assert sidecar.read_text() == f"{digest}  a.safetensors\n"  # sha256sum -c format
    assert hub.read_sidecar(target) == digest
    sidecar.write_text("not a digest\n")
    assert hub.read_sidecar(target) is None
    assert hub.read_sidecar(tmp_path / "missing.safetensors") is None


@pytest.fixture
def converted_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A VISIONZOO_WEIGHTS_DIR holding a checkpoint, its safetensors copy and the copy's sidecar."""
    from safetensors.torch import save_file

    name, data, state = make_checkpoint()
    directory = tmp_path / "offline"
    directory.mkdir()
    (directory / name).write_bytes(data)
    converted = directory / hub.safetensors_name(name)
    save_file(state, converted)
    hub.write_sidecar(converted, sha256_of(converted))
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(directory))
    return name, converted, state


def test_safetensors_copy_is_preferred_and_verified(converted_dir, dead_url: str) -> None:
    name, converted, state = converted_dir
    assert fetch_checkpoint(dead_url + name) == converted
    assert hub.find_local(name) == converted
    assert_state_equal(load_state_dict_from_url(dead_url + name), state)
    (converted.parent / name).unlink()  # the copy alone is enough
    assert fetch_checkpoint(dead_url + name) == converted


def test_safetensors_copy_without_sidecar_or_with_a_wrong_one_is_refused(converted_dir, dead_url: str) -> None:
    name, converted, _ = converted_dir
    hub.write_sidecar(converted, "0" * 64)
    with pytest.raises(ChecksumError, match="records 0000"):
        fetch_checkpoint(dead_url + name)
    Path(f"{converted}.sha256").unlink()
    with pytest.raises(ChecksumError, match="no readable digest file"):
        fetch_checkpoint(dead_url + name)
    assert fetch_checkpoint(dead_url + name, check_hash=False) == converted


def test_safetensors_copy_is_ignored_without_the_package_when_the_original_is_there(
    converted_dir, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    name, converted, _ = converted_dir
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda mod, *a: None if mod == "safetensors" else real_find_spec(mod, *a)
    )
    assert fetch_checkpoint(dead_url + name) == converted.parent / name
