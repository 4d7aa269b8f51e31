"""Download faults against a misbehaving HTTP server on 127.0.0.1 (tests/_http.py), beyond tests/test_hub.py.

test_hub.py covers each fault once through ``fetch_checkpoint`` and eight processes downloading once. Here:

* every fault through every way a download starts (the checkpoint's URL, a mirror URL, ``download_to``, a
  builder's weights entry): a clear error naming the file, nothing under the final name, and a retry that
  succeeds once the server behaves;
* faults in a row, resumed with Range requests; a server that ignores Range; a slow server that is not stalled;
* a process killed mid-download, a disk that fills up;
* eight processes at once when the first download fails, when the cache holds a corrupt copy, and when they
  fill a directory with ``download_to``.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch

from tests._http import FileServer
from visionzoo import hub
from visionzoo.hub import CheckpointError, ChecksumError, WeightsUnavailableError
from visionzoo.models._api import Weights, WeightsEnum
from visionzoo.models._utils import build_model
from visionzoo.transforms import ImageClassification

REPO_ROOT = Path(__file__).resolve().parents[1]
STALL_TIMEOUT = "1"  # seconds: VISIONZOO_DOWNLOAD_TIMEOUT while a fault is served
RETRY_TIMEOUT = "10"  # generous for the retries, so that a busy CI machine cannot fail them


class Linear(torch.nn.Module):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(256, num_classes)


def _checkpoint(seed: int = 0, stem: str = "lin") -> tuple[str, bytes]:
    """A checkpoint of ~260 kB (several reads for the client), named `<stem>-<sha256 prefix>.pth`."""
    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(Linear(num_classes=250).state_dict(), buf)
    data = buf.getvalue()
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth", data


def _weights(url: str) -> WeightsEnum:
    entry = Weights(
        url=url, transforms=partial(ImageClassification, crop_size=8), meta={"categories": list(range(250))}
    )
    return WeightsEnum("Lin_Weights", {"V1": entry}).V1  # type: ignore[attr-defined]


def _files(directory: Path) -> list[str]:
    """What lies in a directory, apart from lock files and the digest memo."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock") and p.name != hub.MEMO_FILE_NAME)


# ------------------------------------------------------------------------------------------ the fault matrix

FAULTS: list[str | int] = [404, 500, 503, "short", "drop", "stall_body", "stall_headers", "unsized_short"]
# What the error says, by fault. A body without Content-Length that stops early looks complete to HTTP:
# only the digest in the file name reveals it.
REASONS = {
    404: "HTTP error 404",
    500: "HTTP error 500",
    503: "HTTP error 503",
    "short": "closed the connection after",
    "drop": "onnection",
    "stall_body": "timed out",
    "stall_headers": "timed out",
    "unsized_short": "its name promises a digest",
}


def _routes(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Callable[[str], tuple[str, Callable[[], Path], Path]]]:
    """For each way to start a download: (served path, a fetch returning the file, where the file lands)."""

    def original(name: str):
        return f"/m/{name}", lambda: hub.fetch_checkpoint(server.url(f"/m/{name}"), progress=False), hub.get_dir()

    def mirror(name: str):
        monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", server.url("/mirror/"))
        return (
            f"/mirror/{name}",
            lambda: hub.fetch_checkpoint(f"http://127.0.0.1:9/{name}", progress=False),
            hub.get_dir(),
        )

    def download_to(name: str):
        target = tmp_path / "usb"
        fetch = lambda: hub.download_to(server.url(f"/m/{name}"), target, progress=False)[0]  # noqa: E731
        return f"/m/{name}", fetch, target

    def builder(name: str):
        def fetch() -> Path:
            model = build_model(Linear, _weights(server.url(f"/m/{name}")), False)
            assert model.fc.out_features == 250
            return hub.get_dir() / name

        return f"/m/{name}", fetch, hub.get_dir()

    return {"url": original, "mirror": mirror, "download_to": download_to, "builder": builder}


ROUTES = ["url", "mirror", "download_to", "builder"]


