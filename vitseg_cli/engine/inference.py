"""The one inference path (predict and eval both use it): the official mmseg test pipeline, in bounded memory.

Per image: RGB; resize (keep ratio to `resize.scale`, then up to a multiple of `size_divisor`, cv2 INTER_LINEAR on
uint8; or ViT-Adapter's SETR_Resize rule); for a flipped pass the mirror; optional raw-pixel padding of the short
side (PadShortSide); normalize; whole or slide inference; logits resized bilinearly (align_corners=False) to the
original size (the padding cut off first when `crop_pad`); flip / multi-scale TTA average the softmax
probabilities; argmax. Per pass this is the official `aug_test` order (resize to the original size, softmax, flip
back), for the UperNet and the Mask2Former segmentors alike.

Memory stays bounded for any image size: nothing of shape (K, H, W) in float32 is ever allocated. Each TTA pass
produces its class scores at the original size band by band (a few rows at a time, top to bottom): the window logits
(kept at 1/4 resolution, only while they cover rows still to come) are resized to their window rows, summed, divided
by the window count, then resized to the original rows. All passes advance in step, so TTA is band-wise too; only
`want_probs` keeps a full (K, H, W) float16 array, because that is what it returns.

Decoding and preprocessing run in a torch DataLoader (pinned memory and non-blocking copies on CUDA); a file that
cannot be read gives a `Prediction` whose `error` is one line naming it, and the iteration goes on. A video's frames
(`iter_video_predictions`) go through the same steps, decoded in order by one loader worker.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import read_image
from ..data.storage import is_url
from ..data.test_transforms import round_up
from ..data.video import read_frames
from ..data.workers import worker_init
from ..errors import VitsegError, first_line
from ..spec import ResizeSpec, Spec
from .outputs import Prediction
from .preprocess import preprocess, resized_shape, slide_windows  # noqa: F401  (their home before)
from .test_procedures import PROCEDURES, dinov3_view, score_request, window_crop

# Bytes one band of float32 class scores may take; bands of rows are sized from it (tests shrink it).
BAND_BYTES = 64 << 20


# ----------------------------------------------------------------------------------------------------- settings


@dataclass
class InferenceSettings:
    mode: Literal["whole", "slide"]
    crop_size: tuple[int, int]
    stride: tuple[int, int]
    flip: bool
    scales: list[float]
    resize: Optional[ResizeSpec]
    batch_size: int = 1
    half: bool = False
    compile: bool = False
    procedure: str = "mmseg"
    short_side: Optional[int] = None  # the dinov3 procedure's short side at ratio 1
    resize_rule: str = "mmseg"
    min_short_side: Optional[int] = None
    pad_short_side: Optional[int] = None
    crop_pad: bool = False
    pad_normalized: bool = False

    @classmethod
    def from_spec(cls, spec: Spec, **overrides: Any) -> "InferenceSettings":
        """The spec's `test` section, with any override that is not None put over it (`resize: null` = native)."""
        t = spec.test
        base = cls(mode=t.mode, crop_size=tuple(t.crop_size), stride=tuple(t.stride), flip=t.flip,
                   scales=list(t.scales), resize=t.resize, resize_rule=t.resize_rule,
                   min_short_side=t.min_short_side, pad_short_side=t.pad_short_side, crop_pad=t.crop_pad,
                   pad_normalized=t.pad_normalized, procedure=t.procedure,
                   short_side=t.short_side)
        unknown = set(overrides) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown inference settings: {', '.join(sorted(unknown))}")
        settings = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise VitsegError(f"mode: {self.mode!r} is not one of whole, slide")
        if self.mode == "slide":
            if len(self.crop_size) != 2 or min(self.crop_size) < 1:
                raise VitsegError(f"crop size must be two positive integers, got {list(self.crop_size)}")
            if len(self.stride) != 2 or min(self.stride) < 1:
                raise VitsegError(f"stride must be two positive integers, got {list(self.stride)}")
            if any(s > c for s, c in zip(self.stride, self.crop_size)):  # mmseg asserts full coverage too
                raise VitsegError(f"stride {list(self.stride)} is larger than the crop size {list(self.crop_size)}: "
                                  "the slide windows would leave rows and columns unpredicted")
        if not self.scales or any(not (s > 0 and math.isfinite(s)) for s in self.scales):
            raise VitsegError(f"scales must be positive numbers, got {self.scales}")
        if self.batch_size < 1:
            raise VitsegError(f"batch size must be at least 1, got {self.batch_size}")
        if self.procedure not in PROCEDURES:
            raise VitsegError(f"test procedure {self.procedure!r} is not one of {', '.join(PROCEDURES)}")
        if self.procedure == "dinov3" and not self.short_side:
            raise VitsegError("the dinov3 test procedure needs test.short_side (the short side at ratio 1)")
        if self.resize_rule == "setr" and (self.resize is None or not self.resize.keep_ratio
                                           or not self.min_short_side):
            raise VitsegError("the setr resize rule needs a keep-ratio resize and min_short_side")

    def check_device(self, device: torch.device) -> None:
        """Fail before any output is written when `device` cannot run these settings."""
        if self.half:
            half_dtype(device)

    def to_dict(self) -> dict[str, Any]:
        out = {"mode": self.mode, "crop_size": list(self.crop_size), "stride": list(self.stride), "flip": self.flip,
               "scales": list(self.scales), "resize": self.resize.model_dump(mode="json") if self.resize else None,
               "batch_size": self.batch_size, "half": self.half, "compile": self.compile}
        # only where set: the records (and fingerprints) of the plain pipeline stay as they were
        extra = {"resize_rule": self.resize_rule != "mmseg" and self.resize_rule,
                 "min_short_side": self.min_short_side, "pad_short_side": self.pad_short_side,
                 "crop_pad": self.crop_pad, "pad_normalized": self.pad_normalized,
                 "procedure": self.procedure != "mmseg" and self.procedure, "short_side": self.short_side}
        return {**out, **{k: v for k, v in extra.items() if v}}


