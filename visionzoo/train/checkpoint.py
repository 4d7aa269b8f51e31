"""Training checkpoints: written atomically, read back with checks, and the random states that make a resumed
run continue exactly as an uninterrupted one would."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .engine import TrainConfig

CHECKPOINT = "checkpoint.pth"


def save_atomically(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, flushed to disk, then renamed over it.

    A crash (or a full disk) while saving leaves the previous file intact.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as out:
            torch.save(payload, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def random_states() -> dict[str, Any]:
    """Every random generator the loop draws from (torch CPU and CUDA, Python's ``random``)."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(_as_python_state(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_python_state(state: Any) -> tuple:
    # A checkpoint read with weights_only may return the (version, internal state, gauss) tuple as lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def find_resume(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from: ``--resume PATH``, or with ``auto`` the output directory's if present."""
    if config.resume is None:
        return None
    if config.resume == "auto":
        path = config.output_dir / CHECKPOINT
        return path if path.is_file() else None
    path = Path(config.resume)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"--resume {config.resume}: no checkpoint file {path}")
    return path


def read_checkpoint(path: Path, config: TrainConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """A training checkpoint, checked to come from training the same model on the same classes."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt or foreign file: name it
        raise ValueError(f"{path} is not a readable training checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "meta"} <= state.keys():
        raise ValueError(f"{path} is not a visionzoo training checkpoint (no model, optimizer, epoch and meta)")
    theirs = state["meta"]
    if theirs.get("model") != config.model:
        raise ValueError(
            f"{path} is a checkpoint of {theirs.get('model')!r}, not of {config.model!r}: resume with the same "
            "--model, or start a new output directory"
        )
    for key in ("task", "categories"):
        if theirs.get(key) != meta.get(key):
            raise ValueError(
                f"{path} was trained with {key} {theirs.get(key)!r}, but this run has {meta.get(key)!r}: "
                "resume on the same data, or start a new output directory"
            )
    return state
