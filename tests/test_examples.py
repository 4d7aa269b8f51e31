"""The reference documentation's examples, run with ``torchvision`` replaced by ``visionzoo`` in the imports.

Each test keeps the example's lines as they are, except where it would need the network or a display:
random weights instead of a download, and ``save`` instead of ``show``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_semantic_segmentation_example(tmp_path):
    from visionzoo.io.image import decode_image
    from visionzoo.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50
    from visionzoo.transforms.functional import to_pil_image

    img = decode_image(str(ASSETS / "chelsea.jpg"))
    weights = FCN_ResNet50_Weights.DEFAULT
    model = fcn_resnet50(weights=None, weights_backbone=None)  # the example: weights=weights
    model.eval()
    preprocess = weights.transforms()
    batch = preprocess(img).unsqueeze(0)
    prediction = model(batch)["out"]
    normalized_masks = prediction.softmax(dim=1)
    class_to_idx = {cls: idx for (idx, cls) in enumerate(weights.meta["categories"])}
    mask = normalized_masks[0, class_to_idx["cat"]]
    to_pil_image(mask).save(tmp_path / "cat.png")  # the example: .show()

    with Image.open(tmp_path / "cat.png") as saved:
        assert saved.mode == "L"
        assert saved.size == (batch.shape[-1], batch.shape[-2])
