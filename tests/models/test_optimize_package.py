"""optimize_for_inference(package=True): an AOTInductor package that a second process loads instead of compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from visionzoo import inference
from visionzoo.models import optimize_for_inference
from visionzoo.ops.misc import Conv2dNormActivation

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import json, torch
from torch import nn
from visionzoo.models import optimize_for_inference
from visionzoo.ops.misc import Conv2dNormActivation

torch.manual_seed(0)
model = nn.Sequential(Conv2dNormActivation(3, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
x = torch.randn(2, 3, 16, 16)
fast = optimize_for_inference(model, x, keep_faster=False, onednn_linear=False, package=True)
with torch.no_grad():
    same = bool(torch.allclose(fast(x), model(x), atol=1e-3))
print(json.dumps({"reused": fast.reused_package, "package": fast.package, "seconds": fast.compile_seconds,
                  "same": same}))
"""


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Conv2dNormActivation(3, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_second_process_loads_the_package(tmp_path: Path) -> None:
    """Two processes optimise the same model: the first builds the package (a C++ compile, ~10-20 s on a quiet
    2-core machine), the second loads it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), inference.ENV_COMPILED_DIR: str(tmp_path / "compiled")}
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert not first["reused"] and second["reused"]
    assert first["package"] == second["package"] and Path(first["package"]).parent == tmp_path / "compiled"
    assert [p.name for p in (tmp_path / "compiled").iterdir()] == [Path(first["package"]).name]  # no partial file
    assert first["same"] and second["same"]
    assert second["seconds"] < first["seconds"]


def test_package_key_follows_weights_shapes_and_settings() -> None:
    model, x = _tiny(), torch.randn(2, 3, 16, 16)
    key = inference._package_key(model, (x,), {"dtype": "float32"})
    assert key == inference._package_key(_tiny(), (torch.zeros(2, 3, 16, 16),), {"dtype": "float32"})
    assert key != inference._package_key(model, (torch.randn(4, 3, 16, 16),), {"dtype": "float32"})
    assert key != inference._package_key(model, (x,), {"dtype": "bfloat16"})
    with torch.no_grad():
        model[3].bias[0] += 1e-3
    assert key != inference._package_key(model, (x,), {"dtype": "float32"})


def test_package_needs_a_compiled_model_and_an_example() -> None:
    with pytest.raises(ValueError, match="package=True needs example_input and compile=True"):
        optimize_for_inference(_tiny(), package=True)
    with pytest.raises(ValueError, match="package=True needs example_input and compile=True"):
        optimize_for_inference(_tiny(), torch.randn(1, 3, 8, 8), compile=False, package=True)


def test_compiled_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(inference.ENV_COMPILED_DIR, str(tmp_path))
    assert inference.compiled_dir() == tmp_path
    monkeypatch.delenv(inference.ENV_COMPILED_DIR)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert inference.compiled_dir() == tmp_path / "torch" / "hub" / "visionzoo_compiled"


def test_a_model_that_cannot_be_packaged_compiles_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot(*args: object) -> object:
        raise RuntimeError("torch.export: data-dependent control flow")

    monkeypatch.setattr(inference, "_load_or_build_package", cannot)
    monkeypatch.setattr(
        inference, "_compile_with_freezing", lambda module, **settings: module
    )  # the compile is not the point
    model, x = _tiny(), torch.randn(2, 3, 16, 16)
    with pytest.warns(RuntimeWarning, match="no AOTInductor package for Sequential.*data-dependent"):
        fast = optimize_for_inference(model, x, keep_faster=False, package=True)
    assert fast.compiled and fast.package is None and not fast.reused_package
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-3, rtol=0)


def test_a_package_that_lost_to_eager_is_not_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """keep_faster drops the compiled model: its package goes too, so no later process loads a slower model."""
    import time

    def slow_package(runner: nn.Module, args: tuple, path: Path) -> tuple[object, bool]:
        path.parent.mkdir(parents=True, exist_ok=True)
        reused = path.exists()
        path.write_bytes(b"package")

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            time.sleep(0.05)
            return runner(*inputs)

        return run, reused

    monkeypatch.setenv(inference.ENV_COMPILED_DIR, str(tmp_path))
    monkeypatch.setattr(inference, "_load_or_build_package", slow_package)
    monkeypatch.setattr(inference, "_compile_with_freezing", lambda module, **settings: module)
    fast = optimize_for_inference(_tiny(), torch.randn(2, 3, 16, 16), package=True)
    assert not fast.compiled and fast.package is None and list(tmp_path.iterdir()) == []
    kept = optimize_for_inference(_tiny(), torch.randn(2, 3, 16, 16), package=True, keep_faster=False)
    assert kept.compiled and kept.package is not None and not kept.reused_package
    again = optimize_for_inference(_tiny(), torch.randn(2, 3, 16, 16), package=True)
    assert again.reused_package and again.compiled and again.timing_rounds == 0  # not timed again


def _fake_runners(monkeypatch: pytest.MonkeyPatch, in_process: float, ahead: float, wrong: bool = False) -> list[str]:
    """Stand-ins for both compiles: runners that sleep ``in_process`` / ``ahead`` seconds a call and otherwise
    take no time (each input shape's output computed once), the program's outputs off by one with ``wrong``;
    returns which runner each call went through."""
    import time

    log: list[str] = []

    def once(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        outputs: dict[tuple[int, ...], torch.Tensor] = {}

        def compute(x: torch.Tensor) -> torch.Tensor:
            if tuple(x.shape) not in outputs:
                outputs[tuple(x.shape)] = module(x)
            return outputs[tuple(x.shape)]

        return compute

    def compile_with_freezing(module: nn.Module, **settings: bool) -> object:
        compute = once(module)

        def run(x: torch.Tensor) -> torch.Tensor:
            log.append("compiled")
            time.sleep(in_process)
            return compute(x)

        return run

    def build(runner: nn.Module, args: tuple, path: Path) -> tuple[object, bool]:
        path.parent.mkdir(parents=True, exist_ok=True)
        reused = path.exists()
        path.write_bytes(b"program")

        compute = once(runner)

        def run(x: torch.Tensor) -> torch.Tensor:
            log.append("ahead_of_time")
            time.sleep(ahead)
            return compute(x) + (1.0 if wrong else 0.0)

        return run, reused

    monkeypatch.setattr(inference, "_compile_with_freezing", compile_with_freezing)
    monkeypatch.setattr(inference, "_load_or_build_package", build)
    return log


def test_the_faster_of_in_process_and_ahead_of_time_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3, 16, 16)
    log = _fake_runners(monkeypatch, in_process=0.02, ahead=0.0)
    fast = optimize_for_inference(_tiny(), x)
    assert fast.compiled and fast.ahead_of_time and fast.package is None  # kept in memory, not on disk
    assert fast.max_deviation is not None and fast.max_deviation < 1e-3
    assert set(fast.seconds_per_call or {}) == {"compiled", "ahead_of_time", "eager"}
    log.clear()
    other = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), _tiny()(x), atol=1e-3, rtol=0)
        fast(other)  # another shape: the in-process graph
    assert log == ["ahead_of_time", "compiled"]

    log = _fake_runners(monkeypatch, in_process=0.0, ahead=0.02)
    slower_program = optimize_for_inference(_tiny(), x)
    assert slower_program.compiled and not slower_program.ahead_of_time
    log.clear()
    slower_program(x)
    assert log == ["compiled"]


def test_a_program_with_wrong_outputs_or_none_at_all_is_not_raced(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3, 16, 16)
    _fake_runners(monkeypatch, in_process=0.0, ahead=0.0, wrong=True)
    fast = optimize_for_inference(_tiny(), x)
    assert fast.compiled and not fast.ahead_of_time and set(fast.seconds_per_call or {}) == {"compiled", "eager"}
    assert fast.max_deviation is not None and fast.max_deviation < 1e-3  # the in-process graph's, which stays

    def cannot(*args: object) -> object:
        raise RuntimeError("torch.export: data-dependent control flow")

    monkeypatch.setattr(inference, "_load_or_build_package", cannot)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only tried: no warning
        fast = optimize_for_inference(_tiny(), x)
    assert fast.compiled and not fast.ahead_of_time
    with pytest.warns(RuntimeWarning, match="no AOTInductor package for Sequential.*data-dependent"):
        asked = optimize_for_inference(_tiny(), x, ahead_of_time=True)
    assert asked.compiled and not asked.ahead_of_time


def test_ahead_of_time_true_and_false(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3, 16, 16)
    log = _fake_runners(monkeypatch, in_process=0.0, ahead=0.02)
    fast = optimize_for_inference(_tiny(), x, ahead_of_time=True, keep_faster=False)
    assert fast.ahead_of_time and "compiled" not in log  # no in-process graph for the example's shape
    log = _fake_runners(monkeypatch, in_process=0.02, ahead=0.0)
    plain = optimize_for_inference(_tiny(), x, ahead_of_time=False)
    assert not plain.ahead_of_time and "ahead_of_time" not in log
    with pytest.raises(ValueError, match="ahead_of_time=True needs example_input"):
        optimize_for_inference(_tiny(), ahead_of_time=True)
    with pytest.raises(ValueError, match="cannot go with ahead_of_time=False"):
        optimize_for_inference(_tiny(), x, package=True, ahead_of_time=False)
