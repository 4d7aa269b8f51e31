"""``benchmark --optimize`` and ``predict --optimize`` with ``--dtype``: progress on stderr, bfloat16, refusals.

Compiling is replaced by a stand-in that records its calls (the real compile is tested in
tests/models/test_optimize*.py): what is under test is the command's plumbing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests._cli_zoo import TinyZoo, make_tiny, run, write_images
from visionzoo import inference


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """Make "compiling with freezing" return the module itself; the list gets each module compiled. Compiling
    ahead of time fails (as where torch.export cannot trace a model), unless a test stands in for it too."""
    compiled: list[torch.nn.Module] = []

    def fake(module: torch.nn.Module, **settings: bool) -> torch.nn.Module:
        compiled.append(module)
        return module

    def no_export(*args: object) -> object:
        raise RuntimeError("torch.export is not under test here")

    monkeypatch.setattr(inference, "_compile_with_freezing", fake)
    monkeypatch.setattr(inference, "_load_or_build_package", no_export)
    return compiled


BENCH = ["benchmark", "tinynet", "--weights", "DEFAULT", "--input-size", "32", "--iterations", "2", "--warmup", "1"]


def test_benchmark_optimize_compiles_in_bfloat16_with_progress(
    zoo: TinyZoo, compiles: list[torch.nn.Module], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run([*BENCH, "--optimize", "--dtype", "bfloat16"], capsys)
    assert status == 0, err
    assert len(compiles) == 1
    assert "optimising tinynet for inference (bfloat16)" in err
    assert re.search(
        r"compiled in \d+\.\d s \(\d+\.\d s in all, with the output check; bfloat16, largest deviation", err
    )
    lines = out.splitlines()
    assert lines[1].split() == ["metric", "eager", "optimized+compiled", "(bfloat16)"]
    assert any(line.startswith("largest deviation from eager") for line in lines)

    status, out, err = run([*BENCH, "--optimize", "--json"], capsys)
    assert status == 0, err
    fast = json.loads(out)["optimized"]
    assert fast["compiled"] and fast["dtype"] == "float32" and fast["compile_seconds"] > 0
    assert fast["max_deviation"] <= 1e-3 and fast["folded_conv_bn"] > 0


def test_benchmark_optimize_without_compiling_and_auto(
    zoo: TinyZoo, compiles: list[torch.nn.Module], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "_cpu_features", lambda: {"avx2"})  # no bfloat16 units: auto means float32
    status, out, err = run([*BENCH, "--optimize", "--no-compile", "--dtype", "auto", "--json"], capsys)
    assert status == 0, err
    fast = json.loads(out)["optimized"]
    assert not fast["compiled"] and fast["dtype"] == "float32" and fast["compile_seconds"] is None
    assert not compiles and "compiling" not in err


def test_benchmark_optimize_keeps_freed_memory_only_when_asked(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], allocator_calls: list[bool]
) -> None:
    # The eager model is timed first: the optimised one must run in the same kind of process to compare with it.
    status, out, err = run([*BENCH, "--optimize", "--no-compile", "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["keep_freed_memory"] is False and allocator_calls == []
    status, out, err = run([*BENCH, "--optimize", "--no-compile", "--keep-freed-memory", "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["keep_freed_memory"] is True and allocator_calls == [True, True]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtype", "bfloat16"], "--dtype applies to the optimised model: add --optimize"),
        (["--no-compile"], "--no-compile applies to --optimize"),
    ],
)
def test_benchmark_flags_need_optimize(
    zoo: TinyZoo, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = run([*BENCH, *argv], capsys)
    assert status != 0 and message in err


def test_predict_optimize_matches_eager_and_pads_the_last_batch(
    zoo: TinyZoo,
    compiles: list[torch.nn.Module],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(inference.ENV_COMPILED_DIR, str(tmp_path / "compiled"))
    images = [str(p) for p in write_images(tmp_path / "images", 3)]
    argv = ["predict", *images, "--model", "tinynet", "--batch-size", "2", "--json", "--quiet"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    eager = json.loads(out)
    status, out, err = run([*argv[:-1], "--optimize", "--dtype", "bfloat16", "--no-package"], capsys)
    assert status == 0, err
    assert len(compiles) == 1  # once, on the first batch; the last one (1 image) was padded to 2
    assert "optimising tinynet for inference (bfloat16)" in err and "compiled in" in err
    fast = json.loads(out)
    assert [r["image"] for r in fast] == images
    for a, b in zip(eager, fast):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        for x, y in zip(a["top"], b["top"]):
            assert y["probability"] == pytest.approx(x["probability"], abs=0.02)


def test_predict_refuses_bfloat16_that_flips_the_top1(
    zoo: TinyZoo, compiles: list[torch.nn.Module], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = make_tiny(num_classes=2).state_dict()
    state["fc.weight"].zero_()
    state["fc.bias"].copy_(torch.tensor([1.0, 1.001]))  # both 1.0 in bfloat16
    torch.save(state, tmp_path / "tied.pth")
    images = [str(p) for p in write_images(tmp_path / "images", 1)]
    argv = ["predict", *images, "--model", "tinynet", "--weights", str(tmp_path / "tied.pth"), "--quiet"]
    status, _, err = run([*argv, "--optimize", "--dtype", "bfloat16", "--no-package"], capsys)
    assert status != 0
    assert "--dtype bfloat16: bfloat16 changes ResNet's top-1" in err and "1 of 1 samples" in err
    assert not compiles  # refused before compiling


def test_predict_optimize_refused_where_it_does_not_apply(zoo: TinyZoo, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["predict", "x.png", "--model", "tinydet", "--optimize"], capsys)
    assert status != 0 and "--optimize applies to classification and segmentation models, not detection" in err
    status, _, err = run(["predict", "x.png", "--model", "tinynet", "--dtype", "auto"], capsys)
    assert status != 0 and "add --optimize" in err


def test_predict_package_is_built_once_then_loaded(
    zoo: TinyZoo,
    compiles: list[torch.nn.Module],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The AOTInductor step is replaced by one that writes a marker file (tests/models/test_optimize_package.py
    builds and loads real packages)."""
    monkeypatch.setenv(inference.ENV_COMPILED_DIR, str(tmp_path / "compiled"))

    def fake_package(runner: torch.nn.Module, args: tuple, path: Path) -> tuple[object, bool]:
        reused = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"package")
        return runner, reused

    monkeypatch.setattr(inference, "_load_or_build_package", fake_package)
    images = [str(p) for p in write_images(tmp_path / "images", 2)]
    argv = ["predict", *images, "--model", "tinynet", "--optimize", "--json"]  # packaged by default
    status, _, err = run(argv, capsys)
    assert status == 0, err
    assert "compiled ahead of time (an AOTInductor package) in" in err and "loaded the compiled package" not in err
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert re.search(r"loaded the compiled package in \d+\.\d s", err)
    assert [p.suffix for p in (tmp_path / "compiled").iterdir()] == [".pt2"]
    assert json.loads(out)[0]["top"][0]["label"] == "class_9"
    status, _, err = run(["predict", *images, "--model", "tinynet", "--no-package"], capsys)
    assert status != 0 and "--no-package applies to the optimised model: add --optimize" in err
    status, _, err = run([*argv, "--no-package"], capsys)
    assert status == 0 and "loaded the compiled package" not in err
    # In-process, or the in-memory program where it won the (here even) race: never the package on disk.
    assert re.search(r"compiled( ahead of time \(AOTInductor, faster here than in-process\))? in \d", err)
    status, _, err = run([*BENCH, "--package"], capsys)
    assert status != 0 and "--package applies to the optimised model: add --optimize" in err
