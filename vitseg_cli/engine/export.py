"""Export a segmentor to ONNX: normalized float32 NCHW input, logits at 1/4 of the input as output.

Deformable attention is exported as gather-based bilinear sampling (`msda.ms_deform_attn_gather`), so the graph has
no GridSample and does not depend on how a runtime implements it. The batch axis is dynamic. By default the spatial
size is fixed at export (`height` x `width`): the TorchScript tracer bakes the backbone's python-int geometry
(reference points, level shapes, position-embedding resize) in. With `dynamic=True` the graph is captured with
`torch.export` instead, where those sizes stay symbolic, and height and width are free (any size the model
accepts; the graph pads to its multiple of 32 itself). The spec YAML and the export size (0 x 0 when dynamic) go
into the model's metadata_props so `OnnxSegmentor(path)` needs nothing else.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from ..data.io import atomic_write_bytes, check_output_dir, remove_stale_parts
from ..errors import VitsegError
from ..model.msda import msda_impl
from ..model.segmentor import Segmentor
from .onnx_backend import META_FORMAT, META_HEIGHT, META_SPEC, META_WIDTH, MIN_DYNAMIC_SIDE, OnnxSegmentor

DEFAULT_OPSET = 17
DYNAMIC_OPSET = 18  # the torch.export-based exporter's lowest


def _pool_matrix(size, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, size) averaging matrix of adaptive average pooling: bin i covers [floor(i*size/out), ceil((i+1)*size/out)).

    Built by arithmetic on `size`, so a traced input size stays symbolic in the graph."""
    i = torch.arange(out, device=like.device)
    j = torch.arange(size, device=like.device)
    start = (i * size) // out
    end = (i * size + size + out - 1) // out
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


@contextlib.contextmanager
def _traceable_adaptive_pool() -> Iterator[None]:
    """Adaptive average pooling as two matmuls with constant matrices while tracing.

    The TorchScript exporter cannot export adaptive_avg_pool2d to sizes that do not divide the input (UperNet's
    pool scales 3 and 6), nor at all once the batch axis is dynamic; this form is exact and exports everywhere.
    """
    original = F.adaptive_avg_pool2d

    def pool(x: torch.Tensor, output_size) -> torch.Tensor:
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        h, w = x.shape[-2:]
        oh, ow = (h if oh is None else oh), (w if ow is None else ow)
        return _pool_matrix(h, oh, x) @ x @ _pool_matrix(w, ow, x).T

    F.adaptive_avg_pool2d = pool
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def export_onnx(model: Segmentor, out: "str | Path", height: int = 512, width: int = 512,
                opset: int = DEFAULT_OPSET, dynamic: bool = False) -> Path:
    """Write `model` as ONNX to `out` (atomically) for inputs of (any batch, 3, height, width), or of any height and
    width when `dynamic` (then `height` x `width` is only the example the graph is captured with)."""
    try:
        import onnx
    except ImportError:
        raise VitsegError("ONNX export needs the onnx package: pip install 'vitseg[onnx]'") from None
    if model.decode_head is None:
        raise VitsegError("the model has no decode head: nothing to export as logits")
    if opset < (DYNAMIC_OPSET if dynamic else 16):
        raise VitsegError(f"opset {opset} is too old (use >= {DYNAMIC_OPSET if dynamic else 16})")
    if height <= 0 or width <= 0:
        raise VitsegError(f"bad export size: width {width}, height {height}")
    out = Path(out)
    check_output_dir(out.parent)  # an unwritable --out fails before the (slow) export, not after it
    model = model.eval().cpu()
    # torch.onnx.export needs a path: a scratch file, then the final file is written whole with the metadata added
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if out.parent.exists() else None)
    os.close(fd)
    try:
        with torch.no_grad(), msda_impl("gather"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints from shapes: intended (fixed size)
            if dynamic:
                _export_dynamic(model, tmp, max(height, MIN_DYNAMIC_SIDE), max(width, MIN_DYNAMIC_SIDE), opset)
            else:
                _export_fixed(model, tmp, height, width, opset)
        proto = onnx.load(tmp)
        meta = {META_FORMAT: "vitseg", META_SPEC: model.spec.to_yaml(),
                META_HEIGHT: "0" if dynamic else str(height), META_WIDTH: "0" if dynamic else str(width)}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        remove_stale_parts(Path(out).parent, Path(out).name)  # left by a kill during an earlier export
        atomic_write_bytes(out, proto.SerializeToString())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _export_fixed(model: Segmentor, path: str, height: int, width: int, opset: int) -> None:
    with _traceable_adaptive_pool():
        torch.onnx.export(model, (torch.zeros(1, 3, height, width),), path, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def _export_dynamic(model: Segmentor, path: str, height: int, width: int, opset: int) -> None:
    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError:
        raise VitsegError("--dynamic export needs the onnxscript package: pip install 'vitseg[onnx]'") from None
    dims = {2: torch.export.Dim("height", min=MIN_DYNAMIC_SIDE, max=16384),
            3: torch.export.Dim("width", min=MIN_DYNAMIC_SIDE, max=16384)}
    try:
        torch.onnx.export(model, (torch.zeros(1, 3, height, width),), path, input_names=["image"],
                          output_names=["logits"], dynamic_shapes=(dims,), opset_version=opset, dynamo=True,
                          optimize=False, verbose=False)
    except Exception as err:  # the exporter raises many types; say which model and why, in one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise VitsegError(f"dynamic-size export of this model failed: {first}") from None


def check_export(model: Segmentor, path: "str | Path", x: Optional[torch.Tensor] = None) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on `x` (random normal input by default)."""
    runner = OnnxSegmentor(path)
    if x is None:
        h, w = (runner.height, runner.width) if not runner.dynamic else (320, 256)
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x)
    return (torch.from_numpy(runner(x)) - ref).abs().max().item()
