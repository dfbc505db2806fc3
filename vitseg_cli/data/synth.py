"""A synthetic labelled segmentation dataset in the `folder` format, for demos, training smoke runs and tests.

Six classes: background + disc, square, triangle, ring, stripe band. Every object gets its own pair of random colours
blended by fractal value noise, so colour alone does not tell the class: the model has to look at shape. Objects
overlap (later ones occlude earlier ones; a ring shows what lies under its hole), a random lighting gradient and
vignette shade the scene, and mild blur + sensor noise finish the image. Everything is drawn from one
`numpy.random.Generator` per image seeded with (seed, index), so a seed always gives the same files.

`easy=True` draws the same scenes (the same label masks for a seed) but paints each class in its own flat colour
(`EASY_COLOURS`), so colour alone tells the class: a small model learns it from scratch in a few hundred CPU
iterations, which makes it the data for smoke-testing a training setup. The default data needs shape, and a from-scratch
`nano` model stays at chance on it for the first few hundred iterations.

Layout written: `OUT/images/NNNNN.png` (RGB), `OUT/masks/NNNNN.png` (uint8 class indices), `OUT/classes.yaml`.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import yaml

from ..errors import VitsegError
from .io import atomic_write_bytes, prepare_output_dir, refuse_non_folder, write_image
from .workers import worker_init

SYNTH_CLASSES = ["background", "disc", "square", "triangle", "ring", "stripe"]
SYNTH_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48)]
# image colours of the classes in easy mode: far apart in RGB, so lighting and noise do not blur one into another
EASY_COLOURS = [(128, 128, 128), (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 30), (200, 30, 200)]


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (width first, as image sizes are written everywhere in vitseg; a single 'N' for a square) -> (H, W);
    both at least 16."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise VitsegError(f"--size {text!r}: expected WxH (width x height), e.g. 320x240") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 16 or max(dims) > 8192:
        raise VitsegError(f"--size {text!r}: expected WxH (width x height) with sides between 16 and 8192")
    return dims[1], dims[0]


def fractal_noise(rng: np.random.Generator, h: int, w: int, base: int = 4, octaves: int = 4,
                  persistence: float = 0.5) -> np.ndarray:
    """Value noise summed over octaves (cubic-upsampled random grids), normalised to [0, 1], float32 (h, w)."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    cells = base
    for _ in range(octaves):
        gh = max(2, int(round(cells * h / max(h, w))) + 1)
        gw = max(2, int(round(cells * w / max(h, w))) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
        cells *= 2
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int, extent: float = 1.0) -> np.ndarray:
    """An RGB float32 texture (h, w, 3): two random colours blended by fractal noise of random scale and contrast.

    `extent` is the patch's size relative to the whole image, so a small patch gets proportionally fewer noise cells.
    """
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    base = max(1, int(round(int(rng.integers(2, 9)) * extent)))
    n = fractal_noise(rng, h, w, base=base, octaves=int(rng.integers(3, 6)),
                      persistence=float(rng.uniform(0.35, 0.65)))
    n = np.clip((n - 0.5) * np.float32(rng.uniform(0.6, 2.0)) + 0.5, 0, 1)[..., None]
    return c1 + (c2 - c1) * n


def _shape_mask(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """A uint8 {0,1} mask of one shape of class `cls` (1 disc, 2 square, 3 triangle, 4 ring, 5 stripe band)."""
    s = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    r = rng.uniform(0.08, 0.22) * s
    sh = 4  # sub-pixel precision for the polygon / circle drawing
    f = 1 << sh
    if cls == 1:  # disc
        cv2.circle(mask, (int(cx * f), int(cy * f)), int(r * f), 1, -1, cv2.LINE_8, sh)
    elif cls == 2:  # square, any rotation
        box = cv2.boxPoints(((cx, cy), (1.7 * r, 1.7 * r), float(rng.uniform(0, 90))))
        cv2.fillPoly(mask, [np.round(box * f).astype(np.int32)], 1, cv2.LINE_8, sh)
    elif cls == 3:  # triangle: three vertices around the centre at jittered angles
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.4, 0.4, 3)
        radii = r * rng.uniform(1.0, 1.4, 3)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts * f).astype(np.int32)], 1, cv2.LINE_8, sh)
    elif cls == 4:  # ring (annulus): the hole shows whatever lies underneath
        outer = r * 1.15
        cv2.circle(mask, (int(cx * f), int(cy * f)), int(outer * f), 1, -1, cv2.LINE_8, sh)
        cv2.circle(mask, (int(cx * f), int(cy * f)), int(outer * rng.uniform(0.45, 0.7) * f), 0, -1, cv2.LINE_8, sh)
    elif cls == 5:  # straight band across the whole image
        theta = rng.uniform(0, np.pi)
        half = rng.uniform(0.03, 0.08) * s
        reach = 2.0 * max(h, w)
        dx, dy = -np.sin(theta) * reach, np.cos(theta) * reach
        p1 = (int((cx - dx) * f), int((cy - dy) * f))
        p2 = (int((cx + dx) * f), int((cy + dy) * f))
        cv2.line(mask, p1, p2, 1, max(1, int(round(2 * half))), cv2.LINE_8, sh)
    else:  # pragma: no cover - internal
        raise ValueError(cls)
    return mask


