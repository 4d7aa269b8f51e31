"""Hostile and broken checkpoints, through every way a checkpoint reaches a model.

* Pickles that would run code are refused (``torch.load(weights_only=True)``) with an error naming the file,
  and the payload never runs: checked for four payload kinds, both torch file formats, a bare pickle, and six
  entry points (``load_checkpoint``, ``load_state_dict_from_url``, ``Weights.get_state_dict``, a builder's
  ``weights=`` enum entry and local path, and a ``VISIONZOO_WEIGHTS_DIR`` hit). A control shows that each
  payload does run under an unsafe load, so the "did not run" checks can fail.
* Checkpoints that do not fit name the first offending keys (and how many there are in all).
* A file whose sha256 does not match the prefix in its name is never loaded and never left in the cache
  under its name: on download, from a mirror URL, on a cache hit (including a cache memo that a forged
  modification time would fool) and in ``VISIONZOO_WEIGHTS_DIR``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from tests._http import FileServer
from visionzoo import hub, models
from visionzoo.hub import CheckpointError, ChecksumError, WeightsUnavailableError
from visionzoo.models._api import Weights, WeightsEnum
from visionzoo.models._utils import CheckpointMismatchError, build_model
from visionzoo.transforms import ImageClassification

# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _fast_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONZOO_DOWNLOAD_TIMEOUT", "5")


class TinyNet(nn.Module):
    """A two-layer classifier: enough for the loading pipeline, small enough to save in a millisecond."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)


def _tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return TinyNet().state_dict()


def _hashed_name(data: bytes, stem: str = "tiny") -> str:
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:10]}.pth"


def _serialise(obj: object, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _weights(url: str) -> WeightsEnum:
    entry = Weights(url=url, transforms=partial(ImageClassification, crop_size=8), meta={"categories": ["a", "b", "c"]})
    return WeightsEnum("Tiny_Weights", {"V1": entry}).V1  # type: ignore[attr-defined]


def _build(weights: WeightsEnum | Path) -> TinyNet:
    return build_model(TinyNet, weights, False)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sha256 of every file handed to torch.load, taken at the moment it is handed over."""
    seen: list[str] = []
    real = torch.load

    def spy(f, *args, **kwargs):
        seen.append(hub.sha256_of(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return seen


def _names(directory: Path) -> list[str]:
    """What lies in a directory, apart from lock files and the digest memo."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock") and p.name != hub.MEMO_FILE_NAME)


# ------------------------------------------------------------------------------------------ payloads


def _python_writing(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


class ShellPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'"{sys.executable}" -c "{_python_writing(self.marker)}"',)


class EvalPayload(ShellPayload):
    def __reduce__(self):
        return eval, (_python_writing(self.marker),)


class ExecPayload(ShellPayload):
    def __reduce__(self):
        return exec, (_python_writing(self.marker),)


class SubprocessPayload(ShellPayload):
    def __reduce__(self):
        return subprocess.run, ([sys.executable, "-c", _python_writing(self.marker)],)


