"""``visionzoo predict --out FILE.jsonl`` at scale (issue 34): sharded across torchrun processes (gloo on
127.0.0.1), merged by rank 0, resumed after an interruption, fed by a list file, and its misconfigurations.

The model is the tiny zoo's ``tinynet`` (tests/_cli_zoo.py) with its random ``V1`` weights, so every image has
its own answer; the torchrun processes run tests/_zoo_cli.py and load the checkpoint written here through
``VISIONZOO_WEIGHTS_DIR``. Two launches only: torchrun takes seconds to start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests._cli_zoo import TinyZoo, run, write_images

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = 0.4242  # a probability no prediction gives: marks results that must be kept, not predicted again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(argv: list[str], weights: Path, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    """``visionzoo ARGV`` (with the tiny zoo) under ``torchrun --nproc-per-node NPROC`` on 127.0.0.1."""
    env = {**os.environ, "VISIONZOO_WEIGHTS_DIR": str(weights), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    command += ["--master-addr=127.0.0.1", f"--master-port={free_port()}", str(ROOT / "tests" / "_zoo_cli.py")]
    return subprocess.run([*command, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def same(a: list[dict], b: list[dict], *, images: bool = True) -> bool:
    """The same results, up to the last (rounded) digit of a probability: batches made of other images and other
    thread counts may move it."""
    if len(a) != len(b) or (images and [r["image"] for r in a] != [r["image"] for r in b]):
        return False
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra["top"], rb["top"], strict=True)]
    return all(x["index"] == y["index"] and abs(x["probability"] - y["probability"]) <= 2e-4 for x, y in pairs)


def predicted_images(stdout: str) -> list[str]:
    """The images whose results a run printed (their names start a line; the categories are indented)."""
    return sorted(line for line in stdout.splitlines() if line.endswith(".png"))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zoo: TinyZoo) -> Path:
    """Work in an empty folder with the zoo's checkpoints in ``VISIONZOO_WEIGHTS_DIR``, as a world of one."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(zoo.served))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return work


@pytest.fixture
def images(in_tmp: Path) -> list[str]:
    """Ten pictures and a corrupt file in ``imgs/``, named relative to the working folder and sorted as predict
    lists the folder."""
    write_images(in_tmp / "imgs", 10)
    (in_tmp / "imgs" / "bad.png").write_bytes(b"not a png")
    return sorted(str(p.relative_to(in_tmp)) for p in (in_tmp / "imgs").iterdir())


ARGS = ["--model", "tinynet", "--weights", "V1", "--topk", "3", "--batch-size", "2"]


