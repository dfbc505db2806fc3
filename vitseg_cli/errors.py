"""The one exception type the CLI turns into a clean one-line error and a non-zero exit."""


class VitsegError(Exception):
    """A problem with the user's input (file, spec, option) that deserves one clear line, not a traceback."""
