"""The synthetic dataset: deterministic per seed, valid folder format, and colour alone does not give the class."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, read_label
from vitseg_cli.data.synth import SYNTH_CLASSES, make_synthetic, parse_size, render_sample
from vitseg_cli.errors import VitsegError


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = make_synthetic(tmp_path / "a", 3, seed=7, size=(48, 64))
    b = make_synthetic(tmp_path / "b", 3, seed=7, size=(48, 64))
    c = make_synthetic(tmp_path / "c", 3, seed=8, size=(48, 64))
    assert _digest(a) == _digest(b)
    assert _digest(a)["images/00000.png"] != _digest(c)["images/00000.png"]
    assert sorted(_digest(a)) == ["classes.yaml", "images/00000.png", "images/00001.png", "images/00002.png",
                                  "masks/00000.png", "masks/00001.png", "masks/00002.png"]


def test_worker_processes_write_the_same_files(tmp_path):
    seen: list[int] = []
    one = make_synthetic(tmp_path / "one", 5, seed=3, size=(32, 48))
    many = make_synthetic(tmp_path / "many", 5, seed=3, size=(32, 48), workers=2, progress=seen.append)
    assert _digest(one) == _digest(many)
    assert seen == [1, 2, 3, 4, 5]


def test_written_files_follow_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    out = make_synthetic(tmp_path / "u", 1, seed=0, size=(16, 16))
    for path in (out / "images" / "00000.png", out / "masks" / "00000.png", out / "classes.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path  # not mkstemp's private 0600


def test_folder_layout_and_label_values(tmp_path):
    out = make_synthetic(tmp_path / "s", 4, seed=0, size=(40, 56))
    meta = yaml.safe_load((out / "classes.yaml").read_text())
    assert meta["classes"] == SYNTH_CLASSES and len(meta["palette"]) == 6
    seen = set()
    for i in range(4):
        img = read_image(out / "images" / f"{i:05d}.png")
        lab = read_label(out / "masks" / f"{i:05d}.png")
        assert img.shape == (40, 56, 3) and img.dtype == np.uint8
        assert lab.shape == (40, 56) and lab.max() <= 5
        seen |= set(np.unique(lab).tolist())
    assert 0 in seen and len(seen) >= 3


def test_colour_alone_does_not_decide_the_class():
    # Per-class mean colours over many images lie close together, and a nearest-mean-colour classifier is poor.
    images, labels = zip(*(render_sample(np.random.default_rng([3, i]), (64, 64)) for i in range(40)))
    pix = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64)
    lab = np.concatenate([lb.ravel() for lb in labels])
    means = np.stack([pix[lab == c].mean(0) for c in range(6)])
    spread = np.linalg.norm(means[:, None] - means[None], axis=-1).max()
    assert spread < 45, means  # RGB units (0..255): every class averages out to a similar grey
    nearest = np.argmin(((pix[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    balanced = np.mean([(nearest[lab == c] == c).mean() for c in range(6)])
    assert balanced < 0.4  # chance is 1/6; a colour-decided task would be near 1


def test_easy_mode_draws_the_same_scenes_with_colour_deciding_the_class():
    # Same seed -> the same label masks as the default data; then the nearest-mean-colour classifier that fails on
    # the default data (test above) is near perfect, which is what lets a from-scratch model learn it quickly.
    images, labels = [], []
    for i in range(20):
        image, label = render_sample(np.random.default_rng([3, i]), (64, 64), easy=True)
        _, hard_label = render_sample(np.random.default_rng([3, i]), (64, 64))
        assert np.array_equal(label, hard_label), i
        images.append(image)
        labels.append(label)
    pix = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64)
    lab = np.concatenate([lb.ravel() for lb in labels])
    means = np.stack([pix[lab == c].mean(0) for c in range(6)])
    nearest = np.argmin(((pix[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    balanced = np.mean([(nearest[lab == c] == c).mean() for c in range(6)])
    assert balanced > 0.9, balanced


def test_cli_easy_flag_writes_easy_images(tmp_path):
    res = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "e"), "--num", "2", "--seed", "4", "--size",
                                   "48x32", "--easy", "--workers", "1"])
    assert res.exit_code == 0, res.output
    for i in range(2):
        image, label = render_sample(np.random.default_rng([4, i]), (32, 48), easy=True)
        assert np.array_equal(read_image(tmp_path / "e" / "images" / f"{i:05d}.png"), image)
        assert np.array_equal(read_label(tmp_path / "e" / "masks" / f"{i:05d}.png"), label)


def test_every_shape_class_appears():
    counts = np.zeros(6, np.int64)
    for i in range(20):
        counts += np.bincount(render_sample(np.random.default_rng([0, i]), (64, 64))[1].ravel(), minlength=6)
    assert (counts > 0).all(), counts


def test_parse_size_and_bad_input(tmp_path):
    assert parse_size("48x32") == (32, 48) and parse_size("64") == (64, 64)  # WxH in, (H, W) out
    with pytest.raises(VitsegError, match="WxH"):
        parse_size("big")
    with pytest.raises(VitsegError, match="--num"):
        make_synthetic(tmp_path / "x", 0, seed=0)


def test_cli_synth(tmp_path):
    res = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--num", "2", "--seed", "1",
                                   "--size", "32x32"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d" / "masks").glob("*.png"))) == 2
    res = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "e"), "--size", "3x3"])
    assert res.exit_code == 2 and "--size" in res.output
    assert not (tmp_path / "e").exists()
