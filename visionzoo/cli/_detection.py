"""``visionzoo predict`` for object detection: per image, the detected objects (class, score, box) and a PNG of
the picture with their boxes and labels drawn. Detectors that also predict instance masks (Mask R-CNN) or
keypoints (Keypoint R-CNN) get them reported and drawn too: each instance's mask (thresholded at 0.5) in a colour
of its own, or its keypoints joined into a skeleton.

The predictor plugs into :mod:`visionzoo.cli.predict` (see its ``PREDICTORS``); PIL and torch are imported
inside the functions, so that ``visionzoo --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._segmentation import class_colour, class_name

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .predict import Batch, Results, Session

# Used when the user gives no --threshold: a random or weak detector scores thousands of boxes a little
# above zero, and 0.5 is the usual cut for showing a trained detector's findings.
DEFAULT_THRESHOLD = 0.5
BOX_WIDTH = 3
MASK_THRESHOLD = 0.5  # a mask pixel belongs to the instance where its probability reaches this
MASK_ALPHA = 0.5
KEYPOINT_RADIUS = 3
SKELETON_WIDTH = 2


def detect(session: Session, batch: Batch) -> Results:
    """Each image's detections with a score of at least ``--threshold`` (highest first, at most ``--topk``), and
    the path of the PNG drawn for it.

    Detection models take a list of images and resize each one themselves, so a batch of any sizes is one
    forward; the boxes come back in the coordinates of the images as read.
    """
    args = session.args
    names = _category_names(session)
    outputs = session.model([tensor.to(session.device) for tensor in batch.inputs])
    results = []
    for path, image, output in zip(batch.paths, batch.images, outputs):
        scores = output["scores"].float().cpu()
        order = scores.argsort(descending=True, stable=True)
        order = order[scores[order] >= args.threshold][: args.topk]
        boxes = output["boxes"].float().cpu()[order]
        labels = output["labels"].cpu()[order].tolist()
        detections = [
            {
                "label": class_name(index, names),
                "index": index,
                "score": round(score, 4),
                "box": [round(v, 1) for v in box],
            }
            for index, score, box in zip(labels, scores[order].tolist(), boxes.tolist())
        ]
        masks = keypoints = None
        if "masks" in output:
            masks = output["masks"][order, 0].float().cpu() >= MASK_THRESHOLD
            for item, mask in zip(detections, masks):
                item["mask_pixels"] = int(mask.sum())
        if "keypoints" in output:
            keypoints = output["keypoints"][order].float().cpu()
            point_scores = output["keypoints_scores"][order].float().cpu()
            for item, points, point_score in zip(detections, keypoints.tolist(), point_scores.tolist()):
                item["keypoints"] = [
                    [round(x, 1), round(y, 1), round(v, 3)] for (x, y, _), v in zip(points, point_score)
                ]
        picture = session.pictures.next_path(path)
        draw_picture(image, boxes, detections, masks=masks, keypoints=keypoints).save(picture, format="PNG")
        results.append({"image": path, "picture": str(picture), "detections": detections})
    return results


# Where each kind of detector keeps the number of classes it scores: a submodule path and its attribute. A new
# kind of detector adds its line here.
SCORED_CLASSES = (
    ("roi_heads.box_predictor.cls_score", "out_features"),  # Faster, Mask and Keypoint R-CNN
    ("head.classification_head", "num_classes"),  # RetinaNet, FCOS, SSD, SSDlite
)


def scored_classes(model: torch.nn.Module) -> int | None:
    """How many classes ``model`` scores, read where its kind of detector keeps it (None if unknown)."""
    if isinstance(getattr(model, "scored_classes", None), int):  # an ExportedDetector
        return model.scored_classes
    for path, attribute in SCORED_CLASSES:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


def exported_detector(program: torch.nn.Module, size: tuple[int, int], scored: int | None) -> torch.nn.Module:
    """A detector exported at one image size (``visionzoo export``; ``program`` is ``ExportedProgram.module()``) as
    a model that takes images of any size: each image is resized to ``size`` (height, width), run alone, and its
    boxes, keypoints and masks are mapped back to the image's own size. ``scored`` is the number of classes."""
    import torch
    from torch.nn import functional as F

    class ExportedDetector(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.program = program
            self.scored_classes = scored

        def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
            outputs = []
            for image in images:
                height, width = image.shape[-2:]
                same = (height, width) == tuple(size)
                if not same:
                    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
                output = dict(self.program([image])[0])
                scale_x, scale_y = width / size[1], height / size[0]
                output["boxes"] = output["boxes"] * output["boxes"].new_tensor([scale_x, scale_y] * 2)
                if "keypoints" in output:
                    output["keypoints"] = output["keypoints"] * output["keypoints"].new_tensor([scale_x, scale_y, 1])
                if "masks" in output and not same and output["masks"].shape[0]:
                    output["masks"] = F.interpolate(output["masks"], size=(height, width), mode="bilinear")
                outputs.append(output)
            return outputs

    return ExportedDetector()


def _category_names(session: Session) -> list[str]:
    """The weights' category names when the model scores as many classes (else none: by index)."""
    return session.categories if scored_classes(session.model) == len(session.categories) else []


def draw_picture(
    image: torch.Tensor,
    boxes: torch.Tensor,
    detections: list[dict[str, Any]],
    *,
    masks: torch.Tensor | None = None,
    keypoints: torch.Tensor | None = None,
) -> Image.Image:
    """``image`` with a box and a ``"name 0.93"`` label per detection, coloured by class.

    With ``masks`` (``(N, H, W)`` bool) or ``keypoints`` (``(N, K, 3)``), each instance gets a colour of its own
    instead (several instances of one class must stay apart): its mask blended over the image, or its keypoints
    as discs joined by white lines (the COCO person skeleton when there are its 17 keypoints).
    """
    import torch
    from PIL import Image

    from visionzoo.transforms.functional import convert_image_dtype
    from visionzoo.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

    image = convert_image_dtype(image, torch.uint8)  # 16-bit PNGs are read as uint16
    if not detections:
        return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    per_instance = masks is not None or keypoints is not None
    colours = [class_colour(i + 1 if per_instance else item["index"]) for i, item in enumerate(detections)]
    if masks is not None:
        image = draw_segmentation_masks(image, masks, alpha=MASK_ALPHA, colors=colours)
    if keypoints is not None:
        from visionzoo.models._meta import _COCO_PERSON_SKELETON

        skeleton = _COCO_PERSON_SKELETON if keypoints.shape[1] == 17 else None
        for points, colour in zip(keypoints, colours):
            image = draw_keypoints(image, points[None], skeleton, colour, radius=KEYPOINT_RADIUS, width=SKELETON_WIDTH)
    image = draw_bounding_boxes(
        image,
        boxes,
        labels=[f"{item['label']} {item['score']:.2f}" for item in detections],
        colors=colours,
        width=BOX_WIDTH,
    )
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def show_detection(results: Results) -> None:
    """Print each image, the picture drawn for it, and its detections: ``label score [x1, y1, x2, y2]``."""
    for result in results:
        print(f"{result['image']} -> {result['picture']}")
        if not result["detections"]:
            print("  (no detection above the threshold)")
        width = max((len(item["label"]) for item in result["detections"]), default=0)
        for item in result["detections"]:
            box = ", ".join(f"{v:.1f}" for v in item["box"])
            extra = f"  mask {item['mask_pixels']} px" if "mask_pixels" in item else ""
            if "keypoints" in item:
                extra += f"  {len(item['keypoints'])} keypoints"
            print(f"  {item['label']:<{width}}  {item['score']:.4f}  [{box}]{extra}")
