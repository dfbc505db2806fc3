"""What every subcommand shares: turning `VitsegError` into one line and an exit code, and the console."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer
from rich.console import Console

from ..errors import VitsegError

console = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def friendly_errors(fn: F) -> F:
    """Run a command; a `VitsegError` becomes `error: <message>` on stderr and exit code 2, Ctrl-C exit 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VitsegError as err:
            fail(str(err))
        except KeyboardInterrupt:
            console.print("interrupted", style="yellow")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
