"""``visionzoo train``: fine-tune a model on your own data, in one process or under ``torchrun``.

The command builds a task (``visionzoo.train.classification`` for class folders; detection for a COCO-style
annotation file) and a :class:`visionzoo.train.engine.TrainConfig` from the flags, joins the torchrun world
when there is one, and hands both to :func:`visionzoo.train.engine.fit`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import ChosenWeights, CommandError, choose_weights, device_of, model_info

# The tasks `visionzoo train` fine-tunes.
TRAINABLE = ("classification", "detection")


def register(sub: Any) -> None:
    """Add ``train`` to the top-level parser's subparsers."""
    p = sub.add_parser(
        "train",
        help="fine-tune a model on your images",
        description="Fine-tune a classifier on an image folder (one sub-folder per class; --val for a validation "
        "split laid out the same way), or a detector on a COCO-format --annotations file of the --data images "
        "(--val and --val-annotations for COCO box mAP). Writes OUTDIR/checkpoint.pth after every epoch (atomically; --resume auto "
        "continues from it exactly), OUTDIR/metrics.jsonl (one JSON object per epoch and evaluation), and at "
        "the end OUTDIR/model.pth, which `--weights OUTDIR/model.pth` loads in predict and validate, with the "
        "class names. Launched with torchrun (python -m torch.distributed.run --nproc-per-node N ...) the same "
        "command trains with DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 logs and writes.",
    )
    p.add_argument("--model", required=True, help="model name (visionzoo list)")
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="training images: DIR/<class name>/<image> (classification), or the image directory of --annotations",
    )
    p.add_argument(
        "--val", type=Path, help="validation images, laid out like --data (top-1/top-5, or COCO box mAP, reported)"
    )
    p.add_argument("--task", help="the model's task (default: the one it is registered for)")
    p.add_argument(
        "--weights",
        help="start from this weights entry (e.g. DEFAULT, ResNet18_Weights.IMAGENET1K_V1: a fresh head is made "
        "for your classes) or checkpoint file (it must fit); default: random initialisation",
    )
    p.add_argument("--output-dir", type=Path, help="where checkpoints, metrics and the model go (default runs/MODEL)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint; auto: OUTDIR's, if any")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--stop-after", type=int, metavar="N", help="end this run after N epochs (resume it later)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=int, default=32, help="images per step and process (default 32)")
    size.add_argument("--global-batch-size", type=int, help="images per step over all processes")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument(
        "--norm-weight-decay", type=float, help="weight decay of biases and normalisation weights (default: as others)"
    )
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length before the cosine decay")
    p.add_argument("--warmup-factor", type=float, default=0.01, help="the warm-up's starting share of --lr")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--clip-grad-norm", type=float, help="clip the gradients' total norm to this value")
    p.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights (e.g. 0.999)")
    p.add_argument("--ema-steps", type=int, default=1, help="update the average every N steps (default 1)")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (0: at the end only)")
    p.add_argument("--crop-size", type=int, default=224, help="training crop and validation center crop")
    p.add_argument("--resize-size", type=int, help="validation shorter side before cropping (default crop / 0.875)")
    p.add_argument("--dropout", type=float, help="the model's dropout probability, for builders that take one")
    detection = p.add_argument_group("detection")
    detection.add_argument("--annotations", type=Path, help="the COCO-format annotation JSON of --data")
    detection.add_argument("--val-annotations", type=Path, help="the COCO-format annotation JSON of --val")
    detection.add_argument(
        "--label-space",
        choices=("contiguous", "coco"),
        default="contiguous",
        help="contiguous: the file's categories become labels 1..N (a new head for them); coco: the 91 COCO "
        "labels the published weights score (default contiguous)",
    )
    detection.add_argument("--min-size", type=int, help="the model's input resize: shorter side (R-CNN, FCOS, ...)")
    detection.add_argument("--max-size", type=int, help="the model's input resize: longest side at most")
    detection.add_argument(
        "--weights-backbone",
        help="without --weights: the backbone's weights entry (default: the builder's ImageNet entry; none: random)",
    )
    detection.add_argument("--trainable-backbone-layers", type=int, help="backbone stages to train (the rest frozen)")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (CUDA only)")
    p.add_argument("--sync-bn", action="store_true", help="synchronise batch norm statistics across processes")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (each torchrun process takes cuda:LOCAL_RANK)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_train)


