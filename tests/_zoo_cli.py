"""``python tests/_zoo_cli.py ARGS``: the ``visionzoo`` command with the tiny test zoo (tests/_cli_zoo.py)
registered, for tests that start the command in other processes (torchrun). The checkpoints it writes go to a
scratch folder; the ones it loads come from ``VISIONZOO_WEIGHTS_DIR``, which the test fills with the same files.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pytest

    from tests._cli_zoo import install_zoo
    from visionzoo.cli import main

    with tempfile.TemporaryDirectory() as scratch:
        install_zoo(pytest.MonkeyPatch(), "http://127.0.0.1:9/unreachable", Path(scratch))
        sys.exit(main(sys.argv[1:]))
