"""Bytes read and written per second, for the progress line and `predict.json`: counted for tar shards and objects
in a store (reading) and for output shards and uploaded objects (writing); local loose files are not counted."""

from __future__ import annotations

import time
from typing import Any


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def traffic_fields(summary: Any, since: float) -> dict[str, str]:
    """Progress-line fields `read` / `written` (bytes per second since `since`, a perf_counter time), when any."""
    elapsed = max(time.perf_counter() - since, 1e-9)
    fields = {}
    if summary.bytes_read:
        fields["read"] = human_bytes(summary.bytes_read / elapsed) + "/s"
    if summary.bytes_written:
        fields["written"] = human_bytes(summary.bytes_written / elapsed) + "/s"
    return fields


def traffic_record(bytes_read: int, bytes_written: int, seconds: float) -> dict[str, Any]:
    """`predict.json` timings: the byte counts and their rates over the inference time."""
    rate = (lambda n: round(n / seconds, 1) if seconds > 0 else None)
    return {"bytes_read": bytes_read, "bytes_written": bytes_written,
            "read_bytes_per_s": rate(bytes_read), "written_bytes_per_s": rate(bytes_written)}
