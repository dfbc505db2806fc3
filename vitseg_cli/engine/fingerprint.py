"""The fingerprint of an output folder, `OUT/.vitseg-run.json`: what determines the files in it (weights digest, spec,
inference settings, saved kinds, overlay opacity, video stride, backend).

Predict skips an input whose outputs exist; that is only right when they were made the same way. So a run into a
folder made with another fingerprint is refused with one line naming what differs, unless `--overwrite` is given:
then the old run's outputs are removed first, so that a later resume can trust every file it finds. A folder with
outputs but no fingerprint was made by something else and is refused the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Optional

from ..data.io import atomic_write_bytes
from ..errors import VitsegError

FILE_NAME = ".vitseg-run.json"
VERSION = 1
# settings that change the labels; batch size and --compile do not (up to float rounding)
OUTPUT_SETTINGS = ("mode", "crop_size", "stride", "flip", "scales", "resize", "half")
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file (cached per path, size and mtime within this process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def make_fingerprint(weights: Path, backend: str, spec: dict[str, Any], settings: dict[str, Any],
                     save: Iterable[str], alpha: float, vid_stride: Optional[int] = None,
                     label_offset: int = 0) -> dict[str, Any]:
    return {"fingerprint_version": VERSION, "weights": Path(weights).name, "weights_sha256": file_digest(weights),
            "backend": backend, "spec": spec, "settings": {k: settings[k] for k in OUTPUT_SETTINGS},
            "save": sorted(save), "alpha": alpha, "vid_stride": vid_stride, "label_offset": label_offset}


def _first_difference(old: Any, new: Any, where: str) -> Optional[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if old != new:
        return f"{where} {json.dumps(old)} -> {json.dumps(new)}"
    return None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words, most important first."""
    out = []
    if old.get("weights_sha256") != new["weights_sha256"]:
        out.append(f"weights {old.get('weights')} (sha256 {str(old.get('weights_sha256'))[:12]}) -> "
                   f"{new['weights']} (sha256 {new['weights_sha256'][:12]})")
    for key in ("backend", "spec", "settings", "save", "alpha", "vid_stride", "label_offset"):
        found = _first_difference(old.get(key), new[key], key)
        if found:
            out.append(found)
    return out


def check_output_folder(out: Path, fingerprint: dict[str, Any], overwrite: bool, output_dirs: Iterable[str],
                        option: str = "--out") -> None:
    """Refuse a folder holding another run's outputs (one line: what differs); with `overwrite`, remove that run's
    `output_dirs` first. Then record `fingerprint` in the folder. Call before any output is written."""
    path = out / FILE_NAME
    dirs = [out / d for d in output_dirs]
    has_outputs = any(d.is_dir() and any(d.iterdir()) for d in dirs)
    old: Optional[dict[str, Any]] = None
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as err:
            raise VitsegError(f"{path}: unreadable fingerprint ({err}); remove it or use --overwrite") from None
    if old is not None and not differences(old, fingerprint):
        return
    if has_outputs:
        if old is None:
            what = "outputs of unknown origin (no fingerprint)"
        else:
            what = "outputs made differently: " + "; ".join(differences(old, fingerprint))
        if not overwrite:
            raise VitsegError(f"{option} {out}: holds {what}. Use --overwrite to replace them, or another {option}")
        for d in dirs:
            if d.is_dir():
                shutil.rmtree(d)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(fingerprint, indent=2) + "\n").encode())