# ------------------------------------------------------------------------------------------------ preprocessing


def _one_line(path: Path, err: BaseException) -> str:
    text = first_line(err, limit=10_000)
    return text if str(path) in text else f"{path}: {text}"


class _ImageDataset(torch.utils.data.Dataset):
    """Reads and preprocesses one image per item; never raises for a bad file (the item carries the error)."""

    def __init__(self, paths: Sequence[Path], settings: InferenceSettings, mean, std, keep_image: bool):
        self.paths = [p if is_url(p) else Path(p) for p in paths]  # an object store's URL stays a URL
        self.settings, self.mean, self.std, self.keep_image = settings, mean, std, keep_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            return prepare_item(read_image(path), self.settings, self.mean, self.std, self.keep_image, index, path)
        except Exception as err:  # one bad file must not stop the run
            return {"index": index, "path": path, "error": _read_error(path, err)}


def _read_error(path: Path, err: Exception) -> str:
    if isinstance(err, VitsegError):
        return _one_line(path, err)
    return f"{path}: cannot read ({type(err).__name__}: {_one_line(path, err)[:200]})"  # a decoder's own failure


def prepare_item(image: np.ndarray, settings: InferenceSettings, mean, std, keep_image: bool, index: int = 0,
                 path: Optional[Path] = None, frame: Optional[int] = None) -> dict[str, Any]:
    """What the model loop takes for one RGB uint8 image (a file, an array, a video frame): its preprocessed input
    at each TTA scale, its size, the image if kept. With padding, a flipped pass is not the mirror of the unflipped
    input (the pad goes bottom/right after the flip): `flipped` then holds those inputs, and `valid` the (h, w) of
    each scale's image inside its padding."""
    h, w = image.shape[:2]
    opts = dict(rule=settings.resize_rule, min_short_side=settings.min_short_side,
                pad_short_side=settings.pad_short_side, pad_normalized=settings.pad_normalized)
    if settings.procedure == "dinov3":
        inputs = [torch.from_numpy(dinov3_view(image, settings.short_side, r, mean, std)) for r in settings.scales]
    else:
        inputs = [torch.from_numpy(preprocess(image, settings.resize, r, mean, std, **opts)) for r in settings.scales]
    item = {"index": index, "path": path, "error": None, "inputs": inputs, "size": image.shape[:2],
            "image": image if keep_image else None, "frame": frame}
    if settings.pad_short_side:
        divisor = settings.resize.size_divisor if settings.resize is not None else None
        item["valid"] = [round_up(*resized_shape(h, w, settings.resize, r, settings.resize_rule,
                                                 settings.min_short_side), divisor) for r in settings.scales]
        if settings.flip:
            item["flipped"] = [torch.from_numpy(preprocess(image, settings.resize, r, mean, std, flip=True, **opts))
                               if tuple(x.shape[-2:]) != valid else None
                               for r, x, valid in zip(settings.scales, inputs, item["valid"])]
    return item


