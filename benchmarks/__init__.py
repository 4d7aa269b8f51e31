"""Benchmarks of visionzoo against the reference (torchvision): see benchmarks/README.md."""
