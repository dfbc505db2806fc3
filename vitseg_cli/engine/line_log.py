"""An append-only text file of one line per record (JSON lines), written from several writer threads, that survives
a killed run: a torn last line left by a kill is ended before the next line is added."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional, TextIO


class LineLog:
    """Appends whole lines to `path` (its folder made on the first line); thread-safe; `close()` may be called
    more than once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: Optional[TextIO] = None

    def _open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        file = open(self.path, "a", encoding="utf-8")
        if torn:  # a killed run's last line: end it, so that this one starts on its own line
            file.write("\n")
        return file

    def write_line(self, text: str, then: Optional[Callable[[], None]] = None) -> None:
        """Append `text` (ending in a newline) and flush; `then` runs under the same lock, so that whatever it
        echoes comes in the file's order."""
        with self._lock:
            if self._file is None:
                self._file = self._open()
            self._file.write(text)
            self._file.flush()
            if then is not None:
                then()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