class _VideoFrames(torch.utils.data.IterableDataset):
    """The frames of one video (every `stride`-th), preprocessed, in order; an unreadable video gives one item with
    its error. Read by at most one worker: a video decodes sequentially."""

    def __init__(self, path: Path, stride: int, settings: InferenceSettings, mean, std, keep_image: bool):
        self.path, self.stride = Path(path), stride
        self.settings, self.mean, self.std, self.keep_image = settings, mean, std, keep_image

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for n, (frame, image) in enumerate(read_frames(self.path, self.stride)):
                yield prepare_item(image, self.settings, self.mean, self.std, self.keep_image, n, self.path, frame)
        except Exception as err:
            yield {"index": -1, "path": self.path, "error": _read_error(self.path, err)}


def _identity(item):
    return item


# -------------------------------------------------------------------------------------------- band-wise scores


def _resize_rows(get_rows: Callable[[int, int], torch.Tensor], in_size: tuple[int, int],
                 out_size: tuple[int, int], r0: int, r1: int) -> torch.Tensor:
    """Rows r0:r1 of `F.interpolate(src, out_size, 'bilinear', align_corners=False)` for a (K, H, W) source whose
    rows come from `get_rows(lo, hi)`: only the source rows those output rows need are fetched."""
    hin, win = in_size
    hout, wout = out_size
    if hin == hout:
        src = get_rows(r0, r1)
        return src if win == wout else F.interpolate(src[None], size=(r1 - r0, wout), mode="bilinear",
                                                      align_corners=False)[0]
    # PyTorch's source index: max(scale * (dst + 0.5) - 0.5, 0) in float32, scale = in / out
    scale = torch.tensor(hin, dtype=torch.float32) / hout
    dst = torch.arange(r0, r1, dtype=torch.float32)
    pos = (scale * (dst + 0.5) - 0.5).clamp(min=0)
    y0 = pos.floor().long().clamp(max=hin - 1)
    y1 = torch.where(y0 < hin - 1, y0 + 1, y0)
    l1 = (pos - y0.float()).clamp(0, 1)
    l0 = 1.0 - l1
    lo, hi = int(y0[0]), int(y1[-1]) + 1
    src = get_rows(lo, hi)
    if win != wout:  # horizontal first, then vertical: the order of PyTorch's own kernel
        src = F.interpolate(src[None], size=(hi - lo, wout), mode="bilinear", align_corners=False)[0]
    l0, l1 = l0.to(src.device)[None, :, None], l1.to(src.device)[None, :, None]
    return l0 * src[:, (y0 - lo).to(src.device)] + l1 * src[:, (y1 - lo).to(src.device)]


