"""The fingerprint of an output folder, `OUT/.vitseg-run.json`: what determines the files in it (weights digest, spec,
inference settings, overlay opacity, video stride, backend). Which kinds are saved is not part of it: a rerun may add
kinds to a finished run.

Predict skips an input whose outputs exist; that is only right when they were made the same way. So a run into a
folder made with another fingerprint is refused with one line naming what differs, unless `--overwrite` is given:
then the old run's outputs are removed first, so that a later resume can trust every file it finds. A folder with
outputs but no fingerprint was not written by vitseg: it is refused, `--overwrite` or not (vitseg removes only what a
vitseg run wrote).
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
VERSION = 2
# settings that do not change the labels (up to float rounding); every other inference setting does
NEUTRAL_SETTINGS = ("batch_size", "compile")
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


def make_fingerprint(weights: Path, backend: str, spec: dict[str, Any], settings: dict[str, Any], alpha: float,
                     vid_stride: Optional[int] = None, label_offset: int = 0) -> dict[str, Any]:
    return {"fingerprint_version": VERSION, "weights": Path(weights).name, "weights_sha256": file_digest(weights),
            "backend": backend, "spec": spec,
            "settings": {k: v for k, v in settings.items() if k not in NEUTRAL_SETTINGS},
            "alpha": alpha, "vid_stride": vid_stride, "label_offset": label_offset}


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
    for key in ("backend", "spec", "settings", "alpha", "vid_stride", "label_offset"):
        found = _first_difference(old.get(key), new[key], key)
        if found:
            out.append(found)
    return out


def read_fingerprint(out: Path) -> Optional[dict[str, Any]]:
    """The folder's fingerprint, None when it has none; an unreadable one is one line."""
    path = out / FILE_NAME
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as err:
        raise VitsegError(f"{path}: unreadable fingerprint ({err}); remove it or use another --out") from None
    return old


def refusal(out: Path, fingerprint: dict[str, Any], output_dirs: Iterable[str], overwrite: bool,
            option: str = "--out") -> Optional[str]:
    """Why this run may not write into `out` (None: it may), without changing anything."""
    has_outputs = [d for d in output_dirs if (out / d).is_dir() and any((out / d).iterdir())]
    old = read_fingerprint(out)
    if not has_outputs or (old is not None and not differences(old, fingerprint)):
        return None
    if old is None:
        return (f"{option} {out}: its {has_outputs[0]}/ holds files that no vitseg run wrote (no fingerprint "
                f"{FILE_NAME}); --overwrite only replaces a vitseg run's outputs: choose another {option}")
    if overwrite:
        return None
    return (f"{option} {out}: holds outputs made differently: {'; '.join(differences(old, fingerprint))}. Use "
            f"--overwrite to replace them, or another {option}")


def check_output_folder(out: Path, fingerprint: dict[str, Any], overwrite: bool, output_dirs: Iterable[str],
                        option: str = "--out", records: Iterable[str] = ()) -> None:
    """Refuse a folder holding another run's outputs (one line: what differs) or files no vitseg run wrote; with
    `overwrite`, remove the earlier vitseg run's `output_dirs` and `records` (glob patterns) first. Then record
    `fingerprint` in the folder. Call before any output is written."""
    output_dirs = list(output_dirs)
    why = refusal(out, fingerprint, output_dirs, overwrite, option)
    if why:
        raise VitsegError(why)
    old = read_fingerprint(out)
    if old is not None and overwrite:  # the folder afresh: every file the old run wrote goes
        remove_run(out, output_dirs, records)
    out.mkdir(parents=True, exist_ok=True)
    if old != fingerprint:
        atomic_write_bytes(out / FILE_NAME, (json.dumps(fingerprint, indent=2) + "\n").encode())


def remove_run(out: Path, output_dirs: Iterable[str], records: Iterable[str] = ()) -> None:
    """Remove what a vitseg run wrote into `out` (its fingerprint says the output folders are its own)."""
    for d in output_dirs:
        if (out / d).is_dir():
            shutil.rmtree(out / d)
    for pattern in records:
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)
