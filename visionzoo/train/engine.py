"""The training loop every task shares: optimizer and schedule, mixed precision, EMA, evaluation, checkpoints.

A task (``classification.py``, ``detection.py``) says what is specific to it through :class:`Task`: how to
build the model and the data, what one batch's loss is, how to evaluate, and what to save beside the weights.
:func:`fit` does the rest, the same way in one process and under ``torchrun``:

- the schedule is per iteration: a linear warm-up into a cosine decay to zero;
- a checkpoint (``OUTDIR/checkpoint.pth``) is written after every epoch, to a temporary file renamed into
  place, so an interrupted or failed run leaves the last good one as it was; it holds everything a resumed run
  needs to continue exactly as an uninterrupted one would (model, optimizer, schedule, gradient scaler, EMA,
  epoch, step, random states; the sampler's order is a function of the seed and the epoch);
- one JSON object per epoch and per evaluation goes to ``OUTDIR/metrics.jsonl``;
- the finished model goes to ``OUTDIR/model.pth`` as ``{"model": state_dict, "meta": {...}}``, which
  ``get_model(name, weights=path)`` and ``visionzoo predict --weights path`` read.

Under ``torchrun`` only rank 0 shows progress and writes files; gradients are averaged over the ranks, so a
step sees the mean loss of the global batch.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from visionzoo.distributed import World, barrier

from .checkpoint import CHECKPOINT, find_resume, random_states, read_checkpoint, restore_random_states, save_atomically

FINAL_MODEL = "model.pth"
FINAL_EMA = "model_ema.pth"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    """The settings of a run that do not depend on the task (the CLI's flags; see ``visionzoo train --help``)."""

    model: str
    output_dir: Path
    epochs: int = 10
    batch_size: int = 32  # per process
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    norm_weight_decay: float | None = None  # for normalisation weights and biases; None: weight_decay
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.01  # the learning rate starts at lr * warmup_factor
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    amp: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    ema_decay: float | None = None  # None: no EMA
    ema_steps: int = 1
    eval_every: int = 1  # epochs; 0: only at the end
    workers: int = 2
    seed: int = 0
    device: str = "cpu"
    resume: str | None = None  # a path, or "auto"
    stop_after: int | None = None  # end this run after that many epochs (to be resumed)
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # task settings, recorded in checkpoints

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_epochs": 0 <= self.warmup_epochs <= self.epochs,
            "warmup_factor": 0 < self.warmup_factor <= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "ema_steps": self.ema_steps >= 1,
            "eval_every": self.eval_every >= 0,
            "workers": self.workers >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"bad training settings: {values} (see visionzoo train --help for the valid ranges)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.stop_after is not None and self.stop_after < 1:
            raise ValueError(f"stop_after must be at least 1 epoch, got {self.stop_after}")

    def recorded(self) -> dict[str, Any]:
        """The settings as checkpoints and metrics record them (JSON-friendly)."""
        settings = asdict(self)
        settings["output_dir"] = str(self.output_dir)
        return settings


class Task(Protocol):
    """What :func:`fit` needs from a task."""

    name: str

    def build_model(self) -> nn.Module:
        """The model to train, on the CPU, its weights already loaded (published, a checkpoint, or random)."""

    def train_loader(self, world: World, seed: int) -> torch.utils.data.DataLoader:
        """The training batches of this rank; its sampler and dataset have ``set_epoch``."""

    def set_epoch(self, epoch: int) -> None:
        """Prepare the training data for ``epoch`` (the sampler's order, the augmentation's random draws)."""

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Batch:
        """The batch's mean loss and its sample count (samples that could not be read are left out)."""

    def evaluate(self, model: nn.Module, world: World, device: torch.device, quiet: bool) -> dict[str, float]:
        """Metrics over the whole validation set (every rank's share counted once); empty without one."""

    def meta(self) -> dict[str, Any]:
        """What to save beside the weights (class names, the model's name, input size, ...)."""


@dataclass
class Batch:
    """One step's loss (a scalar tensor with a graph, or None when every sample was skipped) and its size."""

    loss: torch.Tensor | None
    samples: int
    skipped: list[str] = field(default_factory=list)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda groups, c: torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov),
    "adamw": lambda groups, c: torch.optim.AdamW(groups, lr=c.lr),
}


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW; normalisation weights and biases get ``norm_weight_decay`` when it is given.

    A one-dimensional parameter is a bias or a normalisation layer's scale: decaying those towards zero
    rarely helps, which is why recipes often exempt them.
    """
    if config.nesterov and (config.optimizer != "sgd" or config.momentum <= 0):
        raise ValueError("nesterov needs the sgd optimizer with a positive momentum")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.norm_weight_decay is None:
        groups = [{"params": trainable, "weight_decay": config.weight_decay}]
    else:
        groups = [
            {"params": [p for p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": config.norm_weight_decay},
        ]
    return OPTIMIZERS[config.optimizer]([g for g in groups if g["params"]], config)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, warmup_factor: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule: linear from ``warmup_factor`` to 1 over ``warmup_steps``, then cosine down to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_factor + (1 - warmup_factor) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ExponentialMovingAverage:
    """A copy of a model whose floating-point tensors follow ``ema = decay * ema + (1 - decay) * current``.

    Integer buffers (batch-norm counters) are copied. Updated every ``every`` optimizer steps; the decay is
    applied once per update, so ``every`` trades accuracy of the average for speed.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every = decay, every

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every:
            return
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1 - self.decay)
            else:
                average.copy_(value)


