"""vitseg: semantic segmentation at dataset scale with ViT-Adapter.

The Python API that tests, benchmarks and users share with the CLI::

    from vitseg_cli import build_model, load_model, predict
    model = load_model("model.safetensors")      # or an official .pth (+ spec), a zoo name; none: the shipped model
    result = model("image.jpg")                   # a path, an RGB uint8 array or a PIL image -> Result
    for result in model.predict(paths_or_arrays, stream=True, batch_size=8):   # a list, a generator, a folder
        print(result.to_json())                   # also result.areas(), .to_rle(), .polygons(), .overlay(), .save()
    logits = model(x)                             # a (B, 3, H, W) tensor: the plain forward, (B, K, H/4, W/4)
    result = predict(model, "image.jpg")          # the same as model("image.jpg"), for any loaded model

    model = load_model("upernet_deit_adapter_tiny_512_160k_ade20k")   # a zoo name: downloaded once, cached

`load_model` puts the model on `device="auto"` (CUDA when available) and sets the CPU threads (`engine/threads.py`)
unless torch's were set already. The names are imported on first use (module `__getattr__`), so that
`vitseg --help` does not import torch.

Importing the package sets OMP_WAIT_POLICY=PASSIVE unless it is set: OpenMP's threads then sleep at a barrier
instead of spinning, which on CPUs shared with other work made a run 10 to 40 times faster (`engine/threads.py`). It
takes effect only where torch is imported after vitseg_cli.
"""

import os

from ._version import __version__

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_LAZY = {"load_model": "engine.api", "save_model": "loading", "read_spec": "loading", "build_model": "model.segmentor",
         "load_spec": "spec", "predict": "engine.predict", "Result": "engine.api",
         "SegmentationModel": "engine.api"}

__all__ = ["__version__", "Result", "SegmentationModel", "build_model", "load_model", "load_spec", "predict",
           "read_spec", "save_model"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