def render_sample(rng: np.random.Generator, size: tuple[int, int] = (256, 256),
                  easy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic (RGB uint8 image, uint8 label) pair drawn from `rng`; `easy` paints each class in its own
    colour (the textures are still drawn, so the random stream and hence the label are the same either way)."""
    h, w = size
    image = _texture(rng, h, w)
    if easy:
        image[:] = EASY_COLOURS[0]
    label = np.zeros((h, w), np.uint8)
    n_objects = int(rng.integers(3, 9))
    classes = rng.integers(1, len(SYNTH_CLASSES), n_objects)
    for cls in classes:
        mask = _shape_mask(rng, int(cls), h, w)
        x, y, bw, bh = cv2.boundingRect(mask)
        if bw == 0 or bh == 0:
            continue
        inside = mask[y:y + bh, x:x + bw].astype(bool)
        patch = _texture(rng, bh, bw, extent=max(bh / h, bw / w))
        if easy:
            patch[:] = EASY_COLOURS[cls]
        image[y:y + bh, x:x + bw][inside] = patch[inside]
        label[y:y + bh, x:x + bw][inside] = cls
    # lighting: a linear gradient in a random direction times a soft vignette
    ys = (np.arange(h, dtype=np.float32) / h)[:, None]
    xs = (np.arange(w, dtype=np.float32) / w)[None, :]
    theta = rng.uniform(0, 2 * np.pi)
    light = 1.0 + np.float32(rng.uniform(0.2, 0.7)) * ((xs - 0.5) * np.float32(np.cos(theta))
                                                       + (ys - 0.5) * np.float32(np.sin(theta)))
    d2 = (xs - np.float32(rng.uniform(0, 1))) ** 2 + (ys - np.float32(rng.uniform(0, 1))) ** 2
    light = light * (1.0 - np.float32(rng.uniform(0.0, 0.35)) * np.clip(d2, 0, 1))
    image *= light[..., None]
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.4, 1.0)))
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 6.0))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), label


def classes_yaml() -> str:
    return yaml.safe_dump({"classes": SYNTH_CLASSES, "palette": [list(c) for c in SYNTH_PALETTE]},
                          sort_keys=False, default_flow_style=None)


def _write_sample(out: Path, seed: int, index: int, width: int, size: tuple[int, int], easy: bool) -> None:
    rng = np.random.default_rng([seed, index])
    image, label = render_sample(rng, size, easy)
    name = f"{index:0{width}d}.png"
    write_image(out / "images" / name, image)
    write_image(out / "masks" / name, label)


def _remove_numbered_pairs(out: Path, keep: int) -> None:
    """Delete `images|masks/NNNNN.png` with index >= keep: what an earlier, larger synth wrote."""
    for sub in ("images", "masks"):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob("*.png"):
                if p.stem.isdigit() and int(p.stem) >= keep:
                    p.unlink()


def make_synthetic(out: Path, num: int, seed: int, size: tuple[int, int] = (256, 256), workers: int = 1,
                   progress: Optional[Callable[[int], None]] = None, overwrite: bool = False,
                   easy: bool = False) -> Path:
    """Write `num` image/mask pairs + classes.yaml under `out` (folder format); deterministic for `seed` (and
    `easy`: class-coloured images, see the module docstring).

    Each pair depends only on (seed, index), so `workers` processes write the same files as one; `progress` is
    called with the number of pairs finished after each one. A folder that is not empty is refused (it may be a
    real dataset) unless `overwrite`; then numbered pairs of an earlier synth beyond `num` are removed too, so the
    folder holds exactly the new dataset.
    """
    out = Path(out)
    if num < 1:
        raise VitsegError(f"--num {num}: must be at least 1")
    if seed < 0:
        raise VitsegError(f"--seed {seed}: must be 0 or more")
    refuse_non_folder(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise VitsegError(f"{out}: folder is not empty (a dataset may live there); give an empty or new folder, "
                              "or --overwrite to replace a synthetic dataset")
        _remove_numbered_pairs(out, keep=num)
    prepare_output_dir(out, "OUT")
    width = max(5, len(str(num - 1)))
    write = partial(_write_sample, out, seed, width=width, size=size, easy=easy)
    if workers > 1 and num > 1:
        pool = ProcessPoolExecutor(min(workers, num), initializer=worker_init, initargs=(0,))
        try:
            chunk = max(1, min(64, num // (4 * workers)))
            for done, _ in enumerate(pool.map(write, range(num), chunksize=chunk), 1):
                if progress:
                    progress(done)
        finally:  # on Ctrl-C or an error, drop the queued work instead of finishing it
            pool.shutdown(cancel_futures=True)
    else:
        for i in range(num):
            write(i)
            if progress:
                progress(i + 1)
    atomic_write_bytes(out / "classes.yaml", classes_yaml().encode())
    return out
