"""Object detection: the R-CNN pipeline pieces every detector shares, under the reference's module names, and the
detectors built on them.

``transform`` (resize, normalise, batch), ``anchor_utils`` (anchors), ``_utils`` (box coding, matching,
sampling), ``backbone_utils`` (classification backbones with a feature pyramid), ``rpn`` and ``roi_heads`` (the two
stages), ``generalized_rcnn`` (the pipeline). Every detector takes a list of ``(3, H, W)`` images in ``[0, 1]``.
"""

from __future__ import annotations

from .faster_rcnn import *  # noqa: F403
from .fcos import *  # noqa: F403
from .keypoint_rcnn import *  # noqa: F403
from .mask_rcnn import *  # noqa: F403
from .retinanet import *  # noqa: F403
from .ssd import *  # noqa: F403
from .ssdlite import *  # noqa: F403
