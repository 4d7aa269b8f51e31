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


def test_object_detection_example(tmp_path):
    from visionzoo.io.image import decode_image
    from visionzoo.models.detection import FasterRCNN_ResNet50_FPN_V2_Weights, fasterrcnn_resnet50_fpn_v2
    from visionzoo.transforms.functional import to_pil_image
    from visionzoo.utils import draw_bounding_boxes

    img = decode_image(str(ASSETS / "coffee.jpg"))
    weights = FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT
    # the example: weights=weights (random weights here: no checkpoint can be fetched; they find nothing above 0.9)
    model = fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, box_score_thresh=0.9)
    model.eval()
    preprocess = weights.transforms()
    batch = [preprocess(img)]
    prediction = model(batch)[0]
    labels = [weights.meta["categories"][i] for i in prediction["labels"]]
    box = draw_bounding_boxes(img, boxes=prediction["boxes"], labels=labels, colors="red", width=4, font_size=30)
    im = to_pil_image(box.detach())
    im.save(tmp_path / "boxes.png")  # the example: im.show()

    assert len(labels) == len(prediction["boxes"])
    with Image.open(tmp_path / "boxes.png") as saved:
        assert saved.size == (img.shape[-1], img.shape[-2])