# Each payload has done its work when unpickling returns, so checking for the marker right after is enough.
PAYLOADS = {"os.system": ShellPayload, "eval": EvalPayload, "exec": ExecPayload, "subprocess.run": SubprocessPayload}
# How the payload is packaged: torch's zip format, its legacy format, hidden in a nested container, a bare pickle.
PACKAGINGS: dict[str, Callable[[object], bytes]] = {
    "zip": lambda payload: _serialise({**_tiny_state(), "fc.bias": payload}),
    "legacy": lambda payload: _serialise({**_tiny_state(), "extra": payload}, legacy=True),
    "nested": lambda payload: _serialise({"state_dict": _tiny_state(), "meta": {"history": [1, {"x": payload}]}}),
    "bare_pickle": lambda payload: pickle.dumps(payload, protocol=2),
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("packaging", list(PACKAGINGS))
def test_control_each_payload_runs_under_an_unsafe_load(tmp_path: Path, payload: str, packaging: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(PACKAGINGS[packaging](PAYLOADS[payload](marker)))
    try:
        torch.load(path, weights_only=False)
    except Exception:  # some payload results are not valid checkpoint contents; the code has run by then
        pass
    assert marker.exists(), "the payload is inert, so the refusal tests below would prove nothing"


def _entry_points(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Callable[[bytes], object]]:
    """Ways to load checkpoint bytes; each takes the file's bytes and loads them as a user would."""

    def local_file(data: bytes) -> Path:
        path = tmp_path / _hashed_name(data)
        path.write_bytes(data)
        return path

    def served(data: bytes) -> str:  # the attacker controls the server, so the name matches the hash
        return server.serve(f"/w/{_hashed_name(data)}", data)

    def weights_dir(data: bytes) -> object:
        directory = tmp_path / "offline"
        directory.mkdir(exist_ok=True)
        name = _hashed_name(data)
        (directory / name).write_bytes(data)
        monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(directory))
        return _build(_weights(f"http://127.0.0.1:9/{name}"))

    return {
        "load_checkpoint": lambda data: hub.load_checkpoint(local_file(data)),
        "load_state_dict_from_url": lambda data: hub.load_state_dict_from_url(served(data), progress=False),
        "Weights.get_state_dict": lambda data: _weights(served(data)).get_state_dict(progress=False),
        "builder_enum_download": lambda data: _build(_weights(served(data))),
        "builder_local_path": lambda data: models.squeezenet1_1(weights=local_file(data)),
        "weights_dir_hit": weights_dir,
    }


ENTRY_POINTS = [
    "load_checkpoint",
    "load_state_dict_from_url",
    "Weights.get_state_dict",
    "builder_enum_download",
    "builder_local_path",
    "weights_dir_hit",
]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("packaging", list(PACKAGINGS))
def test_code_running_pickles_are_refused_everywhere(
    tmp_path: Path, server: FileServer, monkeypatch: pytest.MonkeyPatch, entry: str, packaging: str
) -> None:
    load = _entry_points(tmp_path, server, monkeypatch)[entry]
    for payload, make in PAYLOADS.items():
        marker = tmp_path / f"pwned-{payload}"
        data = PACKAGINGS[packaging](make(marker))
        with pytest.raises(CheckpointError) as info:
            load(data)
        message = str(info.value)
        assert _hashed_name(data) in message and "malicious" in message, message
        assert isinstance(info.value, ValueError)
        assert not marker.exists(), f"the {payload} payload ran through {entry}"


def test_a_pickled_whole_model_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(TinyNet(), path)  # legitimate but unsafe to load: a pickled nn.Module
    with pytest.raises(CheckpointError, match=r"(?s)whole_model\.pth.*re-save `model\.state_dict\(\)`"):
        models.squeezenet1_1(weights=path)


# ------------------------------------------------------------------------------------------ shapes, keys, dtypes


def test_a_checkpoint_of_another_model_names_the_first_mismatching_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(models.resnet18().state_dict(), path)
    with pytest.raises(ValueError) as info:
        models.squeezenet1_1(weights=path)
    lines = str(info.value).splitlines()
    missing, unexpected = len(models.squeezenet1_1().state_dict()), len(models.resnet18().state_dict())
    assert lines[0] == (
        f"The checkpoint {path} is not a squeezenet1_1 checkpoint "
        f"({missing} of the model's {missing} tensors missing, {unexpected} unexpected):"
    )
    expected_missing = list(models.squeezenet1_1().state_dict())
    assert lines[1] == f"  missing keys: {', '.join(expected_missing[:8])}, ... ({len(expected_missing)} in all)"
    unexpected = list(models.resnet18().state_dict())
    assert lines[2] == f"  unexpected keys: {', '.join(unexpected[:8])}, ... ({len(unexpected)} in all)"


def test_another_architecture_of_the_same_family_gets_no_num_classes_hint(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        models.resnet50(weights=path)
    message = str(info.value)
    assert message.startswith(f"The checkpoint {path} is not a resnet50 checkpoint (")
    assert "num_classes" not in message and info.value.head_classes is None


def test_num_classes_is_read_from_a_fine_tuned_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fine_tuned = TinyNet(num_classes=10)
    path = tmp_path / "tiny10.pth"
    torch.save(fine_tuned.state_dict(), path)
    with pytest.warns(
        UserWarning, match=r"num_classes=10 taken from the checkpoint .*tiny10\.pth \(the shape of fc\.weight\)"
    ):
        model = _build(path)
    assert model.fc.out_features == 10
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fine_tuned.state_dict().items())


def test_loading_warnings_point_at_the_caller_s_line(tmp_path: Path) -> None:
    path = tmp_path / "resnet18_10.pth"
    torch.save(models.resnet18(num_classes=10).state_dict(), path)
    with pytest.warns(UserWarning, match="num_classes=10 taken from the checkpoint") as caught:
        models.get_model("resnet18", weights=path)
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]


def test_a_wrong_explicit_num_classes_names_the_checkpoint_s_and_how_to_ask(tmp_path: Path) -> None:
    path = tmp_path / "tiny10.pth"
    torch.save(TinyNet(num_classes=10).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_model(TinyNet, path, False, num_classes=5)
    assert info.value.head_classes == 10
    assert "trained for 10 classes: pass num_classes=10" in str(info.value)
    assert "pass --num-classes 10" in info.value.describe("--num-classes {}")


def test_shape_mismatches_are_listed_in_checkpoint_order(tmp_path: Path) -> None:
    state = _tiny_state()
    state["conv.weight"] = torch.zeros(4, 3, 5, 5)
    state["fc.weight"] = torch.zeros(7, 4)
    path = tmp_path / "wrong_shapes.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError,
        match=r"shape mismatches: conv\.weight: checkpoint \(4, 3, 5, 5\) vs model \(4, 3, 3, 3\), fc\.weight: checkpoint \(7, 4\) vs model \(3, 4\)",
    ):
        _build(path)


def test_integer_tensors_for_float_parameters_are_named(tmp_path: Path) -> None:
    state = _tiny_state()
    state["bn.weight"] = torch.ones(4, dtype=torch.int64)
    state["fc.bias"] = torch.zeros(3, dtype=torch.bool)
    path = tmp_path / "ints.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError,
        match=r"dtype mismatches: bn\.weight: checkpoint torch\.int64 vs model torch\.float32, fc\.bias: checkpoint torch\.bool",
    ):
        _build(path)


