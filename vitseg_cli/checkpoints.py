"""Checkpoint files, read and written: vitseg `.safetensors` (tensors + metadata), zip-based torch files
(`.pth`, `.pth.tar`, `.pt`), release `.zip` archives holding one of them, and plain safetensors pretraining files.

This module knows files, not models: it returns state dicts and metadata, and writes tensors with metadata. What a
state dict means (key names, spec inference) is the model families' knowledge; building and loading models is
`vitseg_cli.loading`'s.

Every file is read with `torch.load(..., weights_only=True)` or safetensors: never a pickle that can run code.
"""

from __future__ import annotations

import pickle
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from .data.io import atomic_write_bytes, remove_stale_parts
from .data.safe_zip import check_members, extract_member
from .errors import VitsegError, first_line

FORMAT_TAG = "vitseg"
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")


# ---------------------------------------------------------------------------------------------------------- reading


def check_file(path: Path) -> None:
    """Refuse a path that is missing, a folder or not a regular file, in one line naming it."""
    if not path.exists():
        raise VitsegError(f"{path}: file not found")
    if path.is_dir():
        raise VitsegError(f"{path}: is a folder, expected a checkpoint file")
    if not path.is_file():  # a FIFO or device: opening it would block forever
        raise VitsegError(f"{path}: not a regular file, expected a checkpoint file")


def is_safetensors(path: Path) -> bool:
    """Whether the file starts like a safetensors file (a little-endian header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < path.stat().st_size and head[8:9] == b"{"


def read_torch_file(path: Path) -> Any:
    """Load a zip-based torch file safely (weights only); a `.zip` release holding one such file is read through."""
    check_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        what = "an empty file" if not magic else "neither a torch (zip) file nor safetensors"
        raise VitsegError(f"{path}: not a readable checkpoint ({what})")
    member = _archived_checkpoint(path)
    if member is not None:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="vitseg-zip-") as tmp:
            inner = Path(tmp) / "checkpoint.pth"
            try:  # bounded: a small archive must not unpack gigabytes into $TMPDIR
                extract_member(archive, archive.getinfo(member), inner, path)
            except (zipfile.BadZipFile, EOFError, OSError) as err:
                raise VitsegError(f"{path}: not a readable checkpoint (damaged zip: {first_line(err, 160)})") from None
            return _load_weights_only(inner, f"{path} ({member})")
    return _load_weights_only(path, str(path))


def read_torch_meta(path: Path) -> dict[str, Any]:
    """The `meta` dict of a zip-based torch checkpoint (empty when it has none), its tensors memory-mapped rather
    than read (a release of gigabytes costs no copy); read whole when the file cannot be mapped."""
    check_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise VitsegError(f"{path}: not a readable checkpoint (it holds Python objects that cannot be loaded "
                          "safely)") from None
    except Exception:  # not mappable (e.g. a release .zip holding the checkpoint): the ordinary reader
        obj = read_torch_file(path)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _archived_checkpoint(path: Path) -> Optional[str]:
    """The one checkpoint inside a release `.zip`, or None when `path` is itself a torch file (also a zip); either
    way the archive's declared sizes are bounded (`data.safe_zip`) before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise VitsegError(f"{path}: not a readable checkpoint (damaged zip: {err})") from None
    check_members(path, infos)
    names = [i.filename for i in infos]
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    found = [n for n in names if n.endswith(_CHECKPOINT_SUFFIXES) and not Path(n).name.startswith(".")]
    if len(found) != 1:
        listed = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        what = "no checkpoint (.pth/.pt/.pth.tar)" if not found else f"{len(found)} checkpoints ({listed})"
        raise VitsegError(f"{path}: a zip archive with {what}; expected exactly one")
    return found[0]


def _load_weights_only(path: Path, name: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise VitsegError(f"{name}: not a readable checkpoint (it holds Python objects that cannot be loaded "
                          "safely; only tensors, numbers, strings and containers are accepted)") from None
    except Exception as err:  # torch raises many types for damaged zips
        raise VitsegError(f"{name}: not a readable checkpoint ({first_line(err, 160)})") from None


def unwrap_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) from the usual containers: {'state_dict'|'model'|'module': ...} or a bare dict of tensors."""
    if not isinstance(obj, dict):
        raise VitsegError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, not a dict of weights)")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    for key in ("state_dict", "model", "module"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise VitsegError(f"{path}: not a checkpoint (no weight tensors found)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, meta


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise VitsegError(f"{path}: not a readable safetensors file ({first_line(err)})") from None


def read_vitseg(path: "str | Path") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise VitsegError(f"{path}: not a readable safetensors file ({first_line(err)})") from None
    _check_vitseg_metadata(metadata, path)
    return state, metadata


def read_vitseg_metadata(path: "str | Path") -> dict[str, str]:
    """The metadata of a vitseg `.safetensors` file (its spec, classes, palette, version), without reading tensors."""
    path = Path(path)
    check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:
        raise VitsegError(f"{path}: not a readable safetensors file ({first_line(err)})") from None
    _check_vitseg_metadata(metadata, path)
    return metadata


def _check_vitseg_metadata(metadata: dict[str, str], path: Path) -> None:
    if metadata.get("format") != FORMAT_TAG or "spec" not in metadata:
        raise VitsegError(f"{path}: a safetensors file without a vitseg spec in its metadata "
                          "(convert official checkpoints with `vitseg convert`)")


# ---------------------------------------------------------------------------------------------------------- writing


def write_vitseg(path: "str | Path", tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write tensors and metadata as a vitseg `.safetensors`, atomically (the format tag is added to the metadata)."""
    path = Path(path)
    remove_stale_parts(path.parent, path.name)  # what a kill during an earlier save of this file left
    atomic_write_bytes(path, save_safetensors(tensors, metadata={"format": FORMAT_TAG, **metadata}))
    return path
