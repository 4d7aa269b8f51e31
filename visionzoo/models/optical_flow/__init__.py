"""Optical flow: RAFT (``raft_large``, ``raft_small``) and its parts, under the reference's module name.

Every model takes two float batches ``(N, 3, H, W)`` in [-1, 1] (H and W divisible by 8) and returns a list of flows
``(N, 2, H, W)``, one per refinement step; ``visionzoo.utils.flow_to_image`` colours a flow for viewing.
"""

from __future__ import annotations

from .raft import *  # noqa: F403