class _ScorePass:
    """Logits of one TTA pass (one scale, flipped or not) at the original size, produced in bands of rows, top to
    bottom: windows are run only when a band needs them and dropped once every band they cover is done."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, settings: InferenceSettings,
                 out_size: tuple[int, int], flipped: bool, ready: Optional[torch.Tensor] = None,
                 valid: Optional[tuple[int, int]] = None):
        """`ready`: whole mode only, the logits of `x` already computed (in a batch with other images). `valid`: the
        top-left part of `x` whose scores are resized back (the rest is padding to cut off), None = all of it."""
        self.forward, self.x, self.flipped = forward, x, flipped
        self.batch_size = settings.batch_size
        self.in_size = tuple(x.shape[-2:])
        self.out_size = out_size
        h, w = self.in_size
        self.valid = (h, w) if valid is None else (min(valid[0], h), min(valid[1], w))
        windows = [(0, h, 0, w)] if settings.mode == "whole" else slide_windows(
            h, w, window_crop(settings.procedure, h, w, settings.crop_size), settings.stride)
        self.pending = deque(windows if ready is None else [])
        self.live: list[tuple[tuple[int, int, int, int], torch.Tensor]] = (
            [] if ready is None else [((0, h, 0, w), ready)])

    def _run_until(self, row: int) -> None:
        """Run the windows that start above `row` (in batches, in grid order)."""
        while self.pending and self.pending[0][0] < row:
            batch = [self.pending.popleft() for _ in range(min(self.batch_size, len(self.pending)))]
            crops = torch.cat([self.x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in batch])
            logits = self.forward(crops)
            self.live += [(win, logits[i]) for i, win in enumerate(batch)]

    def _input_rows(self, a: int, b: int) -> torch.Tensor:
        """Rows a:b of the window-averaged logits at the (resized) input size."""
        self._run_until(b)
        self.live = [(win, lg) for win, lg in self.live if win[1] > a]
        k = self.live[0][1].shape[0]
        total = self.x.new_zeros((k, b - a, self.in_size[1]), dtype=torch.float32)
        count = self.x.new_zeros((1, b - a, self.in_size[1]), dtype=torch.float32)
        for (y1, y2, x1, x2), lg in self.live:
            r0, r1 = max(a, y1), min(b, y2)
            if r0 >= r1:
                continue
            part = _resize_rows(lambda lo, hi: lg[:, lo:hi], tuple(lg.shape[-2:]), (y2 - y1, x2 - x1),
                                r0 - y1, r1 - y1)
            total[:, r0 - a:r1 - a, x1:x2] += part
            count[:, r0 - a:r1 - a, x1:x2] += 1
        return total / count

    def rows(self, a: int, b: int) -> torch.Tensor:
        if self.valid == self.in_size:
            out = _resize_rows(self._input_rows, self.in_size, self.out_size, a, b)
        else:
            out = _resize_rows(lambda lo, hi: self._input_rows(lo, hi)[:, :, :self.valid[1]], self.valid,
                               self.out_size, a, b)
        return out.flip(-1) if self.flipped else out


def _band_rows(num_classes: int, widths: Sequence[int]) -> int:
    return max(1, BAND_BYTES // (4 * num_classes * max(widths)))


# -------------------------------------------------------------------------------------------------- the iterator


def half_dtype(device: torch.device, preferred: Optional[str] = None) -> torch.dtype:
    """The `--half` autocast type: float16 on CUDA (bfloat16 where the model asks for it and the GPU has it);
    bfloat16 on a CPU that computes it natively (AVX512-BF16 or AMX; there it runs matmuls and convs several times
    faster than float32), else an error."""
    if device.type == "cuda":
        if preferred == "bfloat16" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    raise VitsegError(f"--half: no native half precision on {device.type} here (needs CUDA, or a CPU with "
                      "AVX512-BF16/AMX)")


def _model_forward(model: Any, device: torch.device, half: bool, compiled: bool = False,
                   procedure: str = "mmseg") -> Callable[[torch.Tensor], torch.Tensor]:
    dtype = half_dtype(device, getattr(model, "half_dtype", None)) if half else None
    request = score_request(procedure) or {}
    if compiled and isinstance(model, torch.nn.Module):
        # one graph per input size (dynamic=False): the sizes of a dataset repeat, and fixed shapes compile best
        model = torch.compile(model, dynamic=False)
        # the lru_cache'd geometry helpers are pure functions of shapes, device and dtype: tracing through is right
        warnings.filterwarnings("ignore", message=r"Dynamo detected a call to a `functools\.lru_cache`")

    def forward(x: torch.Tensor) -> torch.Tensor:
        if dtype is not None:  # deformable-attention sampling stays float32 inside MSDeformAttn
            with torch.autocast(device_type=device.type, dtype=dtype):
                out = model(x, **request)
        else:
            out = model(x, **request)
        return torch.as_tensor(out, device=x.device).float()

    return forward


def _pass_inputs(item: dict[str, Any], settings: InferenceSettings, device: torch.device):
    """(input, flipped, valid) of each TTA pass, in pass order: per scale, as is then mirrored; `valid` is the
    unpadded (h, w) when the padding's scores are to be cut off, else None."""
    flipped = item.get("flipped") or [None] * len(item["inputs"])
    crop = settings.crop_pad and settings.mode == "slide" and "valid" in item
    for k, x in enumerate(item["inputs"]):
        valid = tuple(item["valid"][k]) if crop else None
        x = x.to(device, non_blocking=True)[None]
        yield x, False, valid
        if settings.flip:
            mirrored = x.flip(-1) if flipped[k] is None else flipped[k].to(device, non_blocking=True)[None]
            yield mirrored, True, valid


TOP1_ROW_STEP = 4  # the rows the top-1 probability statistics are taken on: 0, 4, 8, ...


