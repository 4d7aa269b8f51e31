"""Inference presets and the image operations behind them (``visionzoo.transforms.functional``).

PIL is imported only when a PIL image is handled, so importing this package stays cheap.
"""

from __future__ import annotations

from . import functional
from .functional import InterpolationMode
from .presets import ImageClassification, ObjectDetection, OpticalFlow, SemanticSegmentation, VideoClassification

__all__ = [
    "ImageClassification",
    "InterpolationMode",
    "ObjectDetection",
    "OpticalFlow",
    "SemanticSegmentation",
    "VideoClassification",
    "functional",
]
