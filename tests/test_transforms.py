"""The mmseg training pipeline on numpy: resize, cat_max_ratio crop, flip consistency, photometric, pad with ignore."""

from __future__ import annotations

import numpy as np
import pytest

from vitseg_cli.data import transforms as T


def _scene(h=60, w=80):
    """Left 90% class 1, a thin right strip class 2; image encodes column index in red and label in green."""
    label = np.ones((h, w), np.int64)
    label[:, int(w * 0.9):] = 2
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w)[None, :]
    img[..., 1] = label * 100
    return img, label


def test_rescale_size_mmcv():
    assert T.rescale_size(512, 683, (2048, 512)) == (512, 683)
    assert T.rescale_size(100, 800, (2048, 512)) == (256, 2048)  # long side bound: min(2048/800, 512/100)
    assert T.rescale_size(1000, 1000, (300, 200)) == (200, 200)


def test_random_resize_keeps_ratio_and_label_values():
    img, label = _scene(60, 80)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out, lab = T.random_resize(img, label, (80, 60), (0.5, 2.0), rng)
        assert out.shape[:2] == lab.shape and lab.dtype == np.int64
        assert abs(out.shape[1] / out.shape[0] - 80 / 60) < 0.05
        assert set(np.unique(lab)) <= {1, 2}
        assert 30 * 0.5 - 1 <= out.shape[0] <= 60 * 2 + 1


def test_cat_max_ratio_retries_until_balanced():
    img, label = _scene(64, 200)  # class 2 only in the right 20 columns
    crop = (32, 32)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        _, lab = T.random_crop(img, label, crop, 0.75, 255, rng)
        # any accepted crop drawn by the retry loop has both classes with class 1 < 75%, or it used all 11 boxes
        if T.crop_is_balanced(lab, 0.75, 255):
            assert (lab == 2).any() and (lab == 1).mean() < 0.75
    balanced = sum(T.crop_is_balanced(T.random_crop(img, label, crop, 0.75, 255, np.random.default_rng(s))[1],
                                       0.75, 255) for s in range(40))
    unbalanced_without = sum(T.crop_is_balanced(T.random_crop(img, label, crop, 1.0, 255,
                                                              np.random.default_rng(s))[1], 0.75, 255)
                             for s in range(40))
    assert balanced > unbalanced_without + 10


def test_crop_balance_ignores_ignore_pixels():
    lab = np.full((10, 10), 255, np.int64)
    lab[0, :4] = 1
    lab[1, :4] = 2
    assert T.crop_is_balanced(lab, 0.75, 255)          # 50/50 of the non-ignore pixels
    assert not T.crop_is_balanced(np.ones((4, 4), np.int64), 0.75, 255)  # a single class never passes


def test_flip_moves_image_and_label_together():
    img, label = _scene()
    flipped = 0
    for seed in range(10):
        out, lab = T.random_flip(img, label, 0.5, np.random.default_rng(seed))
        assert np.array_equal(out[..., 1] // 100, lab)  # label still matches the pixels it labels
        flipped += out[0, 0, 0] != 0
    assert 0 < flipped < 10


def test_pad_uses_zero_and_ignore():
    img = np.ones((5, 7, 3), np.float32)
    lab = np.zeros((5, 7), np.int64)
    pi, pl = T.pad_to(img, lab, (8, 9), 255)
    assert pi.shape == (8, 9, 3) and pl.shape == (8, 9)
    assert (pi[5:] == 0).all() and (pi[:, 7:] == 0).all() and (pi[:5, :7] == 1).all()
    assert (pl[5:] == 255).all() and (pl[:, 7:] == 255).all() and (pl[:5, :7] == 0).all()


def test_photometric_changes_colour_only_and_is_reproducible():
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a = T.photometric_distortion(img, np.random.default_rng(3))
    b = T.photometric_distortion(img, np.random.default_rng(3))
    assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert any(not np.array_equal(T.photometric_distortion(img, np.random.default_rng(s)), img) for s in range(5))


def test_train_transform_shapes_padding_and_determinism():
    img, label = _scene(40, 50)
    kw = dict(scale=(50, 40), ratio_range=(0.5, 0.6), crop_size=(48, 48), cat_max_ratio=0.75, flip_prob=0.5,
              photometric=True, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), ignore_index=255)
    x, y = T.train_transform(img, label, rng=np.random.default_rng(7), **kw)
    x2, y2 = T.train_transform(img, label, rng=np.random.default_rng(7), **kw)
    assert x.shape == (3, 48, 48) and x.dtype == np.float32 and y.shape == (48, 48) and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    # the image was resized to at most 30 px: the rest is padding
    assert (y[30:] == 255).all() and (x[:, 30:] == 0).all()
    assert set(np.unique(y)) <= {1, 2, 255}


@pytest.mark.parametrize("value", [0, 254, 255, 1000])
def test_resize_label_keeps_values(value):
    lab = np.full((7, 9), value, np.int64)
    assert (T.resize_label(lab, 14, 18) == value).all()
