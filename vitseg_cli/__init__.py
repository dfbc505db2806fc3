"""vitseg: semantic segmentation at dataset scale with ViT-Adapter.

The Python API that tests, benchmarks and users share with the CLI::

    from vitseg_cli import load_model, build_model
    model = load_model("model.safetensors")      # or an official .pth (+ spec)
    feats = model.backbone(x)                     # [f1, f2, f3, f4] at 1/4 .. 1/32
    logits = model(x)                             # (B, K, ceil(H/4), ceil(W/4))
    result = model.predict("image.jpg")           # labels, probs, .overlay(), .save(dir): as `vitseg predict`

    model = load_model("upernet_deit_adapter_tiny_512_160k_ade20k")   # a zoo name: downloaded once, cached

The names are imported on first use (module `__getattr__`), so that `vitseg --help` does not import torch.
"""

__version__ = "0.1.0"

_LAZY = {"load_model": "checkpoints", "save_model": "checkpoints", "build_model": "model.segmentor",
         "load_spec": "spec"}

__all__ = ["__version__", "build_model", "load_model", "load_spec", "save_model"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
