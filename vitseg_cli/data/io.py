"""Image and label IO: every common input kind read as RGB uint8, labels as integer arrays, atomic writes.

Reading goes through OpenCV on bytes (so non-ASCII paths work); a file that cannot be decoded raises `VitsegError`
naming it. Only regular files are read (a FIFO would block forever), and an image whose header says it has more
than `max_pixels()` pixels (env `VITSEG_MAX_PIXELS`, default 2^28 = 16384x16384; 0 = no limit) is refused before
it is decoded: a small PNG can declare 30000x30000 pixels and decode to gigabytes. The header is read before the
file: a file far larger than its header's pixels need (32 bytes a pixel and 16 MiB of metadata) is refused unread.

Writes go to a temporary file in the same folder and are renamed into place: a killed run never leaves a partial
output (`remove_stale_parts` deletes what a kill left). A failed write is a `VitsegError` naming the file.
Output names made from input data (file names, ids in a list or a JSON) pass through `safe_relpath`, so none can
point outside the output folder.
"""

from __future__ import annotations

import io as _io
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from ..errors import VitsegError
from . import storage

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
MAX_PIXELS_ENV = "VITSEG_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 1 << 28


def is_image_path(path: "str | Path") -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _regular_file(path: Path) -> int:
    """The size of `path`, refused in one line unless it is a non-empty regular file (a FIFO or a device would block
    or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VitsegError(f"{path}: file not found") from None
    except OSError as err:
        raise VitsegError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise VitsegError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise VitsegError(f"{path}: empty file")
    return info.st_size


def _read_bytes(path: "str | Path") -> np.ndarray:
    if storage.is_url(path):  # an object in a store: fetched whole (images are small)
        data = np.frombuffer(storage.read_bytes(path), dtype=np.uint8)
        if data.size == 0:
            raise VitsegError(f"{storage.redact(path)}: empty object")
        return data
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise VitsegError(f"{path}: file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as err:
        raise VitsegError(f"{path}: cannot read ({err.strerror or err})") from None
    if data.size == 0:
        raise VitsegError(f"{path}: empty file")
    return data


def max_pixels() -> int:
    """The largest image (width x height) read: env VITSEG_MAX_PIXELS, default 2^28; 0 means no limit."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        raise VitsegError(f"{MAX_PIXELS_ENV}={text!r}: expected a pixel count (0 = no limit)")
    return value


# What a file may hold beyond its pixels' raw size (32 bytes a pixel: four 64-bit channels, more than any
# compressed or plain encoding needs) for metadata: EXIF, ICC profiles, XMP, thumbnails.
MAX_BYTES_PER_PIXEL = 32
METADATA_BYTES = 16 << 20


