"""Top-k accuracy of classifiers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """How many rows of ``logits`` rank their label among their ``k`` highest scores, for each ``k``.

    Args:
        logits: ``(N, C)`` scores (logits or probabilities: only their order counts).
        labels: ``(N,)`` integer class indices.
        ks: the ``k`` values; a ``k`` above ``C`` counts as ``C``.

    Raises:
        ValueError: the shapes do not fit, or a label is not a class index.
    """
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"topk_hits: expected logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"topk_hits: labels must lie in 0..{logits.shape[1] - 1}")
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    correct = ranked == labels[:, None].to(ranked.device)
    return {k: int(correct[:, :k].any(dim=1).sum()) for k in ks}