def _predict_one(forward, item: dict[str, Any], settings: InferenceSettings, device: torch.device,
                 num_classes: int, want_probs: bool,
                 ready: Optional[list[torch.Tensor]] = None) -> tuple[np.ndarray, Optional[np.ndarray], tuple]:
    """Labels, the averaged softmax when `want_probs`, and the (mean, minimum) top-1 probability over the pixels of
    every TOP1_ROW_STEP-th row."""
    out_size = tuple(int(s) for s in item["size"])
    passes = [_ScorePass(forward, x, settings, out_size, flipped, None if ready is None else ready[k], valid)
              for k, (x, flipped, valid) in enumerate(_pass_inputs(item, settings, device))]
    label_dtype = np.uint8 if num_classes <= 255 else np.uint16 if num_classes <= 65535 else np.int32
    labels = np.empty(out_size, dtype=label_dtype)
    probs = np.empty((num_classes, *out_size), dtype=np.float16) if want_probs else None
    step = _band_rows(num_classes, [out_size[1]] + [p.in_size[1] for p in passes])
    top1_sum, top1_min, top1_count = 0.0, 1.0, 0
    for a in range(0, out_size[0], step):
        b = min(out_size[0], a + step)
        if len(passes) == 1 and probs is None:
            total = passes[0].rows(a, b)  # softmax keeps the order: the argmax of the logits is the label
        else:
            total = None
            for p in passes:
                prob = p.rows(a, b).softmax(0)
                total = prob if total is None else total + prob
            if len(passes) > 1:
                total /= len(passes)
        # max(0).indices: same first-maximum rule as argmax(0), several times faster on CPU over the class axis
        top = total.max(0)
        labels[a:b] = top.indices.cpu().numpy().astype(label_dtype)
        if probs is not None:
            probs[:, a:b] = total.half().cpu().numpy()
        # the top-1 probability on every TOP1_ROW_STEP-th image row (all of it would cost more than the argmax on
        # a CPU); raw logits in the one-pass case: the top softmax value is exp(max - logsumexp)
        first = (-a) % TOP1_ROW_STEP
        top1 = top.values[first::TOP1_ROW_STEP]
        if top1.numel():
            if len(passes) == 1 and probs is None:
                top1 = (top1 - total[:, first::TOP1_ROW_STEP].logsumexp(0)).exp()
            top1_sum += float(top1.double().sum())
            top1_count += top1.numel()
            top1_min = min(top1_min, float(top1.min()))
    return labels, probs, (top1_sum / max(1, top1_count), top1_min)


def iter_predictions(model: Any, paths: Sequence[Path], settings: InferenceSettings, device: torch.device, *,
                     workers: int = 0, want_probs: bool = False, keep_image: bool = False) -> Iterator[Prediction]:
    """One `Prediction` per path, in order. `model` is a Segmentor (or any callable `(x) -> logits` with a `.spec`);
    a bad file yields a Prediction with `.error` set instead of raising."""
    spec: Spec = model.spec
    dataset = _ImageDataset(paths, settings, spec.data.mean, spec.data.std, keep_image)
    yield from _predict_dataset(model, dataset, settings, device, workers, want_probs)


def iter_video_predictions(model: Any, path: Path, settings: InferenceSettings, device: torch.device, *,
                           stride: int = 1, workers: int = 0, want_probs: bool = False,
                           keep_image: bool = False) -> Iterator[Prediction]:
    """One `Prediction` per kept frame of the video at `path` (`.frame` = its index among all frames), in order;
    an unreadable video yields one Prediction with `.error` set."""
    spec: Spec = model.spec
    dataset = _VideoFrames(path, stride, settings, spec.data.mean, spec.data.std, keep_image)
    yield from _predict_dataset(model, dataset, settings, device, min(workers, 1), want_probs)


class _Prepared(torch.utils.data.IterableDataset):
    def __init__(self, items: Iterable[dict[str, Any]]):
        self.items = items

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.items)


def iter_prepared_predictions(model: Any, items: Iterable[dict[str, Any]], settings: InferenceSettings,
                              device: torch.device, *, want_probs: bool = False) -> Iterator[Prediction]:
    """One `Prediction` per item made by `prepare_item`, in order, the items taken only as they are needed (the
    Python API's stream over a generator); in whole mode, same-size images share forward passes as in a run."""
    yield from _predict_dataset(model, _Prepared(items), settings, device, 0, want_probs)