@pytest.mark.parametrize("fault", FAULTS, ids=str)
@pytest.mark.parametrize("route", ROUTES)
def test_fault_gives_a_clear_error_no_final_file_and_a_retry_works(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str, fault: str | int
) -> None:
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", STALL_TIMEOUT)
    name, data = _checkpoint()
    path, fetch, lands_in = _routes(server, tmp_path, monkeypatch)[route](name)
    server.serve(path, data, steps=[fault])
    start = time.monotonic()
    error = ChecksumError if fault == "unsized_short" else WeightsUnavailableError
    with pytest.raises(error) as info:
        fetch()
    assert time.monotonic() - start < 5, "the download timeout was not honoured"
    message = str(info.value)
    for needle in (name, server.url(path), REASONS[fault], "To fix"):
        assert needle in message, f"{needle!r} missing from:\n{message}"
    assert not (lands_in / name).exists(), "a failed download left a file under the final name"
    assert all(f.endswith(".partial") for f in _files(lands_in)), _files(lands_in)

    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", RETRY_TIMEOUT)
    assert fetch().read_bytes() == data  # the route has run out of faults: the server behaves now
    assert _files(lands_in) == [name]
    assert server.count(path) == 2


# ------------------------------------------------------------------------------------------ resuming


def test_four_faults_in_a_row_then_a_resumed_download(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", STALL_TIMEOUT)
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, steps=["short", "drop", "stall_body", 500])
    partial = hub.get_dir() / f"{name}.partial"
    kept = []
    for _ in range(4):
        with pytest.raises(WeightsUnavailableError):
            hub.fetch_checkpoint(url, progress=False)
        assert not (hub.get_dir() / name).exists()
        kept.append(partial.stat().st_size if partial.exists() else 0)
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", RETRY_TIMEOUT)
    assert hub.fetch_checkpoint(url, progress=False).read_bytes() == data
    # The clean close kept half the file; later faults never lose it (a read cut short by a reset or a
    # stall adds nothing, as the client reads 1 MiB at a time), and every later attempt resumes from it.
    assert kept[0] == len(data) // 2 and kept == sorted(kept), kept
    ranges = [r.headers.get("Range") for r in server.requests_for(f"/m/{name}")]
    assert ranges[0] is None and ranges[1:] == [f"bytes={size}-" for size in kept]
    assert _files(hub.get_dir()) == [name]


def test_a_server_that_ignores_range_still_gives_the_right_file(server: FileServer) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, steps=["short"], ranges=False)
    with pytest.raises(WeightsUnavailableError):
        hub.fetch_checkpoint(url, progress=False)
    assert hub.fetch_checkpoint(url, progress=False).read_bytes() == data  # a 200 answer restarts the file
    assert server.requests_for(f"/m/{name}")[-1].headers.get("Range") == f"bytes={len(data) // 2}-"


def test_a_slow_server_is_not_a_stalled_one(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The timeout bounds the silence between bytes, not the whole download: 2 s in ten 0.2 s pieces passes.
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", STALL_TIMEOUT)
    name, data = _checkpoint()
    start = time.monotonic()
    assert hub.fetch_checkpoint(server.serve(f"/m/{name}", data, delay_s=2.0), progress=False).read_bytes() == data
    assert time.monotonic() - start > 1.5


# ------------------------------------------------------------------------------------------ the process dies, the disk fills


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def test_a_killed_process_leaves_no_final_file_and_no_held_lock(server: FileServer) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, delay_s=20.0)  # 2 s per tenth: the child is killed mid-way
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from visionzoo.hub import fetch_checkpoint; fetch_checkpoint(sys.argv[1])",
            url,
        ],
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = hub.get_dir() / f"{name}.partial"
    deadline = time.monotonic() + 30
    while not partial.exists() and time.monotonic() < deadline:  # the child holds the lock and streams
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert partial.exists() and not (hub.get_dir() / name).exists()

    server.serve(f"/m/{name}", data)
    start = time.monotonic()
    assert hub.fetch_checkpoint(url, progress=False).read_bytes() == data  # the dead child's lock is gone
    assert time.monotonic() - start < 10
    assert _files(hub.get_dir()) == [name]