def test_two_ranks_write_each_input_once_then_a_rerun_predicts_only_what_is_missing(
    in_tmp: Path, zoo: TinyZoo, images: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    good = [p for p in images if not p.endswith("bad.png")]
    status, _, err = run(["predict", "imgs", *ARGS, "--out", "single.jsonl", "--quiet"], capsys)
    assert status == 1 and "bad.png" in err  # the corrupt file: reported, skipped, counted
    single = lines_of(in_tmp / "single.jsonl")
    assert [r["image"] for r in single] == good

    done = torchrun(["predict", "imgs", *ARGS, "--out", "r.jsonl"], zoo.served, in_tmp)
    assert done.returncode == 1, done.stderr  # every process reports the failure in all
    assert same(lines_of(in_tmp / "r.jsonl"), single)  # each input once, in order, as one process writes them
    assert sorted(p.name for p in in_tmp.iterdir()) == ["imgs", "r.jsonl", "single.jsonl"]  # parts merged away
    assert predicted_images(done.stdout) == good  # each printed once, by the rank that predicted it
    assert "visionzoo: rank 0 of 2: 5 of 6 images predicted, 1 failed" in done.stderr  # bad.png is rank 0's
    assert "visionzoo: rank 1 of 2: 5 of 5 images predicted" in done.stderr
    assert "visionzoo: in all: 10 of 11 images predicted, 1 failed; r.jsonl holds 10" in done.stderr
    assert done.stderr.count("bad.png") == 1

    # An interrupted run: results lost from r.jsonl, a part with a complete line and one cut short, and a part
    # left by a run with another world size. Kept results carry SENTINEL, so predicting them again would show.
    results = {r["image"]: r for r in lines_of(in_tmp / "r.jsonl")}
    for name in ("imgs/img4.png", "imgs/img8.png", "imgs/img0.png"):
        results[name]["top"][0]["probability"] = SENTINEL
    new = ["imgs/img2.png", "imgs/img4.png", "imgs/img5.png", "imgs/img6.png", "imgs/img8.png"]
    kept = [results[name] for name in good if name not in new]
    (in_tmp / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    cut = json.dumps(results["imgs/img6.png"])
    (in_tmp / "r.rank0-of-2.jsonl").write_text(json.dumps(results["imgs/img4.png"]) + "\n" + cut[:40])
    (in_tmp / "r.rank2-of-3.jsonl").write_text(json.dumps(results["imgs/img8.png"]) + "\n")

    done = torchrun(["predict", "imgs", *ARGS, "--out", "r.jsonl", "--quiet"], zoo.served, in_tmp)
    assert done.returncode == 1, done.stderr
    assert predicted_images(done.stdout) == ["imgs/img2.png", "imgs/img5.png", "imgs/img6.png"]
    merged = lines_of(in_tmp / "r.jsonl")
    assert [r["image"] for r in merged] == [r["image"] for r in kept] + new  # kept first, then input order
    assert (
        merged[: len(kept)] == kept
        and merged[-4] == results["imgs/img4.png"]
        and merged[-1] == results["imgs/img8.png"]
    )
    assert same(merged, [*kept, *(results[name] for name in new)])
    assert sorted(p.name for p in in_tmp.iterdir()) == ["imgs", "r.jsonl", "single.jsonl"]
    assert "in all: 3 of 11 images predicted, 1 failed, 7 already in r.jsonl; r.jsonl holds 10" in done.stderr

    # Resuming with another world size (a plain run is a world of one): only the corrupt file is left to try.
    status, out, err = run(["predict", "imgs", *ARGS, "--out", "r.jsonl"], capsys)
    assert (status, out) == (1, "") and "0 of 11 images predicted, 1 failed, 10 already in r.jsonl" in err
    assert lines_of(in_tmp / "r.jsonl") == merged
    # --fresh starts over.
    status, out, err = run(["predict", "imgs", *ARGS, "--out", "r.jsonl", "--fresh", "--quiet"], capsys)
    assert status == 1 and predicted_images(out) == good and lines_of(in_tmp / "r.jsonl") == single


def test_list_file(in_tmp: Path, images: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "lists").mkdir()
    listing = in_tmp / "lists" / "todo.txt"
    absolute = str(in_tmp / "imgs" / "img7.png")
    listing.write_text(f"# three pictures\n../imgs/img1.png\n\n  ../imgs/img3.png  \n{absolute}\n")
    status, out, err = run(["predict", "--list", str(listing), *ARGS, "--out", "l.jsonl", "--quiet"], capsys)
    relative = [str(in_tmp / "lists" / "../imgs" / name) for name in ("img1.png", "img3.png")]
    assert (status, err) == (0, "") and [r["image"] for r in lines_of(in_tmp / "l.jsonl")] == [*relative, absolute]
    single = lines_of(in_tmp / "l.jsonl")
    # The same pictures named directly give the same answers; a list adds to the positional inputs.
    status, out, _ = run(["predict", "imgs/img3.png", "--list", "lists/todo.txt", *ARGS, "--json"], capsys)
    assert status == 0 and same(json.loads(out), [single[1], *single], images=False)

    listing.write_text("# nothing yet\n\n")
    for argv, message in (
        (["--list", str(listing)], f"--list {listing}: lists no file"),
        (["--list", "nosuch.txt"], "--list nosuch.txt: no such file"),
        ([], "nothing to predict: give images or folders, or --list FILE"),
    ):
        status, out, err = run(["predict", *argv, *ARGS], capsys)
        assert (status, out) == (2, "") and err.startswith(f"visionzoo: error: {message}") and err.count("\n") == 1
    listing.write_text("../imgs/img1.png\n../imgs/gone.png\n")
    status, _, err = run(["predict", "--list", str(listing), *ARGS], capsys)
    assert status == 2 and "imgs/gone.png: no such file or folder" in err


def test_a_results_file_that_is_not_ours_is_refused(in_tmp: Path, images: list[str], capsys) -> None:
    (in_tmp / "r.jsonl").write_text('{"image": "imgs/img1.png", "top": []}\n["not", "a result"]\n')
    status, out, err = run(["predict", "imgs", *ARGS, "--out", "r.jsonl"], capsys)
    assert (status, out) == (2, "") and "r.jsonl:2: not a result of `visionzoo predict`" in err


def test_results_of_other_weights_are_not_resumed(in_tmp: Path, images: list[str], capsys) -> None:
    status, _, _ = run(["predict", "imgs/img1.png", *ARGS, "--out", "r.jsonl", "--quiet"], capsys)
    assert status == 0 and lines_of(in_tmp / "r.jsonl")[0]["weights"] == "TinyNet_Weights.V1"
    other = [a if a != "V1" else "V2" for a in ARGS]
    status, out, err = run(["predict", "imgs/img1.png", *other, "--out", "r.jsonl"], capsys)
    assert (status, out) == (2, "") and "holds results of TinyNet_Weights.V1 (for imgs/img1.png)" in err


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({"WORLD_SIZE": "2"}, [], "WORLD_SIZE is set but RANK is not; launch with torchrun"),
        ({"RANK": "0"}, [], "RANK is set but WORLD_SIZE is not"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, [], "RANK must be between 0 and WORLD_SIZE - 1 = 1, got 2"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, [], "WORLD_SIZE='two' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, ["--out", "r.jsonl"], "MASTER_ADDR and MASTER_PORT not set"),
        ({}, [], "add --out"),
        ({}, ["--out", "r.csv"], "--out r.csv: the processes write JSON lines; name a .jsonl file"),
        ({}, ["--out", "r.jsonl", "--json"], "--json would print one document per process"),
        ({}, ["--out", "r.jsonl", "--dist-backend", "nccl"], "the nccl backend needs CUDA devices, not cpu"),
        ({}, ["--model", "tinydet", "--out", "r.jsonl"], "predict shares out the inputs of classification"),
    ],
)
def test_a_misconfigured_world_is_one_clear_error(
    in_tmp: Path,
    images: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: list[str],
    message: str,
) -> None:
    world = env or {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}
    for name, value in world.items():
        monkeypatch.setenv(name, value)
    status, out, err = run(["predict", "imgs", *ARGS, *argv], capsys)
    assert (status, out) == (2, "") and err.startswith("visionzoo: error: ") and err.count("\n") == 1, err
    assert message in err
    assert sorted(p.name for p in in_tmp.iterdir()) == ["imgs"]  # refused before any work
