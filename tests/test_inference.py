"""The shared inference path: official pipeline sizes and windows, band-wise scores == full buffers, TTA, devices."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vitseg_cli import build_model
from vitseg_cli.data.io import write_image
from vitseg_cli.engine import inference
from vitseg_cli.engine.device import resolve_device
from vitseg_cli.engine.inference import InferenceSettings, iter_predictions, preprocess, resized_shape, slide_windows
from vitseg_cli.errors import VitsegError
from vitseg_cli.spec import IMAGENET_MEAN, IMAGENET_STD, ResizeSpec, load_spec

CPU = torch.device("cpu")


def noisy_nano(num_classes: int = 5, seed: int = 0) -> nn.Module:
    """A nano model whose every weight is perturbed, so logits differ clearly between classes and pixels."""
    torch.manual_seed(seed)
    model = build_model(load_spec("nano").updated(model={"num_classes": num_classes}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.decode_head.conv_seg.weight.mul_(50)
    return model.eval()


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (7, 7), 2)  # some structure, so windows see different content


# --------------------------------------------------------------------------------------------- official pipeline


def test_resize_follows_the_official_pipeline_numbers():
    official = ResizeSpec(scale=(2048, 512), keep_ratio=True, size_divisor=32)
    # the official test pipeline (parity README): 600x450 -> 683x512 -> 704x512
    assert resized_shape(450, 600, official) == (512, 683)
    assert preprocess(np.zeros((450, 600, 3), np.uint8), official, 1.0, IMAGENET_MEAN, IMAGENET_STD).shape == \
        (3, 512, 704)
    # the long side bounds it: 8x900 -> factor min(2048/900, 512/8) = 2.2755... -> 18x2048
    assert resized_shape(8, 900, official) == (18, 2048)
    assert resized_shape(1, 1, official) == (512, 512)
    assert resized_shape(5, 7, None) == (5, 7)
    assert resized_shape(450, 600, official, ratio=0.5) == (256, 341)  # scale (1024, 256)


def test_normalize_uses_the_spec_mean_and_std():
    img = np.full((4, 4, 3), (10, 120, 250), np.uint8)
    x = preprocess(img, None, 1.0, IMAGENET_MEAN, IMAGENET_STD)
    expected = (np.array([10, 120, 250]) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-6)


def test_slide_windows_match_mmseg():
    # 704x512 with crop 512 stride 341: one row, two windows, the second clamped to the right edge
    assert slide_windows(512, 704, (512, 512), (341, 341)) == [(0, 512, 0, 512), (0, 512, 192, 704)]
    assert slide_windows(100, 60, (512, 512), (341, 341)) == [(0, 100, 0, 60)]
    wins = slide_windows(100, 70, (48, 48), (32, 32))
    assert len(wins) == 3 * 2 and all(y2 - y1 == 48 and x2 - x1 == 48 for y1, y2, x1, x2 in wins)


# --------------------------------------------------------------------------------------- band-wise == full buffer


def reference_probs(model, image: np.ndarray, settings: InferenceSettings) -> np.ndarray:
    """mmseg's slide/aug inference written plainly with full (K, H, W) buffers."""
    H, W = image.shape[:2]
    total = 0
    for ratio in settings.scales:
        if settings.resize is None:
            nh, nw = int(H * ratio + 0.5), int(W * ratio + 0.5)
        else:
            sw, sh = int(settings.resize.scale[0] * ratio), int(settings.resize.scale[1] * ratio)
            f = min(max(sw, sh) / max(H, W), min(sw, sh) / min(H, W))
            nh, nw = int(H * f + 0.5), int(W * f + 0.5)
        img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (H, W) else image
        if settings.resize is not None:
            d = settings.resize.size_divisor
            img = cv2.resize(img, (-(-nw // d) * d, -(-nh // d) * d), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(((img - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).astype(np.float32))
        x = x.permute(2, 0, 1)[None]
        for flip in ([False, True] if settings.flip else [False]):
            xi = x.flip(-1) if flip else x
            h, w = xi.shape[-2:]
            ch, cw = settings.crop_size
            sh, sw = settings.stride
            preds = torch.zeros(1, model.num_classes, h, w)
            count = torch.zeros(1, 1, h, w)
            for i in range(max(h - ch + sh - 1, 0) // sh + 1):
                for j in range(max(w - cw + sw - 1, 0) // sw + 1):
                    y1, x1 = i * sh, j * sw
                    y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
                    y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
                    with torch.no_grad():
                        lg = model(xi[:, :, y1:y2, x1:x2])
                    preds[:, :, y1:y2, x1:x2] += F.interpolate(lg, (y2 - y1, x2 - x1), mode="bilinear",
                                                               align_corners=False)
                    count[:, :, y1:y2, x1:x2] += 1
            out = F.interpolate(preds / count, (H, W), mode="bilinear", align_corners=False).softmax(1)
            total = total + (out.flip(-1) if flip else out)
    return (total / (len(settings.scales) * (2 if settings.flip else 1)))[0].numpy()


@pytest.mark.parametrize("resize,flip,scales", [
    (ResizeSpec(scale=(160, 80), keep_ratio=True, size_divisor=32), False, [1.0]),
    (None, True, [1.0, 0.75]),
])
def test_band_wise_scores_equal_the_full_buffer_reference(tmp_path, monkeypatch, resize, flip, scales):
    model = noisy_nano()
    image = random_image(80, 100)
    write_image(tmp_path / "img.png", image)
    settings = InferenceSettings(mode="slide", crop_size=(48, 48), stride=(32, 32), flip=flip, scales=scales,
                                 resize=resize, batch_size=3)
    monkeypatch.setattr(inference, "BAND_BYTES", 4 * 5 * 100 * 7)  # bands of 7 rows: many band edges
    pred = next(iter_predictions(model, [tmp_path / "img.png"], settings, CPU, want_probs=True))
    assert pred.error is None
    ref = reference_probs(model, image, settings)
    assert pred.probs.shape == ref.shape == (5, 80, 100)
    np.testing.assert_allclose(pred.probs.astype(np.float32), ref, atol=2e-3)  # float16 storage
    top2 = np.sort(ref, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert clear.mean() > 0.95
    assert np.array_equal(pred.labels[clear], ref.argmax(0)[clear])
    assert len(np.unique(pred.labels)) > 1  # a constant answer would make the comparison empty


def test_only_windows_near_the_current_band_are_kept(tmp_path, monkeypatch):
    """The bounded-memory mechanism: window logits are dropped once the bands below them are done, and no band
    holds the whole image."""
    model = noisy_nano()
    write_image(tmp_path / "tall.png", random_image(240, 40))
    settings = InferenceSettings(mode="slide", crop_size=(32, 32), stride=(16, 16), flip=False, scales=[1.0],
                                 resize=None)
    seen_live, seen_rows = [], []
    original = inference._ScorePass._input_rows

    def spy(self, a, b):
        out = original(self, a, b)
        seen_live.append(len(self.live))
        seen_rows.append(b - a)
        return out

    monkeypatch.setattr(inference._ScorePass, "_input_rows", spy)
    monkeypatch.setattr(inference, "BAND_BYTES", 4 * 5 * 40 * 16)
    pred = next(iter_predictions(model, [tmp_path / "tall.png"], settings, CPU))
    assert pred.labels.shape == (240, 40)
    w_grids = len({x1 for _, _, x1, _ in slide_windows(240, 40, (32, 32), (16, 16))})
    assert len(slide_windows(240, 40, (32, 32), (16, 16))) == 14 * w_grids
    assert max(seen_live) <= 3 * w_grids  # the full image has 14 rows of windows
    assert max(seen_rows) <= 16


# ------------------------------------------------------------------------------------------------------ flip TTA


class MirrorSymmetricModel(nn.Module):
    """Logits at 1/4 from convolutions with left-right symmetric kernels: mirroring the input mirrors the output."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        torch.manual_seed(1)
        self.spec = load_spec("nano").updated(model={"num_classes": num_classes})
        self.conv = nn.Conv2d(3, num_classes, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_((self.conv.weight + self.conv.weight.flip(-1)) * 3)

    def forward(self, x):
        return F.avg_pool2d(self.conv(x), 4)


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model(tmp_path):
    model = MirrorSymmetricModel()
    image = random_image(64, 96, seed=3)
    assert not np.array_equal(image, image[:, ::-1])
    write_image(tmp_path / "img.png", image)
    base = dict(mode="whole", crop_size=(64, 64), stride=(32, 32), scales=[1.0], resize=None)
    plain = next(iter_predictions(model, [tmp_path / "img.png"], InferenceSettings(flip=False, **base), CPU,
                                  want_probs=True))
    flipped = next(iter_predictions(model, [tmp_path / "img.png"], InferenceSettings(flip=True, **base), CPU,
                                    want_probs=True))
    assert len(np.unique(plain.labels)) > 1
    np.testing.assert_allclose(flipped.probs.astype(np.float32), plain.probs.astype(np.float32), atol=2e-3)
    # if the flipped pass were not mirrored back, the average would differ from the plain pass
    wrong = (plain.probs.astype(np.float32) + plain.probs[:, :, ::-1].astype(np.float32)) / 2
    assert np.abs(wrong - plain.probs.astype(np.float32)).max() > 0.05


# -------------------------------------------------------------------------------------------- settings / devices


def test_settings_from_spec_ignore_none_overrides():
    spec = load_spec("nano")
    s = InferenceSettings.from_spec(spec, mode=None, flip=True, crop_size=(64, 64), batch_size=None)
    assert s.resize is None and s.mode == "whole" and s.flip is True and s.crop_size == (64, 64)
    assert s.batch_size == 1 and s.scales == [1.0]
    official = InferenceSettings.from_spec(load_spec(None))
    assert official.resize.scale == (2048, 512) and official.stride == (341, 341) and official.mode == "slide"
    with pytest.raises(VitsegError, match="scales"):
        InferenceSettings.from_spec(spec, scales=[0.0])


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(VitsegError, match="expected auto, cpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VitsegError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_a_bad_file_yields_an_error_and_the_rest_goes_on(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_image(tmp_path / "good.png", random_image(20, 30))
    settings = InferenceSettings.from_spec(load_spec("nano"))
    preds = list(iter_predictions(noisy_nano(), [tmp_path / "bad.png", tmp_path / "missing.jpg",
                                                 tmp_path / "good.png"], settings, CPU, keep_image=True))
    assert [p.ok for p in preds] == [False, False, True]
    assert "bad.png" in preds[0].error and "\n" not in preds[0].error
    assert "missing.jpg" in preds[1].error
    assert preds[2].labels.shape == (20, 30) and preds[2].image.shape == (20, 30, 3)


def test_same_size_images_batched_in_whole_mode_give_the_one_by_one_results(tmp_path, monkeypatch):
    sizes = [(40, 56), (40, 56), (40, 56), (33, 47), (40, 56)]  # runs of one size, a size change, a bad file
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        write_image(paths[-1], random_image(h, w, seed=i))
    paths.insert(2, tmp_path / "missing.png")
    model = noisy_nano()
    calls = []
    forward = inference._model_forward
    monkeypatch.setattr(inference, "_model_forward", lambda *a: (lambda x: calls.append(x.shape[0]) or
                                                                 forward(*a)(x)))
    base = InferenceSettings.from_spec(load_spec("nano"), mode="whole", flip=True, scales=[1.0, 0.75])
    single = list(iter_predictions(model, paths, base, CPU, want_probs=True))
    calls.clear()
    batched = list(iter_predictions(model, paths, InferenceSettings.from_spec(
        load_spec("nano"), mode="whole", flip=True, scales=[1.0, 0.75], batch_size=2), CPU, want_probs=True))
    assert [p.path for p in batched] == paths and [p.ok for p in batched] == [True, True, False, True, True, True]
    assert max(calls) == 2  # some passes really ran two images at once
    for a, b in zip(single, batched):
        if a.ok:
            assert np.abs(a.probs.astype(np.float32) - b.probs.astype(np.float32)).max() < 2e-3
            assert (a.labels == b.labels).mean() > 0.999


def _cpu_has_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no native bfloat16")
def test_half_on_cpu_runs_bfloat16_and_keeps_the_labels(tmp_path):
    from vitseg_cli.data.synth import make_synthetic
    from vitseg_cli.engine.common import load_inference_model

    data = make_synthetic(tmp_path / "d", 3, seed=5)
    paths = sorted((data / "images").glob("*.png"))
    model = load_inference_model(None, None, CPU)  # the shipped default model: confident, realistic logits
    spec_settings = InferenceSettings.from_spec(model.spec)
    full = list(iter_predictions(model, paths, spec_settings, CPU, want_probs=True))
    half = list(iter_predictions(model, paths, InferenceSettings.from_spec(model.spec, half=True), CPU,
                                 want_probs=True))
    for a, b in zip(full, half):
        assert a.ok and b.ok
        assert not np.array_equal(a.probs, b.probs)  # bfloat16 really ran
        assert np.abs(a.probs.astype(np.float32) - b.probs.astype(np.float32)).max() < 0.5
        assert (a.labels == b.labels).mean() > 0.99


def test_half_without_native_half_precision_is_a_clear_error():
    with pytest.raises(VitsegError, match="--half: no native half precision on meta"):
        inference.half_dtype(torch.device("meta"))
    assert inference.half_dtype(torch.device("cuda")) == torch.float16
