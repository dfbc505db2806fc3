"""`vitseg visualize` and the drawing code it shares with predict: pixels at known places, a gallery that links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.viz import ERROR_COLORS, error_map, overlay, with_legend

runner = CliRunner()
PALETTE = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]


def test_overlay_blends_by_alpha_at_known_pixels():
    image = np.full((4, 4, 3), 100, np.uint8)
    labels = np.zeros((4, 4), np.int64)
    labels[1, 2] = 1
    out = overlay(image, labels, PALETTE, alpha=0.25)
    assert tuple(out[1, 2]) == (139, 75, 75)  # 0.75*100 + 0.25*255 = 138.75 -> 139; 0.75*100 = 75
    assert tuple(out[0, 0]) == (75, 75, 75)
    assert np.array_equal(overlay(image, labels, PALETTE, alpha=0.0), image)


def test_error_map_colours():
    gt = np.array([[0, 1], [2, 255]])
    pred = np.array([[0, 2], [2, 1]])
    out = error_map(pred, gt, ignore_index=255)
    assert tuple(out[0, 0]) == ERROR_COLORS["correct"]
    assert tuple(out[0, 1]) == ERROR_COLORS["wrong"]
    assert tuple(out[1, 0]) == ERROR_COLORS["correct"]
    assert tuple(out[1, 1]) == ERROR_COLORS["ignored"]
    assert len(set(ERROR_COLORS.values())) == 3


def test_legend_lists_present_classes_with_their_colours():
    image = np.zeros((40, 30, 3), np.uint8)
    labels = np.zeros((40, 30), np.int64)
    labels[:, 15:] = 2
    out = with_legend(image, labels, ["bg", "red", "blue"], PALETTE)
    assert out.shape[1] > 30 and np.array_equal(out[:40, :30], image)
    legend = out[:, 30:]
    # swatches at rows 6..18 (class 0) and 24..36 (class 2, the second entry); class 1 is absent
    assert tuple(legend[12, 12]) == (0, 0, 0)
    assert tuple(legend[30, 12]) == (0, 0, 255)
    assert not np.any(np.all(legend == (255, 0, 0), axis=-1))


@pytest.fixture()
def small_set(tmp_path: Path):
    images, gt, pred = tmp_path / "images", tmp_path / "gt", tmp_path / "pred"
    rng = np.random.default_rng(0)
    for name, wrong in (("good", 0), ("bad", 200)):
        write_image(images / f"{name}.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
        label = np.zeros((20, 20), np.uint8)
        label[:, 10:] = 1
        label[0, 0] = 255
        write_image(gt / f"{name}.png", label)
        p = label.copy()
        p[0, 0] = 0
        p.reshape(-1)[1:1 + wrong] = 2
        write_image(pred / f"{name}.png", p)
    (tmp_path / "classes.yaml").write_text("classes: [bg, red, blue]\npalette: [[0,0,0],[255,0,0],[0,0,255]]\n")
    return tmp_path


def test_visualize_panels_and_gallery(small_set):
    out = small_set / "viz"
    result = runner.invoke(app, ["visualize", str(small_set / "images"), "--masks", str(small_set / "pred"),
                                 "--gt", str(small_set / "gt"), "--classes", str(small_set / "classes.yaml"),
                                 "--out", str(out), "--gallery", "--alpha", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    overlay_img = read_image(out / "overlay" / "good.jpg")
    assert np.abs(overlay_img[10, 15].astype(int) - (255, 0, 0)).max() < 40  # alpha 1: the class colour (JPEG)
    page = (out / "index.html").read_text()
    links = [unquote(m) for m in re.findall(r'(?:href|src)="([^"]+)"', page)]
    assert links and all((out / link).is_file() for link in links)
    assert not any(link.startswith(("http:", "https:", "//")) for link in links)
    assert page.index("bad") < page.index("good")  # worst mIoU first


def test_visualize_reports_a_missing_mask_and_goes_on(small_set):
    (small_set / "pred" / "bad.png").unlink()
    out = small_set / "viz"
    result = runner.invoke(app, ["visualize", str(small_set / "images"), "--masks", str(small_set / "pred"),
                                 "--classes", str(small_set / "classes.yaml"), "--out", str(out)])
    assert result.exit_code == 1
    assert "bad" in result.output and "no mask found" in result.output
    assert (out / "overlay" / "good.jpg").is_file() and not (out / "overlay" / "bad.jpg").exists()
