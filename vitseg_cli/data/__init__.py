"""Data: image and label IO, dataset formats, transforms, the synthetic generator."""
