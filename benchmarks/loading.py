"""Loading a pretrained model from a local checkpoint: time and peak memory, each way in a fresh process.

Ways: a bare ``torch.load`` of the file (the yardstick); ours by path (``get_model(name, weights=path)``);
ours by enum through ``VISIONZOO_WEIGHTS_DIR``; ours by path and then reading every weight once (what the
first forward pays, since ours memory-maps the file); the reference's way (build with random initialisation,
then ``load_state_dict(torch.load(path))``). Checkpoints of the real shapes with random values are written to
a temporary directory first (the official files cannot be downloaded here) and sit in the page cache, so
this measures warm-cache loading.

The enum way checks the sha256 prefix promised by the file name. Our random files cannot match it, so the
digest memo is filled in as if the file had been verified before; that is the state of every load after
the first. The first load also hashes the whole file: that cost is reported on its own ("sha256 (first
use)").

Targets: ours (path and enum) no slower than the bare ``torch.load`` and no more peak memory; >= 10x faster
than the reference's way for vit_l_16.
Run: ``python -m benchmarks.loading [--quick] [--only resnet50,vit_l_16]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._harness import Report, median, parse_settings, print_row, run_fresh, selected
from .targets import LOADING, Target

_PREAMBLE = """
import json, time
import torch
from benchmarks._harness import current_rss_bytes, peak_rss_bytes, reset_peak_rss
{imports}
reset_peak_rss()
rss_before = current_rss_bytes()
start = time.perf_counter()
{action}
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "peak_increase": peak_rss_bytes() - rss_before}}))
"""

_READ_ALL = "checksum = sum(float(t.float().sum()) for t in model.state_dict().values())"

# way -> (imports, action); `path`, `name`, `entry` are filled in per model.
WAYS: dict[str, tuple[str, str]] = {
    "torch.load": ("", "state = torch.load({path!r}, weights_only=True)"),
    "ours (path)": ("import visionzoo.models as vm", "model = vm.get_model({name!r}, weights={path!r})"),
    "ours (enum)": ("import visionzoo.models as vm", "model = vm.get_model({name!r}, weights={entry!r})"),
    "ours (path) + read all weights": (
        "import visionzoo.models as vm",
        "model = vm.get_model({name!r}, weights={path!r})\n" + _READ_ALL,
    ),
    "reference (random init + load_state_dict)": (
        "import torchvision.models as tvm",
        "model = tvm.get_model({name!r})\nmodel.load_state_dict(torch.load({path!r}, weights_only=True))",
    ),
    "sha256 (first use)": ("from visionzoo import hub", "digest = hub.sha256_of({path!r})"),
}
TARGET_REFERENCE_SPEEDUP = {"vit_l_16": 10.0}


def _write_checkpoint(target: Target, file_name: str, directory: Path) -> Path:
    """A checkpoint with the model's exact keys and shapes and random values."""
    with torch.device("meta"):
        shapes = target.build("ours").state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(t.shape, dtype=t.dtype, generator=generator) * 0.02
        if t.is_floating_point()
        else torch.zeros(t.shape, dtype=t.dtype)
        for key, t in shapes.items()
    }
    path = directory / file_name
    torch.save(state, path)
    return path


def _pretend_verified(path: Path) -> None:
    """Record ``path`` in the digest memo under the digest its name promises (see the module docstring)."""
    from visionzoo import hub
    from visionzoo.hub.verify import memo_record

    prefix = hub.expected_hash_prefix(path.name) or ""
    memo_record(path, path.stat(), prefix.ljust(64, "0"))


def _measure(way: str, target: Target, entry: str, path: Path, env: dict[str, str]) -> dict[str, Any]:
    imports, action = WAYS[way]
    filled = action.format(path=str(path), name=target.name, entry=entry)
    return run_fresh(_PREAMBLE.format(imports=imports, action=filled), env=env)


def main(argv: list[str] | None = None) -> Report:
    settings, args = parse_settings(__doc__.splitlines()[0], argv)
    report = Report("loading", settings)
    entries = {target.name: entry for target, entry in LOADING}
    with tempfile.TemporaryDirectory(prefix="visionzoo-bench-") as tmp:
        weights_dir, torch_home = Path(tmp) / "weights", Path(tmp) / "torch_home"
        weights_dir.mkdir()
        env = {"VISIONZOO_WEIGHTS_DIR": str(weights_dir), "TORCH_HOME": str(torch_home)}
        os.environ["TORCH_HOME"] = str(torch_home)  # the memo lives in this temporary cache
        for target in selected(report, [target for target, _ in LOADING], args):
            entry = entries[target.name]
            from visionzoo.models import get_model_weights

            file_name = get_model_weights(target.name)[entry].file_name
            path = _write_checkpoint(target, file_name, weights_dir)
            _pretend_verified(path)
            samples: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
            for repeat in range(settings.fresh_repeats):
                for way in WAYS if repeat % 2 == 0 else reversed(WAYS):
                    samples[way].append(_measure(way, target, entry, path, env))
            rows = {
                way: {
                    "model": target.name,
                    "way": way,
                    "file_mb": path.stat().st_size / 1e6,
                    "seconds": median([s["seconds"] for s in runs]),
                    "peak_increase_mb": median([s["peak_increase"] for s in runs]) / 1e6,
                }
                for way, runs in samples.items()
            }
            bare, reference = rows["torch.load"], rows["reference (random init + load_state_dict)"]
            for row in rows.values():
                row["time_vs_torch_load"] = row["seconds"] / bare["seconds"]
                row["reference_time_over_this"] = reference["seconds"] / row["seconds"]
                print_row(row)
                report.rows.append(row)
            path.unlink()
    ours = [r for r in report.rows if r["way"] in ("ours (path)", "ours (enum)")]
    bare_memory = {r["model"]: r["peak_increase_mb"] for r in report.rows if r["way"] == "torch.load"}
    report.summary = {
        "ours_within_torch_load_time": all(r["time_vs_torch_load"] <= 1.0 for r in ours),
        "ours_within_torch_load_memory": all(r["peak_increase_mb"] <= bare_memory[r["model"]] for r in ours),
        "speedup_over_reference": {
            r["model"]: r["reference_time_over_this"] for r in report.rows if r["way"] == "ours (path)"
        },
        "target_speedup_over_reference": TARGET_REFERENCE_SPEEDUP,
    }
    print(f"summary: {report.summary}\nwrote {report.write()}")
    return report


if __name__ == "__main__":
    main()
