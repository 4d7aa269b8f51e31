"""The one place in the project that imports torchvision: the test oracle.

Every parity test reaches the reference through this module, so the dependency stays visible and small.
"""

from __future__ import annotations

import importlib

import torchvision  # noqa: F401  (oracle only; the visionzoo package never imports it)
import torchvision.io as io  # noqa: F401
import torchvision.models as models  # noqa: F401
import torchvision.models.feature_extraction as feature_extraction  # noqa: F401
import torchvision.ops as ops  # noqa: F401
import torchvision.transforms as transforms  # noqa: F401
import torchvision.transforms.functional as functional  # noqa: F401
import torchvision.utils as utils  # noqa: F401


def list_models_of_task(task: str) -> list[str]:
    """The reference's builders of one of our tasks: those of its package for that task (``torchvision.models``
    itself for classification, ``torchvision.models.<task>`` otherwise, e.g. ``quantization``)."""
    package = models if task == "classification" else importlib.import_module(f"torchvision.models.{task}")
    return models.list_models(module=package)


def flow_file_readers() -> object:
    """The reference's private readers of flow files (``_read_flo``, ``_read_16bits_png_with_flow_and_valid_mask``),
    imported on first use: its datasets package is slow to import."""
    return importlib.import_module("torchvision.datasets._optical_flow")


def video_clip_sampling() -> tuple[type, type]:
    """The reference's clip index computation and its evaluation sampler: ``(VideoClips, UniformClipSampler)``,
    imported on first use (its datasets package is slow to import)."""
    video_utils = importlib.import_module("torchvision.datasets.video_utils")
    samplers = importlib.import_module("torchvision.datasets.samplers")
    return video_utils.VideoClips, samplers.UniformClipSampler
