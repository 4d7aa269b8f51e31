"""COCO results and mAP: coco_results / coco_evaluate against pycocotools' COCOeval run here on the same
predictions, built independently of visionzoo.metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._coco import TinyCoco, cocoeval_stats, make_tiny_coco
from visionzoo.datasets import CocoDetection, load_coco_annotations
from visionzoo.metrics.coco import (
    STAT_NAMES,
    CocoEvaluator,
    coco_evaluate,
    coco_results,
    merge_results,
    write_coco_results,
)

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCoco:
    return make_tiny_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def dataset(tiny: TinyCoco) -> CocoDetection:
    return CocoDetection(tiny.image_dir, tiny.annotation_file)


def _predictions(dataset: CocoDetection, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Outputs in the models' format: the ground truth moved a little, some labels wrong, false alarms added,
    mask probabilities and keypoints with noise; a background label too (it has no COCO category)."""
    generator = torch.Generator().manual_seed(seed)
    outputs = []
    for index in range(len(dataset)):
        image, target = dataset[index]
        height, width = image.shape[1:]
        k = len(target["boxes"])
        boxes = target["boxes"] + 4 * torch.randn(k, 4, generator=generator)
        labels = target["labels"].clone()
        if k > 1:
            labels[-1] = 18 if labels[-1] != 18 else 3
        extra = torch.tensor([[2.0, 2.0, 30.0, 24.0], [20.0, 30.0, 60.0, 62.0], [0.0, 0.0, 10.0, 10.0]])
        boxes = torch.cat([boxes, extra]).clamp(min=0)
        labels = torch.cat([labels, torch.tensor([1, 3, 0])])
        scores = torch.rand(len(boxes), generator=generator)
        masks = torch.cat([target["masks"].float(), torch.zeros(3, height, width)])
        masks = (0.7 * masks + 0.4 * torch.rand(masks.shape, generator=generator))[:, None]
        points = torch.cat([target["keypoints"], torch.zeros(3, 17, 3)])
        points[..., :2] += 2 * torch.randn(points[..., :2].shape, generator=generator)
        points[..., 2] = 1
        outputs.append({"boxes": boxes, "labels": labels, "scores": scores, "masks": masks, "keypoints": points})
    return outputs


def _expected(stats: list[float], iou_type: str) -> dict[str, float | None]:
    return {name: None if v < 0 else pytest.approx(100 * v) for name, v in zip(STAT_NAMES[iou_type], stats)}


def _independent_results(dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]], iou_type: str) -> list:
    """The same predictions as COCO results for one IoU type, written out here from the format's definition."""
    category = {1: 1, 3: 2, 18: 5}
    results = []
    for index, output in enumerate(outputs):
        image_id = dataset.image_ids[index]
        for i in range(len(output["boxes"])):
            label = int(output["labels"][i])
            if label not in category:
                continue
            item = {"image_id": image_id, "category_id": category[label], "score": float(output["scores"][i])}
            x1, y1, x2, y2 = output["boxes"][i].tolist()
            if iou_type == "bbox":
                item["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            elif iou_type == "segm":
                binary = (output["masks"][i, 0] > 0.5).numpy().astype(np.uint8)
                item["segmentation"] = mask_utils.encode(np.asfortranarray(binary))
            else:
                item["keypoints"] = output["keypoints"][i].flatten().tolist()
            results.append(item)
    return results


@pytest.fixture(scope="module")
def outputs(dataset: CocoDetection) -> list[dict[str, torch.Tensor]]:
    return _predictions(dataset)


def test_results_format(dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]]) -> None:
    results = coco_results(outputs, dataset.image_ids, label_to_category_id=dataset.label_to_category_id)
    assert len(results) == sum(int((o["labels"] != 0).sum()) for o in outputs)  # the background row has no category
    first = results[0]
    assert set(first) == {"image_id", "category_id", "bbox", "score", "segmentation", "keypoints"}
    x1, y1, x2, y2 = outputs[0]["boxes"][0].tolist()
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert first["category_id"] == 1 and first["image_id"] == 1
    decoded = mask_utils.decode({**first["segmentation"], "counts": first["segmentation"]["counts"].encode()})
    assert np.array_equal(decoded, (outputs[0]["masks"][0, 0] > 0.5).numpy())
    assert first["keypoints"] == pytest.approx(outputs[0]["keypoints"][0].flatten().tolist())
    assert {r["category_id"] for r in results} == {1, 2, 5}
    json.dumps(results)  # the results are JSON as they are


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_evaluate_matches_cocoeval(
    tiny: TinyCoco, dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]], iou_type: str
) -> None:
    ours = coco_results(outputs, dataset.image_ids, label_to_category_id=dataset.label_to_category_id)
    stats = coco_evaluate(dataset, ours, (iou_type,))
    direct = cocoeval_stats(tiny.annotation_file, _independent_results(dataset, outputs, iou_type), iou_type)
    assert stats == {iou_type: _expected(direct, iou_type)}
    assert 0 < stats[iou_type]["AP"] < 100 and stats[iou_type]["APl"] is None  # no large object in tiny images


