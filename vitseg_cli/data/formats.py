"""The dataset layouts `--format` accepts (kept apart from their readers so that `--help` imports nothing heavy), and
the layout each official release's test set comes in."""

FORMATS = ("folder", "ade20k", "cityscapes", "voc", "coco", "coco_stuff164k", "coco_stuff10k", "pascal_context_59",
           "mapillary", "mmseg")

# a release's dataset (`releases.Release.dataset`) -> the format of the data its official numbers are measured on
# (the Mapillary release is tested on Cityscapes val, as its config says)
RELEASE_FORMATS = {"ade20k": "ade20k", "cityscapes": "cityscapes", "mapillary": "cityscapes",
                   "coco_stuff10k": "coco_stuff10k", "coco_stuff164k": "coco_stuff164k",
                   "pascal_context": "pascal_context_59"}

# where DATA points for each format an official release is tested on (its root, or the folder holding it)
FORMAT_LAYOUTS = {
    "ade20k": "ADEChallengeData2016/ (images/validation/*.jpg, annotations/validation/*.png)",
    "cityscapes": "cityscapes/ (leftImg8bit/val/<city>/*_leftImg8bit.png, "
                  "gtFine/val/<city>/*_gtFine_labelTrainIds.png)",
    "coco_stuff10k": "coco_stuff10k/ (images/test2014/*.jpg, annotations/test2014/*_labelTrainIds.png, as mmseg's "
                     "tools/convert_datasets/coco_stuff10k.py leaves them)",
    "coco_stuff164k": "coco_stuff164k/ (images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png, as mmseg's "
                      "tools/convert_datasets/coco_stuff164k.py leaves them)",
    "pascal_context_59": "VOCdevkit/VOC2010/ (JPEGImages, SegmentationClassContext, "
                         "ImageSets/SegmentationContext/val.txt, as mmseg's tools/convert_datasets/pascal_context.py "
                         "leaves them)",
}