class MetricsLog:
    """Appends one JSON object per line to ``OUTDIR/metrics.jsonl`` (rank 0 only; other ranks write nothing)."""

    def __init__(self, path: Path, active: bool) -> None:
        self.path, self.active = path, active

    def write(self, record: dict[str, Any]) -> None:
        if self.active:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record, sort_keys=True) + "\n")


def progress_bar(iterable: Iterable[Any], total: int, description: str, show: bool) -> Any:
    """A tqdm bar over ``iterable`` (off unless ``show``: rank 0, not quiet)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, disable=not show, leave=False, dynamic_ncols=True)


def _note(message: str, world: World) -> None:
    if world.is_main:
        print(f"visionzoo train: {message}", file=sys.stderr)


def reduce_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """The sums of ``values`` over every rank (the values themselves in a world of one)."""
    if world.world_size == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _per_rank(value: int, world: World, device: torch.device) -> list[int]:
    """``value`` from every rank, in rank order (a record that each rank took part)."""
    if world.world_size == 1:
        return [value]
    import torch.distributed as dist

    gathered = torch.zeros(world.world_size, dtype=torch.float64, device=device)
    gathered[world.rank] = value
    dist.all_reduce(gathered)
    return [int(v) for v in gathered.tolist()]


def replica_digests(model: nn.Module, world: World) -> list[str]:
    """Every rank's sha256 of its model's parameters (names and bytes), in rank order.

    Buffers are left out: batch-norm running statistics follow each rank's own batches between the
    broadcasts DDP makes from rank 0 at every forward, so they differ legitimately after the last step.
    """
    import hashlib

    import torch.distributed as dist

    digest = hashlib.sha256()
    for name, tensor in model.named_parameters():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    gathered: list[Any] = [None] * world.world_size
    dist.all_gather_object(gathered, digest.hexdigest())
    return [str(value) for value in gathered]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def fit(task: Task, config: TrainConfig, world: World, device: torch.device) -> dict[str, Any]:
    """Train ``task`` as ``config`` says; returns the last evaluation's metrics (empty without validation data).

    Raises:
        ValueError: bad settings, or a checkpoint to resume that belongs to another model or other classes.
        FileNotFoundError: ``--resume PATH`` names no file.
    """
    cuda = device.type == "cuda"
    if config.sync_bn and world.world_size > 1 and not cuda:
        raise ValueError(
            "--sync-bn needs CUDA devices (SyncBatchNorm runs on GPUs only); on the CPU leave it out, and each "
            "process normalises with its own batch's statistics"
        )
    if not cuda and (config.amp or config.channels_last):
        flags = " and ".join(f for f, on in (("--amp", config.amp), ("--channels-last", config.channels_last)) if on)
        _note(f"{flags} apply on CUDA only; training on {device.type} in float32, channels first", world)
    amp, channels_last = config.amp and cuda, config.channels_last and cuda

    torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    random.seed(config.seed)
    meta = task.meta()
    resume_from = find_resume(config)
    if config.resume is None and (config.output_dir / CHECKPOINT).exists():
        raise ValueError(
            f"{config.output_dir} already holds a training checkpoint: continue it with --resume auto, or choose "
            "another --output-dir (nothing there is overwritten)"
        )
    state = read_checkpoint(resume_from, config, meta) if resume_from is not None else None

    model = task.build_model()
    if config.sync_bn and world.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    ema = ExponentialMovingAverage(model, config.ema_decay, config.ema_steps) if config.ema_decay else None
    # The sampler's order and the augmentation's draws follow (seed, epoch): a resumed run keeps the seed it began with.
    seed = config.seed if state is None else int(state.get("seed", config.seed))
    if seed != config.seed:
        _note(f"--seed {config.seed} ignored: {resume_from} continues the run seeded {seed}", world)
    loader = task.train_loader(world, seed)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError("the training set gives no batch on this rank (fewer images than ranks?)")
    optimizer = make_optimizer(model, config)
    scheduler = warmup_cosine(
        optimizer,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        warmup_factor=config.warmup_factor,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state.get("ema") is None:
                raise ValueError(f"{resume_from} holds no EMA weights; resume without --ema-decay")
            ema.module.load_state_dict(state["ema"])
        start_epoch, step = state["epoch"], state["step"]
        restore_random_states(state["rng"])
        _note(f"resumed from {resume_from} after epoch {start_epoch} (step {step})", world)
    elif config.resume == "auto":
        _note(f"no checkpoint in {config.output_dir} to resume; starting afresh", world)
    if start_epoch >= config.epochs:
        _note(f"{resume_from} already finished {start_epoch} of {config.epochs} epochs; nothing to train", world)
        return {}

    if world.is_main:  # only now: a run that cannot start leaves no directory behind
        config.output_dir.mkdir(parents=True, exist_ok=True)
    if world.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    log = MetricsLog(config.output_dir / METRICS, world.is_main)
    show = world.is_main and not config.quiet
    results: dict[str, Any] = {}
    last_epoch = config.epochs if config.stop_after is None else min(config.epochs, start_epoch + config.stop_after)

    for epoch in range(start_epoch, last_epoch):
        task.set_epoch(epoch)
        model.train()
        began = time.perf_counter()
        loss_sum, samples, skipped = 0.0, 0, []
        bar = progress_bar(loader, steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", show)
        for raw in bar:
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                batch = task.loss(model, raw, device)
            skipped += batch.skipped
            if batch.loss is None:
                continue
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(batch.loss).backward()
            if config.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            if ema is not None:
                ema.update(_unwrap(model), step)
            loss_sum += batch.loss.item() * batch.samples
            samples += batch.samples
            bar.set_postfix(loss=f"{batch.loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        total_loss, total_samples, total_skipped = reduce_sum([loss_sum, samples, len(skipped)], world, device)
        for path in skipped:
            print(f"visionzoo train: rank {world.rank}: skipped unreadable image {path}", file=sys.stderr)
        record = {
            "kind": "train",
            "epoch": epoch + 1,
            "step": step,
            "loss": total_loss / max(total_samples, 1),
            "lr": scheduler.get_last_lr()[0],
            "samples": int(total_samples),
            "samples_per_rank": _per_rank(samples, world, device),
            "skipped": int(total_skipped),
            "seconds": round(time.perf_counter() - began, 3),
            "world_size": world.world_size,
        }
        if world.world_size > 1:  # DDP keeps the replicas equal; this records that it did
            digests = replica_digests(_unwrap(model), world)
            record.update(replicas_in_sync=len(set(digests)) == 1, replica_digests=digests)
        log.write(record)
        if show:
            print(f"epoch {epoch + 1}/{config.epochs}: loss {record['loss']:.4f} ({int(total_samples)} images)")

        finished = epoch + 1 == config.epochs
        if finished or (config.eval_every and (epoch + 1) % config.eval_every == 0):
            results = _evaluate(task, model, ema, world, device, show)
            if results:
                log.write({"kind": "eval", "epoch": epoch + 1, "step": step, **results})
                if show:
                    print(
                        f"epoch {epoch + 1}/{config.epochs}: "
                        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items())
                    )

        if world.is_main:
            checkpoint = {
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "ema": ema.module.state_dict() if ema is not None else None,
                "epoch": epoch + 1,
                "step": step,
                "rng": random_states(),
                "seed": seed,
                "meta": meta,
                "config": config.recorded(),
            }
            save_atomically(checkpoint, config.output_dir / CHECKPOINT)
        barrier()

    if world.is_main and last_epoch == config.epochs:
        final_meta = {**meta, "epochs": config.epochs, "metrics": results}
        save_atomically({"model": _unwrap(model).state_dict(), "meta": final_meta}, config.output_dir / FINAL_MODEL)
        if ema is not None:
            save_atomically({"model": ema.module.state_dict(), "meta": final_meta}, config.output_dir / FINAL_EMA)
        if show:
            print(f"saved {config.output_dir / FINAL_MODEL}")
    barrier()
    return results


def _evaluate(
    task: Task, model: nn.Module, ema: ExponentialMovingAverage | None, world: World, device: torch.device, show: bool
) -> dict[str, float]:
    results = task.evaluate(_unwrap(model), world, device, not show)
    if results and ema is not None:
        results.update({f"ema_{k}": v for k, v in task.evaluate(ema.module, world, device, not show).items()})
    return results