def test_keypoints_match_cocoeval(tiny: TinyCoco, outputs: list[dict[str, torch.Tensor]]) -> None:
    people = CocoDetection(tiny.image_dir, tiny.keypoint_file)
    person_outputs = [{k: v[o["labels"] == 1] for k, v in o.items()} for o in outputs]
    ours = coco_results(person_outputs, people.image_ids, label_to_category_id=people.label_to_category_id)
    stats = coco_evaluate(tiny.keypoint_file, ours, ("keypoints",))
    direct = cocoeval_stats(tiny.keypoint_file, _independent_results(people, person_outputs, "keypoints"), "keypoints")
    assert stats == {"keypoints": _expected(direct, "keypoints")}
    assert len(stats["keypoints"]) == 10 and stats["keypoints"]["AP"] > 0
    # a file that also lists categories without keypoints: only those with keypoints are scored
    assert coco_evaluate(tiny.annotation_file, ours, ("keypoints",)) == stats


def test_results_file_subset_and_all_types(
    tiny: TinyCoco, dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    ours = coco_results(outputs, dataset.image_ids, label_to_category_id=dataset.label_to_category_id)
    path = write_coco_results(ours, tmp_path / "out" / "results.json")
    subset = [r for r in ours if r["image_id"] in (1, 3)]
    stats = coco_evaluate(tiny.annotation_file, path, ("bbox", "segm"), image_ids=[1, 3])
    assert stats["bbox"] == coco_evaluate(load_coco_annotations(tiny.annotation_file), subset, image_ids=[1, 3])["bbox"]
    direct = cocoeval_stats(tiny.annotation_file, _independent_results(dataset, outputs, "bbox"), "bbox", [1, 3])
    assert stats["bbox"] == _expected(direct, "bbox")


def test_evaluator_and_empty_results(dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]]) -> None:
    evaluator = CocoEvaluator(dataset, ("bbox", "segm"))
    for start in (0, 2):
        targets = [dataset[i][1] for i in range(start, start + 2)]
        evaluator.update(outputs[start : start + 2], targets)
    ours = coco_results(outputs, dataset.image_ids, label_to_category_id=dataset.label_to_category_id)
    assert evaluator.evaluate() == coco_evaluate(dataset, ours, ("bbox", "segm"))
    nothing = coco_evaluate(dataset, [], ("bbox",))["bbox"]
    assert nothing["AP"] == 0.0 and nothing["AR100"] == 0.0 and nothing["APl"] is None
    with pytest.raises(ValueError, match="no image was evaluated"):
        CocoEvaluator(dataset).evaluate()


def test_errors(dataset: CocoDetection, outputs: list[dict[str, torch.Tensor]], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="iou_types must be some of bbox, segm, keypoints"):
        coco_evaluate(dataset, [], ("boxes",))
    boxes_only = coco_results([{k: outputs[0][k] for k in ("boxes", "labels", "scores")}], [1])
    with pytest.raises(ValueError, match="segm evaluation needs 'segmentation'"):
        coco_evaluate(dataset, boxes_only, ("segm",))
    with pytest.raises(ValueError, match="2 outputs but 1 image ids"):
        coco_results(outputs[:2], [1])
    with pytest.raises(ValueError, match="lacks scores"):
        coco_results([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [1])
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(N, 4\)"):
        coco_results([{"boxes": torch.zeros(3), "labels": torch.zeros(3), "scores": torch.zeros(3)}], [1])
    no_masks = tmp_path / "no_masks.json"
    data = json.loads(dataset.annotation_file.read_text())
    data["annotations"][3].pop("segmentation")
    no_masks.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation 4 \(image 2\) has none"):
        coco_evaluate(no_masks, coco_results(outputs[1:2], [2]), ("segm",))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: cannot read COCO results"):
        coco_evaluate(dataset, bad)
    with pytest.raises(TypeError, match="coco_gt must be"):
        coco_evaluate(42, [])


def test_merge_results_counts_each_image_once() -> None:
    first = ([{"image_id": 1, "score": 0.9}, {"image_id": 3, "score": 0.8}], [1, 3])
    second = ([{"image_id": 2, "score": 0.7}, {"image_id": 1, "score": 0.1}], [2, 1])  # image 1 repeated
    results, image_ids = merge_results([first, second])
    assert image_ids == [1, 2, 3]
    assert results == [{"image_id": 1, "score": 0.9}, {"image_id": 3, "score": 0.8}, {"image_id": 2, "score": 0.7}]


def _synchronize_worker(rank: int, rendezvous: str, image_dir: str, annotation_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    try:
        dataset = CocoDetection(image_dir, annotation_file)
        evaluator = CocoEvaluator(dataset)
        outputs = _predictions(dataset)
        # rank 0 scores images 1, 2, 3; rank 1 scores 4 and, as DistributedSampler's padding does, 1 again
        indices = [0, 1, 2] if rank == 0 else [3, 0]
        for i in indices:
            repeated = rank == 1 and i == 0  # its detections differ, so counting them would change the figures
            output = {**outputs[i], "scores": outputs[i]["scores"] / 2} if repeated else outputs[i]
            evaluator.update([output], [dataset[i][1]])
        evaluator.synchronize()
        torch.save({"stats": evaluator.evaluate(), "ids": evaluator.image_ids}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_synchronize_gathers_every_process(tiny: TinyCoco, dataset: CocoDetection, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "stats")
    args = (f"file://{tmp_path / 'rendezvous'}", str(tiny.image_dir), str(tiny.annotation_file), out)
    mp.spawn(_synchronize_worker, args=args, nprocs=2)
    single = CocoEvaluator(dataset)
    single.update(_predictions(dataset), [dataset[i][1] for i in range(4)])
    for rank in (0, 1):
        gathered = torch.load(f"{out}.{rank}")
        assert gathered["ids"] == [1, 2, 3, 4] and gathered["stats"] == single.evaluate()