def test_half_precision_checkpoint_gives_a_float32_model_like_load_state_dict(tmp_path: Path) -> None:
    state = _tiny_state()
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "half.pth"
    torch.save(half, path)
    model = _build(path)
    reference = TinyNet()
    reference.load_state_dict(half)  # copies, converting to the model's dtype
    for key, value in reference.state_dict().items():
        got = model.state_dict()[key]
        assert got.dtype == value.dtype and torch.equal(got, value), key


def test_non_tensor_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    torch.save({"conv.weight": [1.0, 2.0]}, path)
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        _build(path)


# ------------------------------------------------------------------------------------------ hash mismatches


def _published(server: FileServer, seed: int = 0) -> tuple[str, bytes, bytes]:
    """A good checkpoint served under its hashed name; also returns a tampered file of the same size."""
    good = _serialise(_tiny_state(seed))
    bad = _serialise(_tiny_state(seed + 100))
    assert len(bad) == len(good) and bad != good
    name = _hashed_name(good)
    server.serve(f"/w/{name}", good)
    return name, good, bad


def test_tampered_download_is_never_loaded_nor_cached(server: FileServer, isolated_weights_cache: Path, loads) -> None:
    name, good, bad = _published(server)
    server.serve(f"/w/{name}", bad)
    with pytest.raises(ChecksumError, match=name):
        _build(_weights(server.url(f"/w/{name}")))
    assert loads == [] and _names(isolated_weights_cache) == []


def test_tampered_mirror_url_is_never_loaded_nor_cached(
    server: FileServer, isolated_weights_cache: Path, loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, good, bad = _published(server)
    server.serve(f"/mirror/{name}", bad)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", server.url("/mirror"))
    with pytest.raises(ChecksumError, match="/mirror/"):
        _build(_weights(server.url(f"/w/{name}")))
    assert loads == [] and _names(isolated_weights_cache) == []
    assert server.count(f"/w/{name}") == 0, "the mirror replaces the original host; it is not a fallback"


def test_corrupt_cache_hit_is_replaced_before_loading(server: FileServer, isolated_weights_cache: Path, loads) -> None:
    name, good, bad = _published(server)
    isolated_weights_cache.mkdir(parents=True)
    (isolated_weights_cache / name).write_bytes(bad)
    with pytest.warns(UserWarning, match="moved it to"):
        model = _build(_weights(server.url(f"/w/{name}")))
    assert torch.equal(model.fc.weight, _tiny_state()["fc.weight"])
    assert loads == [hashlib.sha256(good).hexdigest()], "only the verified file may reach torch.load"
    names = _names(isolated_weights_cache)
    assert names[0] == name and len(names) == 2 and names[1].startswith(f"{name}.corrupt-")


def test_corrupt_cache_hit_with_the_server_down_fails_without_loading(
    server: FileServer, isolated_weights_cache: Path, loads
) -> None:
    name, good, bad = _published(server)
    isolated_weights_cache.mkdir(parents=True)
    (isolated_weights_cache / name).write_bytes(bad)
    url = server.url(f"/w/{name}")
    server.stop()
    with pytest.warns(UserWarning, match="moved it to"), pytest.raises(WeightsUnavailableError, match="corrupt"):
        _build(_weights(url))
    assert loads == [] and not (isolated_weights_cache / name).exists()


def test_forged_modification_time_does_not_fool_the_digest_memo(
    server: FileServer, isolated_weights_cache: Path, loads
) -> None:
    name, good, bad = _published(server)
    weights = _weights(server.url(f"/w/{name}"))
    _build(weights)  # downloaded, verified, and remembered in the memo by size and modification time
    path = isolated_weights_cache / name
    stat = path.stat()
    path.write_bytes(bad)  # same size ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old modification time
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size == stat.st_size
    with pytest.warns(UserWarning, match="moved it to"):
        model = _build(weights)
    assert torch.equal(model.fc.weight, _tiny_state()["fc.weight"])
    assert hashlib.sha256(bad).hexdigest() not in loads


def test_corrupt_weights_dir_file_is_never_loaded_nor_touched(
    server: FileServer, tmp_path: Path, isolated_weights_cache: Path, loads, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, good, bad = _published(server)
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / name).write_bytes(bad)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(offline))
    with pytest.raises(ChecksumError, match="VISIONZOO_WEIGHTS_DIR"):
        _build(_weights(server.url(f"/w/{name}")))
    assert loads == [] and (offline / name).read_bytes() == bad and _names(isolated_weights_cache) == []
    assert server.count(f"/w/{name}") == 0


def test_download_to_never_keeps_a_tampered_file(server: FileServer, tmp_path: Path) -> None:
    name, good, bad = _published(server)
    server.serve(f"/w/{name}", bad)
    target = tmp_path / "usb"
    with pytest.raises(ChecksumError):
        hub.download_to(server.url(f"/w/{name}"), target, progress=False)
    assert _names(target) == []