def _predict_dataset(model: Any, dataset: torch.utils.data.Dataset, settings: InferenceSettings,
                     device: torch.device, workers: int, want_probs: bool) -> Iterator[Prediction]:
    settings.validate()
    spec: Spec = model.spec
    if isinstance(model, torch.nn.Module):
        model.to(device).eval()
    num_classes = spec.model.num_classes
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                         collate_fn=_identity, worker_init_fn=worker_init if workers else None,
                                         pin_memory=device.type == "cuda")
    forward = _model_forward(model, device, settings.half, settings.compile, settings.procedure)
    # whole mode: consecutive images of one input size share forward passes, batch_size at a time
    batching = settings.mode == "whole" and settings.batch_size > 1

    def run(items: list[dict[str, Any]]) -> list[Prediction]:
        # inference mode only while computing: held across a yield, it would stay on in the caller's thread for as
        # long as the generator is suspended (a consumer that stops early leaves it on until garbage collection)
        with torch.inference_mode():
            return list(_predict_group(forward, items, settings, device, num_classes, want_probs))

    group: list[dict[str, Any]] = []
    for item in loader:
        if batching and not item["error"]:
            if group and _input_shapes(item) != _input_shapes(group[0]):
                yield from run(group)
                group = []
            group.append(item)
            if len(group) == settings.batch_size:
                yield from run(group)
                group = []
            continue
        if group:
            yield from run(group)
            group = []
        yield from run([item])
    if group:
        yield from run(group)


def predict_items(model: Any, dataset: torch.utils.data.Dataset, settings: InferenceSettings, device: torch.device,
                  *, workers: int = 0, want_probs: bool = False) -> Iterator[Prediction]:
    """`iter_predictions` over any dataset of `prepare_item` dicts (or error dicts): a tar shard's samples. An item's
    optional `read_bytes` (bytes read to make it) comes back in the Prediction's `timings`."""
    yield from _predict_dataset(model, dataset, settings, device, workers, want_probs)


def predict_array(model: Any, image: np.ndarray, settings: InferenceSettings, device: torch.device, *,
                  want_probs: bool = False, path: Optional[Path] = None) -> Prediction:
    """`iter_predictions` for one RGB uint8 (H, W, 3) image already in memory: the same preprocessing, windows, TTA
    and argmax. The model's train/eval mode is restored afterwards."""
    settings.validate()
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.to(device).eval()
    try:
        item = prepare_item(image, settings, model.spec.data.mean, model.spec.data.std, True, path=path)
        forward = _model_forward(model, device, settings.half, settings.compile, settings.procedure)
        with torch.inference_mode():
            return next(_predict_group(forward, [item], settings, device, model.spec.model.num_classes, want_probs))
    finally:
        if was_training:
            model.train()


def _input_shapes(item: dict[str, Any]) -> tuple:
    return tuple(tuple(x.shape) for x in item["inputs"])


def _predict_group(forward, items: list[dict[str, Any]], settings: InferenceSettings, device: torch.device,
                   num_classes: int, want_probs: bool) -> Iterator[Prediction]:
    """Predictions of items in order; several same-size items (whole mode) share one forward per TTA pass."""
    readies: list[Optional[list[torch.Tensor]]] = [None] * len(items)
    start = time.perf_counter()
    if len(items) > 1:
        try:
            per_pass = [forward(torch.cat(xs)) for xs in zip(*[[x for x, _, _ in _pass_inputs(it, settings, device)]
                                                                 for it in items])]
            readies = [[logits[j] for logits in per_pass] for j in range(len(items))]
        except torch.cuda.OutOfMemoryError:  # the batch does not fit: one image at a time
            torch.cuda.empty_cache()
    for item, ready in zip(items, readies):
        path = item["path"]
        if item["error"]:
            yield Prediction(path=path, labels=None, probs=None, image=None, error=item["error"],
                             timings={"read_bytes": item.get("read_bytes", 0)})
            continue
        try:
            labels, probs, top1 = _predict_one(forward, item, settings, device, num_classes, want_probs, ready)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            h, w = item["size"]
            yield Prediction(path=path, labels=None, probs=None, image=None,
                             error=f"{path}: out of GPU memory for this {w}x{h} image (try --mode slide, a "
                                   f"smaller --crop-size or --device cpu)")
            continue
        yield Prediction(path=path, labels=labels, probs=probs, image=item.get("image"), error=None,
                         timings={"infer_s": (time.perf_counter() - start) / len(items),
                                  "read_bytes": item.get("read_bytes", 0)}, frame=item.get("frame"), top1=top1)
