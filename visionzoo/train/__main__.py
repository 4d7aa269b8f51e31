"""``python -m visionzoo.train ...`` is ``visionzoo train ...`` (handy under ``torchrun``, which runs a module)."""

from __future__ import annotations

import sys

from visionzoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
