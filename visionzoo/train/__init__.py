"""Fine-tuning: ``visionzoo train`` (also ``python -m visionzoo.train``), in one process or under torchrun.

``engine`` holds the loop every task shares (optimizer, warm-up + cosine schedule, mixed precision, EMA,
evaluation, JSON-lines metrics, DistributedDataParallel); ``checkpoint`` the exact-resume checkpoints; ``data``
the sampling and per-image random draws; ``classification`` fine-tunes on class folders and ``detection`` on
COCO-format annotations.
"""
