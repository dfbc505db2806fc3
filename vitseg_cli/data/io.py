"""Image and label IO: every common input kind read as RGB uint8, labels as integer arrays, atomic writes.

Reading goes through OpenCV on bytes (so non-ASCII paths work); a file that cannot be decoded raises `VitsegError`
naming it. Writes go to a temporary file in the same folder and are renamed into place: a killed run never leaves a
partial output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import VitsegError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}


def is_image_path(path: "str | Path") -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise VitsegError(f"{path}: file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as err:
        raise VitsegError(f"{path}: cannot read ({err.strerror or err})") from None
    if data.size == 0:
        raise VitsegError(f"{path}: empty file")
    return data


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def read_image(path: "str | Path") -> np.ndarray:
    """An image as RGB uint8 (H, W, 3): grayscale expanded, alpha dropped, 16-bit scaled, EXIF orientation applied."""
    path = Path(path)
    data = _read_bytes(path)
    # IMREAD_COLOR applies the EXIF orientation and expands grayscale / palette images; ANYDEPTH keeps 16 bits
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise VitsegError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    img = _to_uint8(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def read_label(path: "str | Path") -> np.ndarray:
    """A label map as stored (class indices), 2-D; palette PNGs give their indices, not their colours."""
    path = Path(path)
    data = _read_bytes(path)
    if path.suffix.lower() == ".png":
        label = _read_png_indices(data)
        if label is not None:
            return label
    label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if label is None:
        raise VitsegError(f"{path}: not a readable label image")
    if label.ndim == 3:
        if not (np.array_equal(label[..., 0], label[..., 1]) and np.array_equal(label[..., 0], label[..., 2])):
            raise VitsegError(f"{path}: a label map must hold class indices, found a colour image")
        label = label[..., 0]
    return label


def _read_png_indices(data: np.ndarray) -> "np.ndarray | None":
    """Indices of a palette PNG (OpenCV would expand them to colours), via Pillow when it is installed."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return None
    import io

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            if im.mode != "P":
                return None
            return np.asarray(im, dtype=np.uint8).copy()
    except Exception:
        return None


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import, while only the main thread runs (os.umask can only be read by setting it)
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: "str | Path", payload: bytes) -> None:
    """Write `payload` to `path` via a temporary file and rename: the file is either whole or absent.

    The file gets the usual permissions of a new file (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(path: "str | Path", img: np.ndarray, jpeg_quality: int = 92) -> bytes:
    """Encode an RGB (H, W, 3) or index (H, W) array in the format of `path`'s extension."""
    ext = Path(path).suffix.lower()
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise VitsegError(f"{path}: cannot encode as {ext}")
    return buf.tobytes()


def write_image(path: "str | Path", img: np.ndarray, jpeg_quality: int = 92) -> None:
    """Atomically write an RGB image or an index map (uint8 or uint16 PNG)."""
    atomic_write_bytes(path, encode_image(path, img, jpeg_quality))
