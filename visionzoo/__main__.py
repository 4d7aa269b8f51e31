"""``python -m visionzoo``: the same as the ``visionzoo`` command."""

import sys

from visionzoo.cli import main

sys.exit(main())
