"""The console and the progress of the long loops (train, predict, eval).

`StreamConsole`: the one kind of console every command prints with. Progress, notes and errors go to stderr;
results and summaries to stdout. In a terminal text wraps at its width; piped or redirected it never wraps (a path
or a row of figures stays on one line, for grep and logs). Text is printed literally (no markup).

`ProgressReporter`: in a terminal (stderr a TTY) a rich progress bar is drawn on stderr and `print` sends notes and
validation lines through the bar's console, so they appear above it instead of tearing it. Anywhere else (a cluster
job, `2> log`, a pipe) a bar would show nothing until the end: one plain line (done/total, rate, elapsed, ETA and the
loop's own fields such as loss or failed counts) goes to stderr at the first step, then every
`VITSEG_PROGRESS_SECONDS` seconds (default 30) and at the end.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from rich.console import Console, ConsoleDimensions

DEFAULT_INTERVAL_S = 30.0
PIPED_WIDTH = 1 << 16  # "no limit": rich needs a number; nothing printed here pads to the width


class StreamConsole(Console):
    """A rich console on stdout (or stderr) that wraps at the terminal's width, and not at all when its stream is
    not a terminal. The stream is looked up at each print (so a redirection made later is followed)."""

    def __init__(self, stderr: bool = False, **options: Any):
        options.setdefault("highlight", False)
        options.setdefault("markup", False)
        super().__init__(stderr=stderr, **options)

    @property
    def size(self) -> ConsoleDimensions:
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(PIPED_WIDTH, self._height or 25)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VITSEG_PROGRESS_SECONDS", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def _fields_text(fields: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v}" for k, v in fields.items() if v not in (None, ""))


class ProgressReporter:
    """`with ProgressReporter("train", total, start=it0, unit="it") as p: p.update(i, loss="0.41")`.

    `enabled=False` (--quiet, other ranks) shows nothing; `print` then goes to `fallback` (default: `console`)."""

    def __init__(self, label: str, total: int, *, start: int = 0, unit: str = "it", enabled: bool = True,
                 console: Optional[Console] = None, fallback: Optional[Callable[[Any], None]] = None,
                 transient: bool = False, interactive: Optional[bool] = None):
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.console = console or StreamConsole(stderr=True)
        self.fallback = fallback
        self.transient = transient
        if interactive is None:
            interactive = self.console.is_terminal
        self.interactive = interactive
        self.done = self.first = start
        self.fields: dict[str, Any] = {}
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()
        self._last_line: Optional[float] = None
        self._printed_at = -1
        self._interval = _interval()

    # -- context
    def __enter__(self) -> "ProgressReporter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "ProgressReporter":
        self._t0 = time.perf_counter()
        if self.enabled and self.interactive:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=self.transient)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, info="")
        return self

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._printed_at != self.done and self.done > self.first:
            self._line()

    # -- updates
    def rate(self) -> Optional[float]:
        elapsed = time.perf_counter() - self._t0
        return (self.done - self.first) / elapsed if elapsed > 0 and self.done > self.first else None

    def update(self, completed: int, **fields: Any) -> None:
        """Set the count done and any display fields (already formatted or plain numbers)."""
        self.done = completed
        self.fields.update(fields)
        if not self.enabled:
            return
        if self._bar is not None:
            rate = self.rate()
            speed = f"{rate:.2f} {self.unit}/s" if rate else ""
            info = "  ".join(t for t in (_fields_text(self.fields), speed) if t)
            self._bar.update(self._task, completed=completed, info=info)
            return
        now = time.perf_counter()
        if self._last_line is None or now - self._last_line >= self._interval or completed >= self.total:
            self._line()

    def advance(self, steps: int = 1, **fields: Any) -> None:
        self.update(self.done + steps, **fields)

    def _line(self) -> None:
        self._last_line = time.perf_counter()
        self._printed_at = self.done
        rate = self.rate()
        parts = [f"{self.label} {self.done}/{self.total}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.2f} {self.unit}/s" if rate else f"- {self.unit}/s")
        parts.append(f"elapsed {_clock(time.perf_counter() - self._t0)}")
        parts.append(f"ETA {_clock((self.total - self.done) / rate)}" if rate else "ETA -")
        extra = _fields_text(self.fields)
        if extra:
            parts.append(extra)
        print(" | ".join(parts), file=self.console.file, flush=True)  # progress: stderr, beside the notes

    # -- notes
    def print(self, message: Any) -> None:
        """A note or result line: above the bar in a terminal, else where the caller's notes go."""
        if self._bar is not None:
            self._bar.console.print(message, soft_wrap=True, markup=False)
        elif self.fallback is not None:
            self.fallback(message)
        else:
            self.console.print(message, soft_wrap=True, markup=False)