def _per_process_batch(args: argparse.Namespace, world_size: int) -> int:
    if args.global_batch_size is None:
        return args.batch_size
    if args.global_batch_size < 1 or args.global_batch_size % world_size:
        raise CommandError(
            f"--global-batch-size {args.global_batch_size} does not split evenly over {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    return args.global_batch_size // world_size


def cmd_train(args: argparse.Namespace) -> int:
    from visionzoo.distributed import WorldError, choose_backend, device_for, init, shutdown, world_from_env
    from visionzoo.train.engine import TrainConfig, fit

    info = model_info(args.model)
    task_name = args.task or info.task
    if task_name != info.task:
        raise CommandError(f"{info.name} is a {info.task} model, not a {task_name} one (--task)")
    if task_name not in TRAINABLE:
        raise CommandError(f"train handles {', '.join(TRAINABLE)} models; {info.name} is a {task_name} model")
    try:
        world = world_from_env()
        device = device_for(world, device_of(args.device))
        world = choose_backend(world, device)
    except WorldError as error:
        raise CommandError(f"misconfigured torchrun world: {error}") from None
    batch_size = _per_process_batch(args, world.world_size)
    chosen = choose_weights(info.name, args.weights, default=None)
    chosen.check_trained_for()
    output_dir = args.output_dir or Path("runs") / info.name
    try:
        config = TrainConfig(
            model=info.name,
            output_dir=output_dir,
            epochs=args.epochs,
            batch_size=batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            momentum=args.momentum,
            nesterov=args.nesterov,
            weight_decay=args.weight_decay,
            norm_weight_decay=args.norm_weight_decay,
            warmup_epochs=args.warmup_epochs,
            warmup_factor=args.warmup_factor,
            label_smoothing=args.label_smoothing,
            clip_grad_norm=args.clip_grad_norm,
            amp=args.amp,
            channels_last=args.channels_last,
            sync_bn=args.sync_bn,
            ema_decay=args.ema_decay,
            ema_steps=args.ema_steps,
            eval_every=args.eval_every,
            workers=args.workers,
            seed=args.seed,
            device=str(device),
            resume=args.resume,
            stop_after=args.stop_after,
            quiet=args.quiet,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    init(world, device)
    try:
        task = _make_task(args, chosen, batch_size)
        fit(task, config, world, device)
    finally:
        shutdown()
    return 0


def _make_task(args: argparse.Namespace, chosen: ChosenWeights, batch_size: int) -> Any:
    if chosen.task == "detection":
        return _detection_task(args, chosen, batch_size)
    from visionzoo.train.classification import ClassificationTask

    crop = args.crop_size
    if crop < 1:
        raise CommandError(f"--crop-size must be positive, got {crop}")
    return ClassificationTask(
        model=chosen.model,
        weights=chosen.weights,
        train_dir=args.data,
        val_dir=args.val,
        crop_size=crop,
        resize_size=args.resize_size or round(crop / 0.875),
        batch_size=batch_size,
        workers=args.workers,
        label_smoothing=args.label_smoothing,
        builder_kwargs={**chosen.config, **({"dropout": args.dropout} if args.dropout is not None else {})},
    )


def _detection_task(args: argparse.Namespace, chosen: ChosenWeights, batch_size: int) -> Any:
    from visionzoo.train.detection import DetectionTask

    if args.annotations is None:
        raise CommandError("detection training needs --annotations FILE.json (COCO format) for the --data images")
    if args.val is not None and args.val_annotations is None:
        raise CommandError("--val with a detection model needs --val-annotations FILE.json")
    kwargs: dict[str, Any] = dict(chosen.config)
    for name in ("min_size", "max_size", "trainable_backbone_layers"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.weights_backbone is not None:
        kwargs["weights_backbone"] = None if args.weights_backbone.lower() == "none" else args.weights_backbone
    return DetectionTask(
        model=chosen.model,
        weights=chosen.weights,
        image_dir=args.data,
        annotations=args.annotations,
        val_dir=args.val,
        val_annotations=args.val_annotations,
        batch_size=batch_size,
        workers=args.workers,
        label_space=args.label_space,
        builder_kwargs=kwargs,
    )