_FILL_DISK = """
import os, resource, signal, sys
from visionzoo import hub
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit then fails the write with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
try:
    hub.fetch_checkpoint(sys.argv[1], progress=False)
except hub.WeightsUnavailableError as error:
    print(error)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="file size limits (RLIMIT_FSIZE) are POSIX")
def test_a_full_disk_is_explained_and_the_download_resumes_later(server: FileServer) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data)
    run = subprocess.run(
        [sys.executable, "-c", _FILL_DISK, url], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert f"cannot write {hub.get_dir() / name}.partial" in run.stdout and "free space" in run.stdout, run.stdout
    assert not (hub.get_dir() / name).exists()
    assert hub.fetch_checkpoint(url, progress=False).read_bytes() == data  # room again: resumed, verified
    assert server.requests_for(f"/m/{name}")[-1].headers.get("Range") == "bytes=100000-"


# ------------------------------------------------------------------------------------------ eight processes

_CHILD = """
import os, sys, time
from visionzoo import hub
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
try:
    if sys.argv[3] == "fetch":
        path = hub.fetch_checkpoint(sys.argv[1], progress=False)
    else:
        path, _ = hub.download_to(sys.argv[1], sys.argv[3], progress=False)
    print("ok", path, hub.sha256_of(path))
except hub.WeightsError as error:
    print("error", type(error).__name__, str(error).replace(chr(10), " | "))
"""


def _eight_at_once(url: str, tmp_path: Path, how: str = "fetch") -> list[str]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", _CHILD, url, str(go), how],
            cwd=REPO_ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(0.3)  # let the interpreters start, then release them together
    go.touch()
    results = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in results]
    return sorted(out.strip() for out, _ in results)


def test_eight_processes_when_the_first_download_fails(server: FileServer, tmp_path: Path) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, steps=["drop"], delay_s=0.5)
    outcomes = _eight_at_once(url, tmp_path)
    good = f"ok {hub.get_dir() / name} {hashlib.sha256(data).hexdigest()}"
    # The process that met the dropped connection says so; the next one resumes; the others find the file.
    assert outcomes.count(good) == 7, outcomes
    assert outcomes[0].startswith(f"error WeightsUnavailableError Checkpoint '{name}' is not available"), outcomes
    assert server.count(f"/m/{name}") == 2
    assert _files(hub.get_dir()) == [name]


def test_eight_processes_and_a_corrupt_cached_copy(server: FileServer, tmp_path: Path) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, delay_s=0.5)
    hub.get_dir().mkdir(parents=True)
    (hub.get_dir() / name).write_bytes(data[::-1])  # same size, wrong content
    outcomes = _eight_at_once(url, tmp_path)
    assert outcomes == [f"ok {hub.get_dir() / name} {hashlib.sha256(data).hexdigest()}"] * 8
    assert server.count(f"/m/{name}") == 1
    corrupt = [f for f in _files(hub.get_dir()) if f != name]
    assert len(corrupt) == 1 and corrupt[0].startswith(f"{name}.corrupt-"), _files(hub.get_dir())


def test_eight_processes_filling_one_directory(server: FileServer, tmp_path: Path) -> None:
    name, data = _checkpoint()
    url = server.serve(f"/m/{name}", data, delay_s=0.5)
    target = tmp_path / "usb"
    outcomes = _eight_at_once(url, tmp_path, how=str(target))
    assert outcomes == [f"ok {target / name} {hashlib.sha256(data).hexdigest()}"] * 8
    assert server.count(f"/m/{name}") == 1
    assert _files(target) == [name]


def test_an_unhashed_download_cut_short_is_not_kept_under_its_name(server: FileServer) -> None:
    """Without a digest in the name or a Content-Length, a body cut short looks complete: the failed load moves
    the file aside, and the next call downloads it again."""
    _, data = _checkpoint(seed=3)
    server.serve("/m/plain.pth", data, steps=["unsized_short"])
    with pytest.raises(CheckpointError, match="moved to .*plain.pth.corrupt-.*downloads it again"):
        hub.load_state_dict_from_url(server.url("/m/plain.pth"), progress=False)
    assert not (hub.get_dir() / "plain.pth").exists()
    state = hub.load_state_dict_from_url(server.url("/m/plain.pth"), progress=False)
    assert (hub.get_dir() / "plain.pth").read_bytes() == data and "fc.weight" in state
