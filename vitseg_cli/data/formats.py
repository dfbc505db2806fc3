"""The dataset layouts `--format` accepts (kept apart from their readers so that `--help` imports nothing heavy)."""

FORMATS = ("folder", "ade20k", "cityscapes", "voc", "coco")
