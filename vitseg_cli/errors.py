"""The one exception type the CLI turns into a clean one-line error and a non-zero exit, and its 'did you mean'."""

from __future__ import annotations

import difflib
from typing import Iterable


class VitsegError(Exception):
    """A problem with the user's input (file, spec, option) that deserves one clear line, not a traceback."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' (did you mean X or Y?)' for the closest of `choices`, or '' when none is close."""
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def not_one_of(what: str, value: str, choices: Iterable[str]) -> VitsegError:
    """`<what> 'value': not one of a, b, c (did you mean b?)`."""
    choices = list(choices)
    return VitsegError(f"{what} {value!r}: not one of {', '.join(map(str, choices))}{did_you_mean(value, choices)}")


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (at most `limit` characters), or the exception's type name
    when the message is empty: error messages quote it, and an empty message must not raise IndexError."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:limit]
