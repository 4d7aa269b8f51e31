"""Turn ``benchmarks/results/*.json`` into ``summary.md`` (tables, targets met or not), ``speed.png`` and the
short summary between the ``<!-- benchmarks:start/end -->`` markers of the top-level README.

Run: ``python -m benchmarks.report`` (``make bench`` runs it after the benchmarks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._harness import RESULTS_DIR, ROOT


def _load(item: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{item}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


Column = tuple[str, str | Callable[[dict[str, Any]], Any]]  # title, then a row key or a function of the row


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> list[str]:
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_fmt(get(row) if callable(get) else row.get(get)) for _, get in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _header(data: dict[str, Any]) -> list[str]:
    env, settings = data["environment"], data["settings"]
    mode = "quick" if settings["quick"] else "full"
    return [
        f"_{mode} mode, torch {env['torch']}, {env['torch_threads']} threads on {env['cpu_count']} CPUs, "
        f"load average {', '.join(f'{x:.1f}' for x in env['load_average_1_5_15min'])} at the end, {env['date']}"
        + (f", code at {env['revision']}" if env.get("revision") else "")
        + "_",
        "",
    ]


def _notes(data: dict[str, Any]) -> list[str]:
    return [f"- {note}" for note in data["notes"]] + ([""] if data["notes"] else [])


# Shown where the rows have them: page faults per call, and the ratio again with TUNED_MALLOC.
_EAGER_DETAIL_COLUMNS: list[Column] = [
    ("page faults/call, ours", lambda r: r.get("ours_faults_per_call")),
    ("page faults/call, ref", lambda r: r.get("reference_faults_per_call")),
    ("ratio, tuned malloc", lambda r: r.get("tuned_malloc_ratio")),
]


def _eager_section(data: dict[str, Any], title: str) -> list[str]:
    s = data["summary"]
    lines = [f"## {title}", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("batch", "batch"),
            ("size", "size"),
            ("ours ms", lambda r: r["ours_s"] * 1e3),
            ("reference ms", lambda r: r["reference_s"] * 1e3),
            ("ratio ours/ref", "ratio"),
            *(c for c in _EAGER_DETAIL_COLUMNS if any(c[1](r) is not None for r in data["rows"])),
        ],
    )
    if s.get("median_ratio") is not None and "target_median_ratio" not in s:
        lines += ["", f"Median ratio {s['median_ratio']:.3f}, worst {s['max_ratio']:.3f} (no target for this table)."]
    elif s.get("median_ratio") is not None:
        lines += ["", _eager_verdict(s, "")]
        if s.get("tuned_malloc_median_ratio") is not None:
            lines += [
                "",
                _eager_verdict(s, "tuned_malloc_", " with glibc malloc keeping freed memory (no page faults)"),
            ]
    return lines + ["", *_notes(data)]


def _eager_verdict(s: dict[str, Any], prefix: str, condition: str = "") -> str:
    median_ratio, max_ratio = s[f"{prefix}median_ratio"], s[f"{prefix}max_ratio"]
    ok = median_ratio <= s["target_median_ratio"] and max_ratio <= s["target_max_ratio"]
    return (
        f"Median ratio{condition} {median_ratio:.3f} (target <= {s['target_median_ratio']}), worst {max_ratio:.3f} "
        f"(target <= {s['target_max_ratio']}): {_verdict(ok)}."
    )


def _compiled_speedup(row: dict[str, Any]) -> float | str | None:
    """The compile=True speed-up, marked where ``optimize_for_inference`` kept the faster eager model."""
    speedup = row.get("speedup_compiled")
    if speedup is None or row.get("compiled", True):
        return speedup
    return f"{_fmt(speedup)} (eager kept)"


def _optimized_section(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    lines = ["## Optimised inference (batch 8, speed-up over the reference's eager model)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("reference ms", lambda r: r["reference_s"] * 1e3),
            ("ours eager", "speedup_eager"),
            ("folded + channels-last", "speedup_nocompile"),
            ("compiled", _compiled_speedup),
            ("compiled, tuned malloc", "tuned_malloc_speedup_compiled"),
            ("compile s (cold)", "compile_s"),
            ("compile s (2nd process)", "second_process_compile_s"),
            ("package: build s", "package_build_s"),
            ("load s (2nd process)", "package_load_s"),
            ("packaged", "speedup_packaged"),
        ],
    )
    lines += [
        "",
        'Speed-ups are reference time / ours, each pair timed interleaved in a fresh process. "tuned malloc": '
        "the same pair with glibc's malloc told to keep freed memory (MALLOC_MMAP_THRESHOLD_=32 MiB, "
        "MALLOC_TRIM_THRESHOLD_=4 GiB), which spares eager models a page fault per activation page on every "
        'call: the reference\'s best case. "eager kept": timed on the example batch, the compiled model was '
        "slower than the folded eager one, which `optimize_for_inference` then returns instead. "
        '"package": `package=True`, an AOTInductor package built in one process and loaded in the next '
        "(targets only).",
        "",
    ]
    for model, target in s["targets"].items():
        if model in s["best_speedup"]:
            best = s["best_speedup"][model]
            lines.append(f"- {model}: {best:.2f}x (target >= {target}x): {_verdict(best >= target)}")
    lines += [f"- a gain on every model: {_verdict(s['gain_everywhere'])}", ""]
    return lines + _notes(data)


def _loading_section(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    lines = ["## Loading a pretrained model from a local checkpoint (fresh process each)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("file MB", "file_mb"),
            ("way", "way"),
            ("seconds", "seconds"),
            ("x torch.load time", "time_vs_torch_load"),
            ("peak RSS increase MB", "peak_increase_mb"),
        ],
    )
    lines += [
        "",
        f"- ours within a bare torch.load's time: {_verdict(s['ours_within_torch_load_time'])}; "
        f"and its peak memory: {_verdict(s['ours_within_torch_load_memory'])}",
    ]
    for model, target in s["target_speedup_over_reference"].items():
        if model in s["speedup_over_reference"]:
            got = s["speedup_over_reference"][model]
            verdict = _verdict(got >= target)
            lines.append(f"- {model}: {got:.1f}x faster than the reference's way (target >= {target}x): {verdict}")
    return lines + ["", *_notes(data)]


def _build_section(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    lines = ["## Building without weights", "", *_header(data)]
    lines += _table(
        data["rows"],
        [("model", "model"), ("ours s", "ours_s"), ("ref s", "reference_s"), ("ratio", "ratio"), ("n", "repeats")],
    )
    slower = s["slower_than_1.05"]
    listed = ", ".join(slower) or "none"
    lines += ["", f"Median ratio {_fmt(s['median_ratio'])}; above 1.05: {listed} ({_verdict(not slower)})."]
    return lines + ["", *_notes(data)]


def _import_section(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    lines = ["## Import time on top of `import torch` (fresh processes, median of 5)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [("module", "module"), ("seconds", "on_top_of_torch_s"), ("imports torch._dynamo", "imports_torch_dynamo")],
    )
    ok = s["ours_on_top_of_torch_s"] <= s["target_s"]
    lines += ["", f"{s['registered_models']} models registered; target <= {s['target_s']} s: {_verdict(ok)}.", ""]
    return lines + _notes(data)


def _int8_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Int8 vs float ResNet-50", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("batch", "batch"),
            ("ours float ms", lambda r: r["ours_float_s"] * 1e3),
            ("ref float ms", lambda r: r["reference_float_s"] * 1e3),
            ("ours int8 ms", lambda r: r["ours_int8_s"] * 1e3),
            ("ref int8 ms", lambda r: r["reference_int8_s"] * 1e3),
            ("int8 ours/ref", "ratio_int8_ours_over_reference"),
            ("int8 speed-up (ours)", "int8_speedup_ours"),
        ],
    )
    return lines + ["", *_notes(data)]


def _ops_roi_section(data: dict[str, Any]) -> list[str]:
    lines = ["## RoIAlign, 1,000 RoIs over 256x200x272, 7x7", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("case", "case"),
            ("ours ms", lambda r: r["ours_s"] * 1e3),
            ("ref ms", lambda r: r["reference_s"] * 1e3),
            ("ours/ref", "ratio_ours_over_reference"),
        ],
    )
    return lines + ["", *_notes(data)]


def _ops_section(data: dict[str, Any]) -> list[str]:
    s = data["summary"]
    lines = ["## Operators: nms vs the reference's compiled kernel (one process, interleaved)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("op", "op"),
            ("layout", "layout"),
            ("boxes", "boxes"),
            ("kept", "kept"),
            ("same indices", "identical"),
            ("ours ms", lambda r: r["ours_s"] * 1e3),
            ("reference ms", lambda r: r["reference_s"] * 1e3),
            ("ratio ours/ref", "ratio"),
            ("target ratio", "target_ratio"),
            ("met", "met"),
        ],
    )
    lines += [
        "",
        f"Identical kept indices everywhere: {_verdict(s['all_identical'])}; targets: {_verdict(s['targets_met'])}.",
    ]
    return lines + ["", *_notes(data)]


def _detection_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Detection, eval, two images of different sizes (one process, interleaved)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("images", "images"),
            ("ours s", "ours_s"),
            ("reference s", "reference_s"),
            ("ratio ours/ref", "ratio"),
        ],
    )
    return lines + ["", *_notes(data)]


def _video_io_section(data: dict[str, Any]) -> list[str]:
    lines = [
        "## read_video of a range in the middle of a 60-second clip vs decoding from the start",
        "",
        *_header(data),
    ]
    lines += _table(
        data["rows"],
        [
            ("clip", "clip"),
            ("range s", "range_s"),
            ("frames", "frames"),
            ("ours s", "ours_s"),
            ("from start s", "from_start_s"),
            ("from start, RGB in range only s", "from_start_rgb_in_range_s"),
            ("speed-up", "speedup"),
            ("speed-up, seeking alone", "speedup_seek_only"),
            ("same frames", "same_frames"),
        ],
    )
    s = data["summary"]
    if s:
        lines += ["", f"Speed-up at least {s['target']:g}x: {_verdict(s['target_met'])}."]
    return lines + ["", *_notes(data)]


def _flow_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Optical flow, eval, one frame pair, 12 updates (one process, interleaved)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("pair", "pair"),
            ("ours s", "ours_s"),
            ("reference s", "reference_s"),
            ("ratio ours/ref", "ratio"),
            ("pyramid MB ours", "corr_held_mb_ours"),
            ("pyramid MB ref", "corr_held_mb_reference"),
            ("peak rise MB ours", "corr_peak_rise_mb_ours"),
            ("peak rise MB ref", "corr_peak_rise_mb_reference"),
        ],
    )
    return lines + ["", *_notes(data)]


def _video_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Video classification, eval, one 16-frame clip (one process, interleaved)", "", *_header(data)]
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("clip (T x H x W)", "clip"),
            ("ours s", "ours_s"),
            ("reference s", "reference_s"),
            ("ratio ours/ref", "ratio"),
        ],
    )
    return lines + ["", *_notes(data)]


_PEER_TITLES = {
    "ours": "ours eager",
    "ours_optimized": "ours optimised",
    "ours_optimized_bf16": "ours optimised bf16",
    "reference_compiled": "torch.compile (ref)",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
    "openvino_bf16": "OpenVINO bf16",
}
_DEPLOY_TITLES = {
    "ours": "ours eager",
    "ours_compiled": "torch.compile",
    "ours_aoti": "AOTInductor",
    "onnxruntime": "ONNX Runtime",
}


def _speedup_cell(name: str) -> Callable[[dict[str, Any]], Any]:
    """A speed-up, or "n/a" for a peer that did not run (the reason is listed under the table)."""

    def cell(row: dict[str, Any]) -> Any:
        value = row.get(f"speedup_{name}")
        return value if value is not None else "n/a"

    return cell


def _worst_deviation(row: dict[str, Any], names: Sequence[str]) -> str:
    """The largest float32 deviation from the reference's output among ``names``, relative to the output's scale."""
    values = [row[f"deviation_{n}"] for n in names if row.get(f"deviation_{n}") is not None]
    if not values:
        return "-"
    scale = max(1.0, row.get("reference_output_abs_max") or 0.0)
    return f"{max(values) / scale:.1e}"


def _skipped(rows: Sequence[dict[str, Any]], titles: dict[str, str]) -> list[str]:
    """One line per peer that did not run, with its reasons (deduplicated over the rows)."""
    reasons: dict[str, list[str]] = {}
    for row in rows:
        for name in titles:
            reason = row.get(f"skipped_{name}")
            if reason and reason not in reasons.setdefault(name, []):
                reasons[name].append(reason)
    return [f"- {titles[n]}: {'; '.join(r)}" for n, r in reasons.items() if r]


def _load_warning(data: dict[str, Any]) -> list[str]:
    """A warning where some row was measured on a busy machine: oversubscribed cores slow torch's OpenMP threads far
    more than ONNX Runtime's and OpenVINO's pools, so the ratios are off. The benchmark's own threads keep the
    1-minute load near the number of CPUs it uses, so only a load beyond the CPUs (by more than half a CPU) means
    that something else ran."""
    cpus = data["environment"].get("cpu_count") or 1
    loads = [r["load_average_1min"] for r in data["rows"] if r.get("load_average_1min") is not None]
    if not loads or max(loads) <= cpus + 0.5:
        return []
    return [
        f"**Measured on a busy machine** (1-minute load up to {max(loads):.1f} on {cpus} CPUs): torch's threads "
        "suffer most from that, so these ratios are not representative; rerun on a quiet machine.",
        "",
    ]


def cpu_line(data: dict[str, Any]) -> str:
    """The CPU a peers result was measured on, with its instruction-set features and the thread count."""
    cpu = data["summary"].get("cpu", {})
    features = ", ".join(cpu.get("features", [])) or "none of the listed"
    generation = f"family {cpu['family']}, model {cpu['model']}; " if cpu.get("family") else ""
    return (
        f"CPU: {cpu.get('model_name', 'unknown')} ({generation}{cpu.get('logical_cpus')} logical CPUs; {features}), "
        f"{data['summary'].get('threads')} threads for every runtime; native bfloat16: "
        f"{_fmt(data['summary'].get('native_bf16'))}."
    )


def peers_table(data: dict[str, Any]) -> list[str]:
    """Speed-ups over the reference's eager model of every peer, a row per model and batch size."""
    float32 = ["ours", "ours_optimized", "reference_compiled", "onnxruntime", "openvino"]
    return _table(
        data["rows"],
        [
            ("model", "model"),
            ("batch", "batch"),
            ("reference ms", lambda r: r["reference_s"] * 1e3),
            *((title, _speedup_cell(name)) for name, title in _PEER_TITLES.items()),
            ("worst fp32 deviation", lambda r: _worst_deviation(r, float32)),
            ("OpenVINO bf16 deviation", lambda r: _worst_deviation(r, ["openvino_bf16"])),
            ("ours bf16 deviation", lambda r: _worst_deviation(r, ["ours_optimized_bf16"])),
        ],
    )