def _open_header(path: Path) -> Optional[tuple[int, int, int]]:
    """(width, height, frames) from the file's header, without reading the pixels (Pillow reads headers lazily);
    None for a format Pillow does not know."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return None
    # Pillow's own bomb check would raise before telling the size; ours (configurable) replaces it
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                frames = getattr(im, "n_frames", 1)
                return im.size[0], im.size[1], frames if isinstance(frames, int) and frames > 0 else 1
    except Exception:  # not a format Pillow knows: checked after decoding instead
        return None


def _check_pixels(path: Path, width: int, height: int) -> None:
    limit = max_pixels()
    if limit and width * height > limit:
        raise VitsegError(f"{path}: {width}x{height} image is larger than the {limit} pixel limit (raise it with "
                          f"{MAX_PIXELS_ENV}=N, 0 for none)")


def check_pixels(what: "str | Path", width: int, height: int) -> None:
    """Refuse a `width` x `height` image or frame past VITSEG_MAX_PIXELS, in one line naming `what`."""
    _check_pixels(Path(what), int(width), int(height))


def _read_checked(path: Path) -> np.ndarray:
    """The file's bytes, refused before they are read when its header declares more pixels than the limit, or when
    the file is far larger than the pixels its header declares (a 32x32 PNG header followed by gigabytes): at most
    MAX_BYTES_PER_PIXEL a pixel of each frame, plus METADATA_BYTES."""
    size = _regular_file(path)
    header = _open_header(path)
    if header is not None:
        width, height, frames = header
        _check_pixels(path, width, height)
        allowed = width * height * frames * MAX_BYTES_PER_PIXEL + METADATA_BYTES
        if size > allowed:
            raise VitsegError(f"{path}: {size} bytes behind a {width}x{height} image header (at most {allowed} "
                              "expected): not read")
    return _read_bytes(path)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def grey_to_rgb_uint8(grey: np.ndarray) -> np.ndarray:
    """A single-channel image as RGB uint8, scaled as `read_image` scales a file of that depth: 16-bit by 1/257,
    floating point from 0..1."""
    return np.ascontiguousarray(np.repeat(_to_uint8(grey)[..., None], 3, axis=2))


def read_image(path: "str | Path") -> np.ndarray:
    """An image as RGB uint8 (H, W, 3): grayscale expanded, alpha dropped, 16-bit scaled, EXIF orientation applied.
    `path` may be an fsspec URL (the object is fetched whole, then checked as `decode_image` checks bytes)."""
    if storage.is_url(path):
        return decode_image(_read_bytes(path), path)
    path = Path(path)
    return decode_image(_read_checked(path), path, checked=True)


def decode_image(data: "bytes | np.ndarray", name: "str | Path", checked: bool = False) -> np.ndarray:
    """`read_image` for an image file's bytes already in memory (a tar shard's member, an object); `name` names it in
    errors; `checked`: its header was checked against the pixel limit already."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if data.size == 0:
        raise VitsegError(f"{name}: empty file")
    if not checked:
        header = _open_header(_io.BytesIO(data.tobytes()))
        if header is not None:
            _check_pixels(name, header[0], header[1])
    path = name
    # IMREAD_COLOR applies the EXIF orientation and expands grayscale / palette images; ANYDEPTH keeps 16 bits
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise VitsegError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    _check_pixels(path, img.shape[1], img.shape[0])
    img = _to_uint8(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


def read_label(path: "str | Path") -> np.ndarray:
    """A label map as stored (class indices), 2-D; palette PNGs give their indices, not their colours."""
    path = Path(path)
    data = _read_checked(path)
    if path.suffix.lower() == ".png":
        label = _read_png_indices(path)
        if label is not None:
            return label
    label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if label is None:
        raise VitsegError(f"{path}: not a readable label image")
    _check_pixels(path, label.shape[1], label.shape[0])
    if label.ndim == 3:
        if not (np.array_equal(label[..., 0], label[..., 1]) and np.array_equal(label[..., 0], label[..., 2])):
            raise VitsegError(f"{path}: a label map must hold class indices, found a colour image")
        label = label[..., 0]
    return label


def _read_png_indices(path: Path) -> "np.ndarray | None":
    """Indices of a palette PNG (OpenCV would expand them to colours), via Pillow when it is installed."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own size limit: ours was checked from the header
            with Image.open(path) as im:
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


_PART_NAME_CHARS = 100  # of the target's name in its temporary name: `.<name>.<random>.part` must fit NAME_MAX


def _part_prefix(name: str) -> str:
    return f".{name[:_PART_NAME_CHARS]}."


def atomic_write_bytes(path: "str | Path", payload: bytes) -> None:
    """Write `payload` to `path` via a temporary file and rename: the file is either whole or absent.

    The file gets the usual permissions of a new file (0666 minus the umask), not mkstemp's private 0600.
    An OS failure (read-only or full disk, a name too long) is a `VitsegError` naming the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_part_prefix(path.name), suffix=".part", dir=path.parent)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise VitsegError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_parts(folder: "str | Path", name: Optional[str] = None) -> int:
    """Delete the temporary files a killed `atomic_write_bytes` left in `folder` (only those of `name`, if given);
    call it before a run starts writing there, never while another process may be writing."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    prefix = _part_prefix(name) if name else "."
    removed = 0
    for tmp in folder.glob(".*.part"):
        if tmp.name.startswith(prefix) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def refuse_non_folder(path: "str | Path", flag: Optional[str] = None, why: str = "") -> Path:
    """Refuse, in one line, a path that exists and is not a folder where a folder is expected (`flag`: the option
    that named it; `why`: what the folder is for)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VitsegError(f"{flag + ' ' if flag else ''}{path}: exists and is not a folder{f' ({why})' if why else ''}")
    return path


def check_output_dir(path: "str | Path", flag: str = "--out") -> Path:
    """Prove that the output folder can be written (or created) before any work is done, without creating it: a
    read-only mount or a path under /proc fails at once with one line instead of after the whole run."""
    path = refuse_non_folder(path, flag)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        fd, probe = tempfile.mkstemp(prefix=".vitseg-probe.", dir=existing)  # not *.part: others clean those
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise VitsegError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None
    return path


def prepare_output_dir(path: "str | Path", flag: str = "--out") -> Path:
    """`check_output_dir`, then create the folder."""
    path = check_output_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VitsegError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None
    return path


def safe_relpath(key: str) -> str:
    """An output name made from input data (a split-list line, a COCO id or file_name) that stays inside the output
    folder: separators normalised, empty, '.' and absolute parts dropped, '..' replaced by '__'."""
    parts = ["__" if part == ".." else part for part in re.split(r"[\\/]+", str(key)) if part not in ("", ".")]
    return "/".join(parts) or "_"


# The longest side each format can encode (OpenCV fails on longer ones); other formats allow 2^31.
MAX_ENCODED_SIDE = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383}


def encoding_problem(paths: "Iterable[str | Path]", height: int, width: int) -> Optional[str]:
    """Why a `width` x `height` image cannot be written to one of `paths` (its format's side limit), or None."""
    for path in paths:
        ext = Path(path).suffix.lower()
        side = MAX_ENCODED_SIDE.get(ext)
        if side is not None and max(height, width) > side:
            return (f"a {width}x{height} image cannot be encoded as {ext} (at most {side} pixels a side), needed for "
                    f"{Path(path).name}; its outputs are not written")
    return None


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
