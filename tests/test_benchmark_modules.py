"""The benchmark scripts are not run by the suite (they take minutes and report ratios, not pass/fail), but each
must at least import: a broken import only shows when `make bench` is next run, often much later."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest
import torch

import benchmarks

MODULES = sorted(info.name for info in pkgutil.iter_modules(benchmarks.__path__) if info.name != "__main__")


def test_every_item_of_make_bench_is_a_script() -> None:
    from benchmarks.__main__ import ITEMS

    assert set(ITEMS) <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, stride=2), torch.nn.Flatten()
    ).eval()


def test_peer_runtimes_compute_what_torch_computes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machinery behind benchmarks.peers, on a tiny convolutional network: ONNX Runtime and OpenVINO (float32,
    and bfloat16 where the CPU has it) run the file visionzoo.deploy.export_onnx writes and agree with torch, so
    the speed-ups they are credited with are for the same computation."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    from benchmarks.peers import cpu_description, make_peers, max_deviation, native_bf16

    model, x = _tiny_net(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    bf16 = native_bf16(cpu_description())
    peers = ("reference", "onnxruntime", "openvino", "openvino_bf16")
    runs, setup, skipped = make_peers(model, model, x, str(tmp_path), bf16, peers)
    assert (tmp_path / "model.onnx").is_file()
    assert set(runs) | set(skipped) == set(peers) and set(setup) == set(runs)
    assert set(runs) == set(peers) if bf16 else skipped == {"openvino_bf16": skipped["openvino_bf16"]}
    scale = expected.abs().max().item()
    for name, run in runs.items():
        allowed = 2e-2 * scale if name.endswith("_bf16") else 1e-5 * max(1.0, scale)
        assert max_deviation(expected, run(x)) <= allowed, name
    with pytest.raises(AssertionError, match="differs from the reference's"):
        max_deviation(expected, runs["openvino"](x)[:1])

    # Without the optional packages the peers are skipped with the reason, not a crash.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    runs, _, skipped = make_peers(model, model, x, str(tmp_path), bf16, ("reference", "onnxruntime", "openvino"))
    assert set(runs) == {"reference"}
    assert skipped == {
        "onnxruntime": "onnxruntime is not installed (pip install visionzoo[bench])",
        "openvino": "openvino is not installed (pip install visionzoo[bench])",
    }


def test_calibrated_pair_has_activations_of_a_trained_scale() -> None:
    """Random BatchNorm statistics leave a deep network's outputs in float32's subnormal range, which would time
    the eager models' subnormal arithmetic; calibrated, the outputs have an ordinary scale and both sides agree."""
    from benchmarks.targets import Target, calibrate_batch_norm, fill_zero_weights

    model = _tiny_net()
    model.insert(1, torch.nn.BatchNorm2d(8)).eval()
    with torch.no_grad():
        model[1].running_var.fill_(1e6)  # statistics far from the activations': outputs become tiny
        before = model(torch.randn(4, 3, 16, 16)).abs().max().item()
    assert calibrate_batch_norm(model, (torch.randn(4, 3, 16, 16),)) == 1
    assert not model[1].training and model[1].momentum == 0.1
    with torch.no_grad():
        after = model(torch.randn(4, 3, 16, 16)).abs().max().item()
    assert after > 10 * before
    head = torch.nn.Linear(4, 3)
    torch.nn.init.zeros_(head.weight)
    assert fill_zero_weights(head) == 1 and head.weight.any()
    assert Target("resnet50").missing() is None


def test_a_split_peers_run_keeps_the_other_models_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import benchmarks.peers as peers
    from benchmarks._harness import Report, Settings

    monkeypatch.setattr(peers, "RESULTS_DIR", tmp_path)
    cpu = {"features": ["avx2"]}
    earlier = {
        "settings": {"quick": False},
        "summary": {"cpu": cpu},
        "environment": {"date": "then"},
        "rows": [{"model": m, "batch": b} for m in ("vit_b_16", "resnet50") for b in (1, 8)],
    }
    (tmp_path / "peers.json").write_text(json.dumps(earlier))
    report = Report("peers", Settings.make(quick=False))
    report.rows = [{"model": "resnet50", "batch": 8, "new": True}]
    peers.keep_earlier_rows(report, cpu)
    assert [(r["model"], r["batch"]) for r in report.rows] == [("resnet50", 8), ("vit_b_16", 1), ("vit_b_16", 8)]
    assert report.rows[0]["new"] and report.notes == ["rows of vit_b_16 kept from the run of then"]
    # Another mode; another CPU by its features; one with the same name and features but of another generation.
    for other_cpu, quick in ((cpu, True), ({"features": ["avx512f"]}, False), ({**cpu, "family": "26"}, False)):
        report = Report("peers", Settings.make(quick=quick))
        peers.keep_earlier_rows(report, other_cpu)
        assert report.rows == [] and report.notes == []


def test_interleaved_timing_pauses_before_every_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    """A side's leftover spinning threads (ONNX Runtime's pool) must settle before the next side is timed."""
    import benchmarks._harness as harness

    events: list[str] = []
    monkeypatch.setattr(harness.time, "sleep", lambda seconds: events.append(f"pause {seconds}"))
    settings = harness.Settings(quick=True, repeats=2, warmup=0, min_time=0.0, fresh_repeats=1, pause=0.25)
    times = harness.time_interleaved({"a": lambda: events.append("a"), "b": lambda: events.append("b")}, settings)
    assert [len(t) for t in times.values()] == [2, 2]
    timed = events[events.index("pause 0.25") :]  # after the calibration calls
    assert timed == ["pause 0.25", "a", "pause 0.25", "b", "pause 0.25", "b", "pause 0.25", "a"]
