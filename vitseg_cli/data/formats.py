"""The dataset layouts `--format` accepts (kept apart from their readers so that `--help` imports nothing heavy), and
the layout each official release's test set comes in."""

FORMATS = ("folder", "ade20k", "cityscapes", "voc", "coco", "coco_stuff164k", "coco_stuff10k", "pascal_context_59",
           "mapillary", "mmseg")

# a release's dataset (`releases.Release.dataset`) -> the format of the data its official numbers are measured on
# (the Mapillary release is tested on Cityscapes val, as its config says)
RELEASE_FORMATS = {"ade20k": "ade20k", "cityscapes": "cityscapes", "mapillary": "cityscapes",
                   "coco_stuff10k": "coco_stuff10k", "coco_stuff164k": "coco_stuff164k",
                   "pascal_context": "pascal_context_59"}
