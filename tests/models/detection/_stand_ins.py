"""The reference's operators in place of ours that land in parallel (issue 29), until they are merged.

``visionzoo.ops.feature_pyramid_network``, ``visionzoo.ops.boxes`` and ``visionzoo.ops.poolers`` are written in
other branches; the detection pipeline imports them by their final names. Until they exist here, these tests
put the reference's modules under those names so that the pipeline can be checked now. Once the operators are
merged, the imports succeed and nothing is stood in.
"""

from __future__ import annotations

import importlib
import sys

from tests import reference

_STAND_INS = {
    "feature_pyramid_network": reference.ops.feature_pyramid_network,
    "boxes": reference.ops.boxes,
    "poolers": reference.ops.poolers,
}


def install() -> None:
    """Stand in the reference's module for each of our operator modules that is not there yet."""
    import visionzoo.ops

    for name, theirs in _STAND_INS.items():
        ours = f"visionzoo.ops.{name}"
        try:
            importlib.import_module(ours)
        except ModuleNotFoundError as error:
            if error.name != ours:
                raise
            sys.modules[ours] = theirs
            setattr(visionzoo.ops, name, theirs)
