"""Run an exported ONNX segmentor with onnxruntime, as a drop-in for the torch model in the inference loop.

`OnnxSegmentor(path)` reads the spec embedded by `vitseg export`; calling it on a normalized (B, 3, h, w) array (numpy,
or a torch tensor from the shared inference loop) gives numpy logits (B, K, ceil(h/4), ceil(w/4)) like
`Segmentor.forward`. This module never imports torch: an ONNX deployment runs without it. A graph exported with
`--dynamic` takes any size the torch model takes (one whose backbone computes at a single size, such as BEiT, at most
that size). Otherwise the graph has a fixed spatial size (the export size), so other input sizes are an error:
use slide inference with crop = export size, or export at the size you feed. With `allow_pad=True` a smaller input
is zero-padded bottom/right to the export size and the logits cropped; that is NOT what the torch model computes (it
pads only to a multiple of 32, and attention sees the padding), so logits move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import VitsegError, first_line
from ..safe_yaml import load_yaml
from ..spec import Spec, load_spec, spec_from_dict

# metadata_props keys written by `vitseg export`; a height and width of 0 mean a dynamic-size graph
META_SPEC, META_HEIGHT, META_WIDTH, META_FORMAT = "vitseg_spec", "vitseg_input_height", "vitseg_input_width", "format"
# the largest input of a dynamic graph whose backbone computes at one size only (BEiT's relative position bias)
META_MAX_HEIGHT, META_MAX_WIDTH = "vitseg_max_input_height", "vitseg_max_input_width"
MIN_DYNAMIC_SIDE = 64  # the smallest side a dynamic graph is exported for


ONNX_SUFFIX = ".onnx"


def choose_backend(backend: Optional[str], weights: "str | Path | None") -> str:
    """The backend a run uses: the one given, else onnx for a `.onnx` weights file and torch otherwise. A `.onnx`
    file with `--backend torch` is refused (the torch loader cannot read it)."""
    is_onnx = weights is not None and str(weights).lower().endswith(ONNX_SUFFIX)
    chosen = (backend or ("onnx" if is_onnx else "torch")).lower()
    if chosen not in ("torch", "onnx"):
        raise VitsegError(f"--backend {backend}: must be one of torch, onnx")
    if chosen == "torch" and is_onnx:
        raise VitsegError(f"{weights}: an ONNX model runs with --backend onnx (or no --backend), not --backend torch")
    return chosen


def _as_numpy(x) -> np.ndarray:
    """A float32 C-contiguous array of `x`, a numpy array or a torch tensor (on any device)."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def logits_size(height: int, width: int) -> tuple[int, int]:
    """The (h, w) of the logits for an input of height x width: 1/4, rounded up."""
    return -(-height // 4), -(-width // 4)


class OnnxSegmentor:
    """Callable `(x: array) -> np.ndarray` logits, with `.spec`, `.num_classes`, `.height`, `.width`."""

    def __init__(self, onnx_path: "str | Path", spec: "Spec | dict | str | None" = None,
                 providers: Optional[Sequence[str]] = None, threads: int = 0, allow_pad: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise VitsegError("the ONNX backend needs onnxruntime: pip install onnxruntime, or pip install -e "
                              "'.[onnx]' in the vitseg clone") from None
        path = Path(onnx_path)
        if not path.is_file():
            raise VitsegError(f"{path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # onnxruntime raises its own exception types
            raise VitsegError(f"{path}: not a loadable ONNX model ({first_line(err)})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if spec is not None:
            self.spec = load_spec(spec)
        elif META_SPEC in meta:
            source = f"{path} (embedded spec)"
            self.spec = spec_from_dict(load_yaml(meta[META_SPEC], source), source=source)
        else:
            raise VitsegError(f"{path}: no vitseg spec in the ONNX metadata (give one with --spec)")
        shape = self.session.get_inputs()[0].shape
        fixed = [v if isinstance(v, int) else 0 for v in shape[2:]]
        self.height = int(meta.get(META_HEIGHT, fixed[0]))
        self.width = int(meta.get(META_WIDTH, fixed[1]))
        self.dynamic = self.height == 0 or self.width == 0
        self.max_height = int(meta.get(META_MAX_HEIGHT, 0)) or None
        self.max_width = int(meta.get(META_MAX_WIDTH, 0)) or None
        self.input_name = self.session.get_inputs()[0].name
        self.path = path
        self.allow_pad = allow_pad

    @property
    def num_classes(self) -> int:
        return self.spec.model.num_classes

    def eval(self) -> "OnnxSegmentor":  # the torch-model protocol the inference loop may call
        return self

    def to(self, *_args, **_kwargs) -> "OnnxSegmentor":
        return self

    def __call__(self, x) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] != 3:
            raise VitsegError(f"expected a (B, 3, H, W) batch, got {tuple(x.shape)}")
        h, w = (int(v) for v in x.shape[-2:])
        x = _as_numpy(x)
        if self.dynamic:
            return self._run_dynamic(x)
        if (h, w) != (self.height, self.width) and (not self.allow_pad or h > self.height or w > self.width):
            raise VitsegError(f"input {w}x{h} (WxH) does not fit the ONNX model's fixed {self.width}x{self.height} "
                              "(export with --height/--width of your input, or use slide inference with that crop "
                              "size)")
        if (h, w) != (self.height, self.width):
            x = np.pad(x, ((0, 0), (0, 0), (0, self.height - h), (0, self.width - w)))
        logits = self.session.run(None, {self.input_name: x})[0]
        lh, lw = logits_size(h, w)
        return np.ascontiguousarray(logits[..., :lh, :lw])

    def _run_dynamic(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        if h < MIN_DYNAMIC_SIDE or w < MIN_DYNAMIC_SIDE:
            raise VitsegError(f"input {w}x{h} (WxH) is below the {MIN_DYNAMIC_SIDE} px per side the dynamic ONNX "
                              f"model {self.path.name} was exported for")
        if h > (self.max_height or h) or w > (self.max_width or w):
            raise VitsegError(f"input {w}x{h} (WxH) is larger than the {self.max_width}x{self.max_height} this "
                              f"{self.spec.model.backbone.type} backbone takes (ONNX model {self.path.name}): use "
                              f"slide mode with crop {self.max_height}x{self.max_width}")
        return self.session.run(None, {self.input_name: x})[0]
