"""What the weight loading pipeline raises: one base class, then one class per way a checkpoint can fail."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """Base class of every error raised by the weight loading pipeline."""


class WeightsUnavailableError(WeightsError):
    """The checkpoint is not on disk and could not be downloaded.

    Attributes:
        file_name: the checkpoint's file name (None when the error is about a path given by the user).
        tried: one line per place that was tried, in order (what the message lists).
    """

    file_name: str | None = None
    tried: tuple[str, ...] = ()


class ChecksumError(WeightsError):
    """A checkpoint's sha256 digest does not start with the prefix promised by its file name."""


class CheckpointError(WeightsError, ValueError):
    """A checkpoint file cannot be loaded safely: corrupt, unsupported format, or unsafe pickle."""
