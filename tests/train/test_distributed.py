"""``visionzoo train`` under ``torchrun --nproc-per-node 2`` (gloo, 127.0.0.1) against one process.

SqueezeNet 1.1 without dropout has no batch norm and draws no random numbers in its forward, the augmentation's
draws depend only on (seed, epoch, image), and both runs cut the same shuffled order into the same global batches
of 8: averaging the two ranks' mean gradients is then the single process's mean gradient over the global batch,
and the weights agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train._data import make_folders
from visionzoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    *("--model", "squeezenet1_1", "--dropout", "0", "--crop-size", "32", "--workers", "0", "-q"),
    *("--global-batch-size", "8", "--epochs", "2", "--warmup-epochs", "1", "--lr", "0.01", "--nesterov"),
    *("--label-smoothing", "0.1"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    data = make_folders(tmp_path / "data", per_class=6, size=(36, 36))
    val = make_folders(tmp_path / "val", per_class=1, size=(36, 36), seed=1)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launch += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    command = [
        *launch,
        "-m",
        "visionzoo.train",
        *ARGS,
        "--data",
        str(data),
        "--val",
        str(val),
        "--output-dir",
        str(ddp),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    assert main(["train", *ARGS, "--data", str(data), "--val", str(val), "--output-dir", str(single)]) == 0

    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["epoch"] for r in train] == [1, 2]  # rank 0 alone wrote: one record per epoch
    for record in train:
        assert record["world_size"] == 2 and record["samples_per_rank"] == [9, 9]  # 18 images, both ranks ran
        assert record["replicas_in_sync"] and len(set(record["replica_digests"])) == 1
    evals = [r for r in records if r["kind"] == "eval"]
    assert evals[-1]["val_images"] == 3  # each image evaluated once over both ranks

    theirs = torch.load(single / "model.pth", weights_only=True)["model"]
    ours = torch.load(ddp / "model.pth", weights_only=True)["model"]
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5, msg=key)
    alone = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in train] == pytest.approx([r["loss"] for r in alone if r["kind"] == "train"], abs=1e-5)
