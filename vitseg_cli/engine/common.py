"""What the inference commands share: where the default model lives and how a model for inference is loaded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..errors import VitsegError
from ..loading import DEFAULT_WEIGHTS, load_model, resolve_weights
from ..model.segmentor import Segmentor
from .onnx_backend import OnnxSegmentor, choose_backend


def default_weights_path() -> Path:
    """The shipped default model: package data, `vitseg_cli/weights/default.safetensors` (how it was made:
    weights/README.md at the repository root)."""
    return DEFAULT_WEIGHTS


def weights_file(weights: "Optional[str | Path]") -> Path:
    """The weights file a run reads: the given path, a zoo name's cached converted file, or the default model."""
    return resolve_weights(weights) if weights is not None else default_weights_path()


def _note_to_stderr(line: str) -> None:
    print(f"note: {line}", file=sys.stderr)


def load_inference_model(weights: Optional[Path], spec: Optional[str], device: "torch.device | str",
                         note: Optional[Callable[[str], None]] = _note_to_stderr,
                         overrides: Sequence[str] = (), backbone_weights: Optional[Path] = None) -> Segmentor:
    """A model in eval mode on `device`: vitseg `.safetensors` or official `.pth` (spec given or inferred, a given
    YAML merged onto an embedded spec, `--set` overrides last); no weights = the shipped default model. Each of the
    model's load notes goes to `note`."""
    if weights is None:
        weights = default_weights_path()
        if not weights.exists():
            raise VitsegError("no default model is shipped yet: pass --weights")
    model = load_model(Path(weights), spec, device=device, overrides=overrides, backbone_weights=backbone_weights)
    if note is not None:
        for line in getattr(model, "load_notes", []):
            note(line)
    return model


def load_backend(backend: Optional[str], weights: Optional[Path], spec: Optional[str], device: "torch.device",
                 note: Optional[Callable[[str], None]] = _note_to_stderr, overrides: Optional[dict] = None,
                 spec_overrides: Sequence[str] = (), backbone_weights: Optional[Path] = None):
    """The model a predict or eval run infers with: `backend` torch or onnx, None = from the weights' suffix
    (`.onnx` -> onnx). `overrides` are the run's inference settings, checked against what ONNX can do."""
    backend = choose_backend(backend, weights)
    if backend == "torch":
        return load_inference_model(weights, spec, device, note=note, overrides=spec_overrides,
                                    backbone_weights=backbone_weights)
    overrides = overrides or {}
    if weights is None:
        raise VitsegError("--backend onnx needs --weights MODEL.onnx")
    if overrides.get("half"):
        raise VitsegError("--half is for --backend torch (an ONNX model runs in the precision it was exported in)")
    if overrides.get("compile"):
        raise VitsegError("--compile is for --backend torch")
    if spec_overrides:
        raise VitsegError("--set is for --backend torch (an ONNX model's spec was fixed at export)")
    if backbone_weights is not None:
        raise VitsegError("--backbone-weights is for --backend torch (an ONNX model holds all its weights)")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if torch.device(device).type == "cuda" else None
    # slide windows at the image edges can be smaller than the exported size: let them be padded
    return OnnxSegmentor(weights, spec=spec, providers=providers, allow_pad=True)
