"""The records of a sharded `vitseg predict`: each shard's `OUT/predict-<I>-of-<N>.json`, and their merge into one
`OUT/predict.json` (`vitseg predict --merge-records OUT`) with every shard's counts, the totals, and the shards whose
record is missing. The merge, run once every task has ended, also drops the temporaries of killed tasks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from ..data.io import atomic_write_bytes
from ..data.shards import Shard
from ..errors import VitsegError
from .outputs import remove_stale_temporaries

_SHARD_RECORD = re.compile(r"predict-(\d+)-of-(\d+)\.json")
_SHARED = ("vitseg_version", "weights", "backend", "spec", "settings", "sources", "save", "vid_stride")


def record_name(shard: Optional[Shard]) -> str:
    return f"predict-{shard.tag}.json" if shard else "predict.json"


def _shard_records(out: Path) -> dict[int, dict[int, Path]]:
    """N -> {I: path} of the shard records in `out`."""
    found: dict[int, dict[int, Path]] = {}
    for path in out.glob("predict-*-of-*.json"):
        match = _SHARD_RECORD.fullmatch(path.name)
        if match:
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VitsegError(f"{path}: unreadable shard record ({err})") from None


def merge_records(out: Path) -> tuple[dict[str, Any], list[str]]:
    """Merge the shard records of `out` into `out/predict.json`; returns the record and the missing shards' record
    names. Records of several N (reruns with another N) are told apart: the N of the newest record is merged."""
    out = Path(out)
    found = _shard_records(out) if out.is_dir() else {}
    if not found:
        raise VitsegError(f"{out}: no shard records (predict-I-of-N.json) to merge")
    count = max(found, key=lambda n: max(p.stat().st_mtime for p in found[n].values()))
    paths = found[count]
    parts = {i: _read(p) for i, p in sorted(paths.items())}
    missing = [f"predict-{i}-of-{count}.json" for i in range(count) if i not in parts]
    first = next(iter(parts.values()))
    shards = [{"shard": i, "status": r.get("status"), "inputs": r.get("inputs", 0), "processed": r.get("processed", 0),
               "skipped": r.get("skipped", 0), "frames": r.get("frames", 0), "failed": len(r.get("failed", []))}
              for i, r in parts.items()]
    complete = not missing and all(s["status"] == "done" for s in shards)
    record = {
        "command": "predict",
        "status": "done" if complete else "incomplete",
        **{key: first[key] for key in _SHARED if key in first},
        "shard_count": count,
        "inputs": sum(s["inputs"] for s in shards),
        "processed": sum(s["processed"] for s in shards),
        "skipped": sum(s["skipped"] for s in shards),
        "frames": sum(s["frames"] for s in shards),
        "failed": [f for r in parts.values() for f in r.get("failed", [])],
        "shards": shards,
        "missing_shards": missing,
        "other_shard_counts": sorted(n for n in found if n != count),
    }
    atomic_write_bytes(out / "predict.json", (json.dumps(record, indent=2) + "\n").encode())
    remove_stale_temporaries(out)  # shards leave a killed task's temporaries: another task may have been writing
    return record, missing
