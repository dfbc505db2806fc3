"""Export a segmentor to ONNX: normalized float32 NCHW input, logits at 1/4 of the input as output.

The batch axis is dynamic. The spatial size is fixed at export (`height` x `width`): the backbone's reference points,
level shapes and position-embedding resize are computed from python ints, so the tracer bakes them in. The spec YAML
and the export size go into the model's metadata_props so `OnnxSegmentor(path)` needs nothing else.
"""

from __future__ import annotations

import contextlib
import math
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

DEFAULT_OPSET = 17  # GridSample needs >= 16
META_SPEC, META_HEIGHT, META_WIDTH, META_FORMAT = "vitseg_spec", "vitseg_input_height", "vitseg_input_width", "format"


def _pool_matrix(size: int, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, size) averaging matrix of adaptive average pooling: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
    m = torch.zeros(out, size, dtype=like.dtype, device=like.device)
    for i in range(out):
        a, b = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, a:b] = 1.0 / (b - a)
    return m


@contextlib.contextmanager
def _traceable_adaptive_pool() -> Iterator[None]:
    """Adaptive average pooling as two matmuls with constant matrices while tracing.

    The TorchScript exporter cannot export adaptive_avg_pool2d to sizes that do not divide the input (UperNet's
    pool scales 3 and 6), nor at all once the batch axis is dynamic; this form is exact and exports everywhere.
    """
    original = F.adaptive_avg_pool2d

    def pool(x: torch.Tensor, output_size) -> torch.Tensor:
        oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = oh or h, ow or w
        return _pool_matrix(h, oh, x) @ x @ _pool_matrix(w, ow, x).T

    F.adaptive_avg_pool2d = pool
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def export_onnx(model: Segmentor, out: "str | Path", height: int = 512, width: int = 512,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` as ONNX to `out` (atomically) for inputs of (any batch, 3, height, width)."""
    try:
        import onnx
    except ImportError:
        raise VitsegError("ONNX export needs the onnx package: pip install 'vitseg[onnx]'") from None
    if model.decode_head is None:
        raise VitsegError("the model has no decode head: nothing to export as logits")
    if opset < 16:
        raise VitsegError(f"opset {opset} is too old: deformable attention needs GridSample (opset >= 16)")
    if height <= 0 or width <= 0:
        raise VitsegError(f"bad export size: width {width}, height {height}")
    out = Path(out)
    check_output_dir(out.parent)  # an unwritable --out fails before the (slow) export, not after it
    model = model.eval().cpu()
    example = torch.zeros(1, 3, height, width)
    # torch.onnx.export needs a path: a scratch file, then the final file is written whole with the metadata added
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if out.parent.exists() else None)
    os.close(fd)
    try:
        # the fast path: one GridSample per attention and no python-side data-dependent shapes
        with torch.no_grad(), msda_impl("fast"), _traceable_adaptive_pool(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python ints from shapes: intended (fixed size)
            torch.onnx.export(model, (example,), tmp, input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(tmp)
        meta = {META_FORMAT: "vitseg", META_SPEC: model.spec.to_yaml(), META_HEIGHT: str(height),
                META_WIDTH: str(width)}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        remove_stale_parts(Path(out).parent, Path(out).name)  # left by a kill during an earlier export
        atomic_write_bytes(out, proto.SerializeToString())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def logits_size(height: int, width: int) -> tuple[int, int]:
    return math.ceil(height / 4), math.ceil(width / 4)


def check_export(model: Segmentor, path: "str | Path", x: Optional[torch.Tensor] = None) -> float:
    """Max abs difference between PyTorch and onnxruntime logits on `x` (random normal input by default)."""
    from .onnx_backend import OnnxSegmentor

    runner = OnnxSegmentor(path)
    if x is None:
        x = torch.randn(1, 3, runner.height, runner.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x)
    return (runner(x) - ref).abs().max().item()
