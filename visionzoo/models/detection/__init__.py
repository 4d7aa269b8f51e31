"""Object detection: the R-CNN pipeline pieces every detector shares, under the reference's module names.

``transform`` (resize, normalise, batch), ``anchor_utils`` (anchors), ``_utils`` (box coding, matching,
sampling), ``backbone_utils`` (classification backbones with a feature pyramid). Detectors build on them.
"""
