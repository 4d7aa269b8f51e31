"""``--optimize`` and ``--dtype`` for ``benchmark`` and ``predict``: ``optimize_for_inference`` with progress on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ._common import CommandError

DTYPE_CHOICES = ("float32", "bfloat16", "auto")


def add_dtype_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--dtype`` (used with ``--optimize``)."""
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        help="with --optimize: the precision of the computation (default float32). bfloat16 runs convolutions "
        "and matrix products in bfloat16 (outputs stay float32) and is refused when it changes the top-1 on the "
        "first input; auto picks bfloat16 where the CPU multiplies it in hardware (AMX, AVX-512 BF16)",
    )


_PACKAGE_HELP = (
    "an AOTInductor package of the compiled model (in $VISIONZOO_COMPILED_DIR, default "
    "$TORCH_HOME/hub/visionzoo_compiled), loaded by later runs with the same model, weights, input size and "
    "--dtype, which then start in seconds instead of compiling"
)


def add_package_argument(p: argparse.ArgumentParser, default: bool) -> None:
    """Add ``--package`` (``default`` False) or ``--no-package`` (``default`` True), used with ``--optimize``;
    ``args.package`` is None when the flag is not given."""
    if default:
        p.add_argument(
            "--no-package",
            dest="package",
            action="store_const",
            const=False,
            help=f"with --optimize: compile in this process only, without keeping (or loading) {_PACKAGE_HELP}",
        )
    else:
        p.add_argument(
            "--package", action="store_const", const=True, help=f"with --optimize: build or load {_PACKAGE_HELP}"
        )


def check_dtype(args: argparse.Namespace) -> None:
    """Refuse ``--dtype`` and ``--package`` without ``--optimize``, before any work."""
    if args.dtype is not None and not args.optimize:
        raise CommandError("--dtype applies to the optimised model: add --optimize")
    if args.package is not None and not args.optimize:
        flag = "--package" if args.package else "--no-package"
        raise CommandError(f"{flag} applies to the optimised model: add --optimize")


def note(message: str, quiet: bool = False) -> None:
    """A progress message on stderr."""
    if not quiet:
        print(f"visionzoo: {message}", file=sys.stderr, flush=True)


def optimise(
    model: Any, example: Any, *, name: str, dtype: str | None, compile: bool = True, quiet: bool = False, **options: Any
) -> tuple[Any, dict[str, Any]]:
    """``optimize_for_inference(model, example, ...)`` with a message before and after on stderr.

    Returns:
        The optimised model and what was done: ``compiled``, ``dtype``, ``compile_seconds`` (None when not
        compiled), ``max_deviation`` (from float32 on ``example``), ``folded_conv_bn``, ``optimize_seconds``.

    Raises:
        CommandError: bfloat16 changes the top-1 on ``example`` (the message has the numbers).
    """
    from visionzoo.inference import optimize_for_inference

    precision = dtype or "float32"
    if compile:
        note(f"optimising {name} for inference ({precision}); compiling takes tens of seconds the first time...", quiet)
    start = time.perf_counter()
    try:
        fast = optimize_for_inference(model, example, compile=compile, dtype=precision, **options)
    except RuntimeError as error:
        if "top-1" in str(error):
            raise CommandError(f"--dtype {precision}: {error}") from None
        raise
    seconds = time.perf_counter() - start
    how = {
        "method": "optimize_for_inference",
        "compiled": fast.compiled,
        "ahead_of_time": fast.ahead_of_time,
        "dtype": str(fast.dtype).removeprefix("torch."),
        "compile_seconds": fast.compile_seconds,
        "max_deviation": fast.max_deviation,
        "package": fast.package,
        "reused_package": fast.reused_package,
        "folded_conv_bn": fast.folded,
        "optimize_seconds": seconds,
    }
    if compile:
        if fast.compile_seconds is None:
            done = "not compiled (see the warning above)"
        else:
            kept = "" if fast.compiled else ", but the eager model ran faster on this input and is kept"
            verb = "compiled"
            if fast.reused_package:
                verb = "loaded the compiled package"
            elif fast.package is not None:
                verb = "compiled ahead of time (an AOTInductor package)"
            elif fast.ahead_of_time:
                verb = "compiled ahead of time (AOTInductor, faster here than in-process)"
            done = f"{verb} in {fast.compile_seconds:.1f} s{kept}"
        deviation = (
            f", largest deviation from float32 {fast.max_deviation:.2g}" if fast.max_deviation is not None else ""
        )
        note(f"{done} ({seconds:.1f} s in all, with the output check; {how['dtype']}{deviation})", quiet)
    return fast, how


# Tasks whose models ``predict --optimize`` runs through optimize_for_inference.
OPTIMIZABLE_TASKS = ("classification", "segmentation")


class OptimisedOnFirstBatch:
    """A model that is optimised (``optimise``) on the first batch it is called with, ``predict``'s first batch.

    A later, smaller batch of inputs of the same size is padded with zeros to the first batch's size, and its
    outputs cut back: the compiled model is specialised on its input shape, and a last partial batch would
    otherwise compile again. Inputs of another size (segmentation presets keep each image's aspect ratio)
    compile once per size. ``how`` says what was done, once it has been.
    """

    def __init__(self, model: Any, *, name: str, dtype: str | None, quiet: bool, package: bool = False) -> None:
        self.model, self.name, self.dtype, self.quiet, self.package = model, name, dtype, quiet, package
        self.fast: Any = None
        self.shape: tuple[int, ...] = ()
        self.how: dict[str, Any] | None = None

    def __call__(self, x: Any) -> Any:
        import torch

        if self.fast is None:
            self.fast, self.how = optimise(
                self.model, x, name=self.name, dtype=self.dtype, quiet=self.quiet, package=self.package
            )
            self.shape = tuple(x.shape)
        missing = self.shape[0] - x.shape[0]
        if missing <= 0 or tuple(x.shape[1:]) != self.shape[1:]:
            return self.fast(x)
        out = self.fast(torch.cat([x, x.new_zeros((missing, *x.shape[1:]))]))
        if isinstance(out, dict):
            return {k: v[: x.shape[0]] for k, v in out.items()}
        return out[: x.shape[0]]
