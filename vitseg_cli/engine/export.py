"""Export a segmentor to ONNX: normalized float32 NCHW input, logits at 1/4 of the input as output.

Deformable attention is exported as gather-based bilinear sampling (`msda.ms_deform_attn_gather`), so the graph has
no GridSample and does not depend on how a runtime implements it. The graph is captured by the TorchScript tracer
(under a minute for the parity models even on a loaded machine; torch.export did not finish in 25 minutes). The
batch axis is dynamic. By default the spatial size is fixed at export (`height` x `width`). With `dynamic=True`
height and width are free as well: while tracing, the model computes every size-dependent quantity (padding to its
size divisor, reference points, level sizes and offsets, position-embedding resize, pooling bins) by tensor
arithmetic on the input's shape, so nothing is baked in, and the export is then checked at a size it was not
captured with. The spec YAML, the export size (0 x 0 when dynamic) and, for a backbone that takes one size only, the
largest input go into the metadata_props, so `OnnxSegmentor(path)` needs nothing else.
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
from .onnx_backend import (META_FORMAT, META_HEIGHT, META_MAX_HEIGHT, META_MAX_WIDTH, META_SPEC, META_WIDTH,
                           MIN_DYNAMIC_SIDE, OnnxSegmentor)

DEFAULT_OPSET = 17
MIN_OPSET = 16


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
    """Adaptive average pooling as two matmuls with averaging matrices built from the input size while tracing.

    The TorchScript exporter cannot export adaptive_avg_pool2d to sizes that do not divide the input (UperNet's
    pool scales 3 and 6), nor at all once the batch axis is dynamic; this form is exact and exports everywhere, at
    any input size.
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
    width when `dynamic` (then `height` x `width` is only the example the graph is traced with)."""
    try:
        import onnx
    except ImportError:
        raise VitsegError("ONNX export needs the onnx package: pip install onnx onnxruntime, or pip install -e "
                          "'.[onnx]' in the vitseg clone") from None
    if model.decode_head is None:
        raise VitsegError("the model has no decode head: nothing to export as logits")
    if opset < MIN_OPSET:
        raise VitsegError(f"opset {opset} is too old (use >= {MIN_OPSET})")
    if height <= 0 or width <= 0:
        raise VitsegError(f"bad export size: width {width}, height {height}")
    fixed = model.backbone.fixed_input_size
    if dynamic:  # the example: the one size a fixed-size backbone computes at, else at least the smallest side
        height, width = fixed if fixed is not None else (max(height, MIN_DYNAMIC_SIDE), max(width, MIN_DYNAMIC_SIDE))
    out = Path(out)
    check_output_dir(out.parent)  # an unwritable --out fails before the (slow) export, not after it
    model = model.eval().cpu()
    # torch.onnx.export needs a path: a scratch file, then the final file is written whole with the metadata added
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if out.parent.exists() else None)
    os.close(fd)
    try:
        with torch.no_grad(), msda_impl("gather"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python values taken from the example input
            _trace_export(model, tmp, height, width, opset, dynamic)
        proto = onnx.load(tmp)
        meta = {META_FORMAT: "vitseg", META_SPEC: model.spec.to_yaml(),
                META_HEIGHT: "0" if dynamic else str(height), META_WIDTH: "0" if dynamic else str(width)}
        if dynamic and fixed is not None:
            meta.update({META_MAX_HEIGHT: str(fixed[0]), META_MAX_WIDTH: str(fixed[1])})
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        remove_stale_parts(Path(out).parent, Path(out).name)  # left by a kill during an earlier export
        atomic_write_bytes(out, proto.SerializeToString())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _trace_export(model: Segmentor, path: str, height: int, width: int, opset: int, dynamic: bool) -> None:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    out_axes = {0: "batch", 2: "logits_height", 3: "logits_width"} if dynamic else {0: "batch"}
    with _traceable_adaptive_pool():
        torch.onnx.export(model, (torch.zeros(1, 3, height, width),), path, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": axes, "logits": out_axes},
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def check_size(runner: OnnxSegmentor) -> tuple[int, int]:
    """The (height, width) an export is checked at: its own size when fixed; for a dynamic graph one it was not traced
    with and that is no multiple of 32 (so padding and cropping are exercised), within its largest input."""
    if not runner.dynamic:
        return runner.height, runner.width
    return (runner.max_height or 224) - 21, (runner.max_width or 288) - 37


def check_export(model: Segmentor, path: "str | Path", x: Optional[torch.Tensor] = None) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on `x` (random normal input by default, of
    `check_size`)."""
    runner = OnnxSegmentor(path)
    if x is None:
        x = torch.randn(1, 3, *check_size(runner), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x)
    return (torch.from_numpy(runner(x)) - ref).abs().max().item()