def _peers_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Against other runtimes (speed-up over the reference's eager model)", "", *_header(data)]
    lines += [*_load_warning(data), cpu_line(data), "", *peers_table(data), ""]
    lines += [
        "All peers interleaved in one fresh process per model and batch size, on the same input; deviations are "
        "the largest absolute difference from the reference's float32 output, relative to its largest value "
        "where that exceeds 1. Set-up seconds (compiling, exporting) are in the JSON.",
        "",
    ]
    lines += _skipped(data["rows"], _PEER_TITLES)
    return lines + ["", *_notes(data)]


def _deploy_section(data: dict[str, Any]) -> list[str]:
    lines = ["## Deployed forms (batch 1, speed-up over the reference's eager model)", "", *_header(data)]
    lines += _load_warning(data)
    lines += _table(
        data["rows"],
        [
            ("model", "model"),
            ("input", "size"),
            ("reference ms", lambda r: r["reference_s"] * 1e3),
            *((title, _speedup_cell(name)) for name, title in _DEPLOY_TITLES.items()),
            ("worst deviation", lambda r: _worst_deviation(r, list(_DEPLOY_TITLES))),
            ("AOTInductor build s", "setup_s_ours_aoti"),
        ],
    )
    lines += ["", *_skipped(data["rows"], _DEPLOY_TITLES)]
    return lines + ["", *_notes(data)]


def plot_speed(eager: dict[str, Any] | None, optimized: dict[str, Any] | None, path: Path) -> Path | None:
    """Bar chart: per model, our speed relative to the reference's eager speed (batch 8), eager and optimised."""
    if eager is None and optimized is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eager_speed = {r["model"]: 1.0 / r["ratio"] for r in (eager or {}).get("rows", []) if r["batch"] == 8}
    optimised_speed = {
        r["model"]: r.get("speedup_compiled") or r["speedup_nocompile"] for r in (optimized or {}).get("rows", [])
    }
    models = list(dict.fromkeys([*eager_speed, *optimised_speed]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(models) + 2), 4.0))
    width = 0.38
    positions = range(len(models))
    ax.bar([p - width / 2 for p in positions], [eager_speed.get(m, 0) for m in models], width, label="eager")
    optimised_bars = [optimised_speed.get(m, 0) for m in models]
    ax.bar([p + width / 2 for p in positions], optimised_bars, width, label="optimize_for_inference")
    targets = (optimized or {}).get("summary", {}).get("targets", {})
    marked = [(i, targets[m]) for i, m in enumerate(models) if m in targets]
    if marked:
        where, heights = [p + width / 2 for p, _ in marked], [t for _, t in marked]
        ax.scatter(where, heights, marker="_", s=400, color="red", label="target")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), models, rotation=30, ha="right")
    ax.set_ylabel("speed relative to the reference (eager)")
    ax.set_title("visionzoo vs reference, batch 8, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


README = ROOT / "README.md"
_START, _END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def readme_block() -> list[str]:
    """The README's short performance summary: optimised speed-ups, import time, large-checkpoint loading."""
    lines: list[str] = []
    peers = _load("peers")
    if peers:
        lines += ["Speed-up over the reference's eager model, side by side with other CPU runtimes:", ""]
        lines += [*_load_warning(peers), *peers_table(peers), "", cpu_line(peers), ""]
        lines += [f"_{_header(peers)[0].strip('_')}; from `python -m benchmarks.peers`_", ""]
    optimized = _load("optimized")
    if optimized:
        lines += ["Batch 8, speed-up over the reference's eager model:", ""]
        lines += _table(
            optimized["rows"],
            [
                ("model", "model"),
                ("eager", "speedup_eager"),
                ("optimised, no compile", "speedup_nocompile"),
                ("optimised", "speedup_compiled"),
                ("optimised, tuned malloc", "tuned_malloc_speedup_compiled"),
                ("compile s", "compile_s"),
            ],
        )
        lines += [
            "",
            'Each pair runs in a fresh process. "Tuned malloc" runs it with glibc\'s malloc keeping freed memory '
            "(`MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296`): the reference's eager model "
            "gains most from that, so the speed-ups there are smaller.",
            "",
            f"_{_header(optimized)[0].strip('_')}; from `python -m benchmarks.optimized`_",
            "",
        ]
    facts = []
    imports = _load("import_time")
    if imports:
        s = imports["summary"]
        facts.append(
            f"`import visionzoo.models` adds {s['ours_on_top_of_torch_s']:.2f} s to `import torch` "
            f"(the reference's models: {s['reference_on_top_of_torch_s']:.2f} s)"
        )
    loading = _load("loading")
    if loading:
        ways = {(r["model"], r["way"]): r for r in loading["rows"]}
        biggest = max({r["model"]: r["file_mb"] for r in loading["rows"]}.items(), key=lambda kv: kv[1], default=None)
        if biggest:
            model, size = biggest
            ours, ref = ways[(model, "ours (path)")], ways[(model, "reference (random init + load_state_dict)")]
            facts.append(
                f"loading {model} from a {size / 1e3:.1f} GB checkpoint by path takes {ours['seconds']:.2f} s and "
                f"{ours['peak_increase_mb']:.0f} MB of memory, the reference's way (random initialisation, then "
                f"`load_state_dict`) {ref['seconds']:.1f} s and {ref['peak_increase_mb'] / 1e3:.1f} GB"
            )
    if facts:
        lines.append("Also measured: " + "; ".join(facts) + ".")
    return lines


def update_readme(block: list[str], readme: Path = README) -> bool:
    """Replace what lies between the README's benchmark markers; False when the markers are missing."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    if _START not in text or _END not in text:
        return False
    head, rest = text.split(_START, 1)
    _, tail = rest.split(_END, 1)
    readme.write_text(head + _START + "\n" + "\n".join(block) + "\n" + _END + tail, encoding="utf-8")
    return True


SECTIONS: list[tuple[str, Callable[[dict[str, Any]], list[str]]]] = [
    ("eager", lambda d: _eager_section(d, "Eager inference, representative models (native resolution)")),
    ("optimized", _optimized_section),
    ("loading", _loading_section),
    ("import_time", _import_section),
    ("int8", _int8_section),
    ("build", _build_section),
    ("eager_all", lambda d: _eager_section(d, "Eager inference at batch 1, every classification builder (224x224)")),
    ("ops_roi", _ops_roi_section),
    ("detection", _detection_section),
    ("flow", _flow_section),
    ("video", _video_section),
    ("peers", _peers_section),
    ("deploy", _deploy_section),
    ("ops", _ops_section),
    ("video_io", _video_io_section),
]


def main() -> Path:
    lines = [
        "# Benchmarks: visionzoo vs the reference",
        "",
        "Generated by `python -m benchmarks.report` from the JSON files next to this one; ratios are "
        "ours / reference time (below 1: we are faster), speed-ups are reference / ours time.",
        "",
    ]
    for item, section in SECTIONS:
        data = _load(item)
        lines += section(data) if data is not None else [f"## {item}", "", "_not run_", ""]
    summary = RESULTS_DIR / "summary.md"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    summary.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    plot = plot_speed(_load("eager"), _load("optimized"), RESULTS_DIR / "speed.png")
    print(f"wrote {summary}" + (f" and {plot}" if plot else ""))
    # Only the default results feed the README; a run written elsewhere (VISIONZOO_BENCH_RESULTS) does not.
    if RESULTS_DIR.resolve() == (ROOT / "benchmarks" / "results").resolve() and update_readme(readme_block()):
        print(f"updated the benchmark block of {README}")
    return summary


if __name__ == "__main__":
    main()
