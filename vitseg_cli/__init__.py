"""vitseg: semantic segmentation at dataset scale with ViT-Adapter.

The Python API that tests, benchmarks and users share with the CLI::

    from vitseg_cli import load_model, build_model
    model = load_model("model.safetensors")      # or an official .pth (+ spec)
    feats = model.backbone(x)                     # [f1, f2, f3, f4] at 1/4 .. 1/32
    logits = model(x)                             # (B, K, ceil(H/4), ceil(W/4))
    result = model.predict("image.jpg")           # labels, probs, .overlay(), .save(dir): as `vitseg predict`
"""

__version__ = "0.1.0"

from .checkpoints import load_model, save_model  # noqa: E402
from .model.segmentor import build_model  # noqa: E402
from .spec import load_spec  # noqa: E402

__all__ = ["__version__", "build_model", "load_model", "load_spec", "save_model"]
