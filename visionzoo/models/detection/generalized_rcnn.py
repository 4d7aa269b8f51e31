"""The two-stage detector's skeleton: transform, backbone, region proposals, RoI heads, back to image coordinates.

Faster, Mask and Keypoint R-CNN differ only in the modules they plug into :class:`GeneralizedRCNN`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .transform import check_targets_for_mode

__all__ = ["GeneralizedRCNN"]

Target = dict[str, torch.Tensor]


class GeneralizedRCNN(nn.Module):
    """Runs ``transform -> backbone -> rpn -> roi_heads -> transform.postprocess`` on a list of images.

    Args:
        backbone: the batch ``(N, C, H, W)`` to a feature map or an ordered dict of them.
        rpn: ``(images, features, targets) -> (proposals, losses)``.
        roi_heads: ``(features, proposals, image_sizes, targets) -> (detections, losses)``.
        transform: normalises, resizes and batches the images (a ``GeneralizedRCNNTransform``).
    """

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(
        self, images: list[torch.Tensor], targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor] | list[Target]:
        """Detect objects in ``images`` (a list of ``(C, H, W)`` float tensors in ``[0, 1]``, sizes may differ).

        Returns:
            In training (``targets`` required: one dict per image with float ``boxes`` ``(N, 4)`` as x1 y1 x2 y2
            and int64 ``labels`` ``(N,)``; ``N`` may be 0; plus ``masks`` ``(N, H, W)`` or ``keypoints``
            ``(N, K, 3)`` for Mask or Keypoint R-CNN), the dict of losses. In eval, one dict per image with
            ``boxes``, ``labels`` and ``scores`` (and ``masks`` ``(N, 1, H, W)``, or ``keypoints`` ``(N, K, 3)``
            and ``keypoints_scores``), in that image's own pixel coordinates.

        Raises:
            ValueError: training without targets, targets in eval mode, a malformed image or target (named by
                its index, and the bad box by its index).
            TypeError: images or targets of the wrong type.
        """
        check_targets_for_mode(self.training, targets)
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of (C, H, W) tensors, got {type(images).__name__}")
        original_image_sizes = [
            (image.shape[-2], image.shape[-1]) for image in images if isinstance(image, torch.Tensor)
        ]
        image_list, targets = self.transform(images, targets)  # validates images and targets
        features = self.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(image_list, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**detector_losses, **proposal_losses}
        return self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)
