"""vitseg: semantic segmentation at dataset scale with ViT-Adapter.

The Python API that tests, benchmarks and users share with the CLI::

    from vitseg_cli import build_model, load_model, predict
    model = load_model("model.safetensors")      # or an official .pth (+ spec)
    feats = model.backbone(x)                     # [f1, f2, f3, f4] at 1/4 .. 1/32
    logits = model(x)                             # (B, K, ceil(H/4), ceil(W/4))
    result = predict(model, "image.jpg")          # labels, probs, .overlay(), .save(dir): as `vitseg predict`

    model = load_model("upernet_deit_adapter_tiny_512_160k_ade20k")   # a zoo name: downloaded once, cached

The names are imported on first use (module `__getattr__`), so that `vitseg --help` does not import torch.
"""

from ._version import __version__

_LAZY = {"load_model": "loading", "save_model": "loading", "read_spec": "loading", "build_model": "model.segmentor",
         "load_spec": "spec", "predict": "engine.predict"}

__all__ = ["__version__", "build_model", "load_model", "load_spec", "predict", "read_spec", "save_model"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
