"""RegNet's design space: from the paper's six design parameters to per-stage settings.

Radosavovic et al., "Designing Network Design Spaces" (2020), section 3.3. Plain Python (no tensors), so that
models build on the ``meta`` device; the arithmetic reproduces the float32 computation the published
configurations were derived with. :class:`BlockParams` is re-exported by ``visionzoo.models.regnet``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from itertools import groupby

from ._utils import make_divisible

__all__ = ["BlockParams"]

_WIDTH_QUANTUM = 8  # block widths are multiples of 8 (the paper's q)
_STAGE_STRIDE = 2


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 (ties to even), as a float32 tensor would hold it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _quantized_linear_widths(depth: int, w_0: float, w_a: float, w_m: float) -> list[int]:
    """The width of each of ``depth`` blocks under the paper's quantized linear rule (eqs. 2-4).

    Block ``j`` has the linear width ``u_j = w_0 + w_a * j``; its step ``s_j = round(log_{w_m}(u_j / w_0))``
    puts it on the geometric grid ``w_0 * w_m**s_j``, which is then rounded to a multiple of 8.

    The official configurations were computed in float32, and that rounding decides the exact ties of the last
    step that decimal ``w_m`` produce often (e.g. 120 * 2.1 / 8 = 31.5 is 31.4999... in float32, so 248 rather
    than 256). Every intermediate value is therefore rounded to float32 here as well (one float64 operation
    rounded to float32 equals the float32 operation for + - * /); Python's ``round`` breaks ties to even, like a
    float32 tensor's. Only a step within one float32 ulp of a half-integer (``w_m = 2.25`` with
    ``u_j / w_0 = 1.5``) can still differ, as the reference's answer there hangs on its libm's last bit.
    """
    f = _float32
    w0, wa, wm, log_wm = f(w_0), f(w_a), f(w_m), f(math.log(w_m))
    widths = []
    for j in range(depth):
        linear = f(f(j * wa) + w0)
        step = round(f(f(math.log(f(linear / w0))) / log_wm))
        widths.append(round(f(w0 * f(wm**step)) / _WIDTH_QUANTUM) * _WIDTH_QUANTUM)
    return widths


@dataclass
class BlockParams:
    """Per-stage settings of a RegNet: one entry per stage in each list.

    Build it from the paper's design parameters with :meth:`from_init_params`, or spell out the stages.
    ``se_ratio`` (None or 0 for RegNetX) sizes the Squeeze-and-Excitation bottleneck relative to each block's
    input width.

    Raises:
        ValueError: the lists differ in length.
    """

    depths: list[int]
    widths: list[int]
    group_widths: list[int]
    bottleneck_multipliers: list[float]
    strides: list[int]
    se_ratio: float | None = None

    def __post_init__(self) -> None:
        names = ("depths", "widths", "group_widths", "bottleneck_multipliers", "strides")
        lengths = {name: len(getattr(self, name)) for name in names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"BlockParams needs one entry per stage in every list, got lengths {lengths}")

    @classmethod
    def from_init_params(
        cls,
        depth: int,
        w_0: int,
        w_a: float,
        w_m: float,
        group_width: int,
        bottleneck_multiplier: float = 1.0,
        se_ratio: float | None = None,
    ) -> BlockParams:
        """Derive the stages from the RegNet design parameters.

        Args:
            depth: total number of blocks.
            w_0: initial width (a positive multiple of 8).
            w_a: slope of the linear widths (>= 0).
            w_m: ratio between consecutive stage widths (> 1).
            group_width: channels per group of the 3x3 convolutions (capped by each stage's bottleneck width).
            bottleneck_multiplier: bottleneck width / block width.
            se_ratio: Squeeze-and-Excitation ratio (RegNetY uses 0.25), or None.

        Raises:
            ValueError: a parameter outside the ranges above.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        if w_0 <= 0 or w_0 % _WIDTH_QUANTUM != 0:
            raise ValueError(f"w_0 must be a positive multiple of {_WIDTH_QUANTUM}, got {w_0!r}")
        if w_a < 0:
            raise ValueError(f"w_a must be >= 0, got {w_a!r}")
        if w_m <= 1:
            raise ValueError(f"w_m must be > 1, got {w_m!r}")
        if group_width < 1:
            raise ValueError(f"group_width must be >= 1, got {group_width!r}")
        if bottleneck_multiplier <= 0:
            raise ValueError(f"bottleneck_multiplier must be > 0, got {bottleneck_multiplier!r}")

        # Consecutive blocks of equal width form a stage (the widths never decrease).
        stages = [(width, len(list(run))) for width, run in groupby(_quantized_linear_widths(depth, w_0, w_a, w_m))]

        # Make each bottleneck width a multiple of its group width, then map back to the block width.
        widths, group_widths = [], []
        for width, _ in stages:
            bottleneck = int(width * bottleneck_multiplier)
            if bottleneck < 1:
                raise ValueError(
                    f"bottleneck_multiplier={bottleneck_multiplier} leaves a stage of width {width} without channels"
                )
            stage_group_width = min(group_width, bottleneck)
            widths.append(int(make_divisible(bottleneck, stage_group_width) / bottleneck_multiplier))
            group_widths.append(stage_group_width)

        count = len(stages)
        return cls(
            depths=[blocks for _, blocks in stages],
            widths=widths,
            group_widths=group_widths,
            bottleneck_multipliers=[bottleneck_multiplier] * count,
            strides=[_STAGE_STRIDE] * count,
            se_ratio=se_ratio,
        )
