"""The reference documentation's video classification example, run with ``torchvision`` replaced by ``visionzoo``
in the imports, on a clip the test writes (the example reads one of the reference's test assets).

As in ``test_examples.py``, the example's lines stay as they are except where they would need the network:
random weights instead of a download, with the preset and the categories of ``R3D_18_Weights.DEFAULT``.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("av", reason="PyAV is not installed (pip install visionzoo[video])")


def test_video_classification_example(tmp_path):
    from visionzoo.io import write_video

    path = str(tmp_path / "v_SoccerJuggling.mp4")
    frames = torch.randint(0, 256, (40, 128, 170, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    write_video(path, frames, fps=25, video_codec="libx264")

    from visionzoo.io.video import read_video
    from visionzoo.models.video import R3D_18_Weights, r3d_18

    vid, _, _ = read_video(path, output_format="TCHW")
    vid = vid[:32]  # optionally shorten duration

    # Step 1: Initialize model with the best available weights
    weights = R3D_18_Weights.DEFAULT
    model = r3d_18(weights=None)  # the example: weights=weights (no checkpoint can be fetched here)
    model.eval()

    # Step 2: Initialize the inference transforms
    preprocess = weights.transforms()

    # Step 3: Apply inference preprocessing transforms
    batch = preprocess(vid).unsqueeze(0)

    # Step 4: Use the model and print the predicted category
    prediction = model(batch).squeeze(0).softmax(0)
    label = prediction.argmax().item()
    score = prediction[label].item()
    category_name = weights.meta["categories"][label]
    print(f"{category_name}: {100 * score}%")

    assert vid.shape == (32, 3, 128, 170) and vid.dtype == torch.uint8
    assert batch.shape == (1, 3, 32, 112, 112)
    assert len(weights.meta["categories"]) == 400 and prediction.shape == (400,)
    assert category_name in weights.meta["categories"] and 0 < score <= 1
