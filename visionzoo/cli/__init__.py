"""The ``visionzoo`` command line: find, fetch, inspect, try and measure models without writing code.

One module per command group (``catalog``: list/info/docs; ``weights``: download/verify/convert;
``predict``; ``validate``; ``benchmark``; ``train``; ``export``); each adds its subcommands with ``register``. Heavy libraries
(torch, PIL, tqdm, matplotlib) are imported inside the commands, so ``visionzoo --help`` stays fast.

Errors print one line on stderr (``visionzoo: error: ...``), never a traceback, and the exit status follows
one convention (:data:`EXIT_STATUS`): 2 when the command line is wrong (an unknown name, a bad flag value, a
path that does not exist or a checkpoint that does not fit the model), 1 when the work fails (weights that
cannot be had, an unreadable input, a runtime error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import benchmark, catalog, export, predict, train, validate, weights
from ._common import CommandError, one_line, unavailable
from .catalog import model_card

__all__ = ["main", "build_parser", "CommandError", "model_card"]

_COMMAND_GROUPS = (catalog, weights, predict, validate, benchmark, train, export)


EXIT_STATUS = (
    "exit status: 0 success; 1 a failure while working (weights that cannot be had, an unreadable input, a "
    "runtime error); 2 a usage error (an unknown name, a bad flag value, a missing path, a checkpoint that does "
    "not fit the model); 130 interrupted"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from visionzoo import __version__

    parser = argparse.ArgumentParser(
        prog="visionzoo", description="Pretrained vision models for PyTorch.", epilog=EXIT_STATUS
    )
    parser.add_argument("--version", action="version", version=f"visionzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionzoo`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as error:
        return _fail(str(error), error.status)
    except KeyboardInterrupt:
        print("visionzoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `visionzoo list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:  # a one-line report instead of a traceback, as promised above
        from visionzoo.hub import WeightsUnavailableError

        if isinstance(error, WeightsUnavailableError):
            return _fail(str(unavailable(error)), 1)
        if isinstance(error, (ValueError, TypeError, FileNotFoundError)):  # bad input, named in the message
            return _fail(one_line(error), 2)
        return _fail(f"{type(error).__name__}: {one_line(error)}", 1)


def _fail(message: str, status: int) -> int:
    print(f"visionzoo: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
