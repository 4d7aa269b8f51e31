"""Read-only views of the registry shared by the command line and the docs generator.

Everything here is computed from the registry (``visionzoo.models._api``: each model's task and family, the
one list of tasks), so new families and tasks show up without code changes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visionzoo.models import WeightsEnum

# How metric keys stored in the weights' meta read in tables and cards, where the stored key reads poorly
# (the docs table, `visionzoo list --weights`, `visionzoo info`); other keys show as stored.
METRIC_HEADINGS = {
    "miou": "mIoU",
    "pixel_acc": "pixel accuracy",
    "box_map": "box mAP",
    "epe": "EPE",  # optical flow's end-point error, in pixels
    "per_image_epe": "per-image EPE",
    "fl_all": "Fl-all",  # KITTI's share of outlier pixels, in %
    "mask_map": "mask mAP",
    "kp_map": "keypoint mAP",
}


def metric_heading(key: str) -> str:
    """The readable name of a metric key: ``miou`` -> ``mIoU``, ``acc@1`` as it is."""
    return METRIC_HEADINGS.get(key, key)


def models_by_task(patterns: list[str] | None = None, task: str | None = None) -> list[tuple[str, str]]:
    """``(model, task)`` pairs of the registered models matching ``patterns`` (fnmatch) and ``task``.

    Raises:
        ValueError: ``task`` is not a known task (the message lists the valid ones).
    """
    from visionzoo.models import get_model_info, list_models

    include = [pattern.lower() for pattern in patterns] if patterns else None  # model names are lower case
    return [(name, get_model_info(name).task) for name in list_models(include=include, task=task)]


def entries_of(name: str) -> list[WeightsEnum]:
    """Every weights entry of a model (aliases such as DEFAULT not repeated); empty without weights."""
    from visionzoo.models import get_model_weights

    try:
        return list(get_model_weights(name))
    except ValueError:
        return []


def default_of(name: str) -> WeightsEnum | None:
    """The entry ``DEFAULT`` points to, or None."""
    from visionzoo.models import get_model_weights

    try:
        enum = get_model_weights(name)
    except ValueError:
        return None
    return enum.__members__.get("DEFAULT")


def flat_metrics(entry: WeightsEnum, *, with_dataset: bool = False) -> dict[str, float]:
    """An entry's metrics as ``{"acc@1": 80.858, ...}`` (keys prefixed by dataset when asked)."""
    flat: dict[str, float] = {}
    for dataset, metrics in entry.meta.get("_metrics", {}).items():
        for key, value in metrics.items():
            flat[f"{dataset} {key}" if with_dataset else key] = value
    return flat


def entry_facts(name: str, entry: WeightsEnum) -> dict[str, Any]:
    """The facts of one weights entry, as plain data (for ``--json`` and the docs)."""
    meta = entry.meta
    return {
        "weights": repr(entry),
        "default": entry is default_of(name),
        # NaN marks "no published figure"; JSON has no NaN, so it becomes null.
        "metrics": {
            dataset: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
            for dataset, metrics in meta.get("_metrics", {}).items()
        },
        "params": meta.get("num_params"),
        "gflops": meta.get("_ops"),
        "file_mb": meta.get("_file_size"),
        "file_name": entry.file_name,
        "url": entry.url,
        "recipe": meta.get("recipe"),
        "num_categories": len(meta.get("categories") or ()),
    }
