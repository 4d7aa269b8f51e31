"""Datasets for fine-tuning: an image-folder reader for classification (``folder``).

Each dataset yields decoded ``uint8`` CHW tensors through ``visionzoo.io``; transforms are the caller's.
"""

from __future__ import annotations

from .folder import ImageFolder

__all__ = ["ImageFolder"]
