"""Fine-tuning: ``visionzoo train`` (also ``python -m visionzoo.train``), in one process or under torchrun.

``engine`` holds the loop every task shares (optimizer, warm-up + cosine schedule, mixed precision, EMA,
evaluation, exact-resume checkpoints, JSON-lines metrics, DistributedDataParallel); ``classification`` fine-tunes
on class folders.
"""
