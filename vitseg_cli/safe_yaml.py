"""YAML from untrusted files with bounded time and memory: the safe loader, plus caps on size, depth and expansion.

`yaml.safe_load` never runs code, but it happily builds what a hostile file asks for: aliases make a few hundred
bytes stand for billions of nodes ("billion laughs"), deep nesting ends in RecursionError, and a multi-megabyte text
is parsed for minutes. `load_yaml` checks the composed node graph before anything is constructed: the text length,
the nesting depth and the number of nodes the document expands to (each alias counted with everything under it).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import VitsegError

MAX_YAML_BYTES = 4 << 20  # a spec with 65535 class names and colours is ~2 MB; 4 MiB parse in ~8 s
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 1_000_000  # after alias expansion

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_graph(root: yaml.Node, source: str) -> None:
    """Depth and expanded node count of the graph, without recursion (aliases are shared node objects)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_YAML_NODES:
                raise VitsegError(f"{source}: YAML expands to more than {MAX_YAML_NODES} values (aliases repeating "
                                  "aliases?); refused")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise VitsegError(f"{source}: YAML alias refers to itself (a recursive structure); refused")
        if depth > MAX_YAML_DEPTH:
            raise VitsegError(f"{source}: YAML nested more than {MAX_YAML_DEPTH} levels deep; refused")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(text: "str | bytes", source: str) -> Any:
    """The document in `text` (None when empty), or `VitsegError` naming `source` for bad or oversized YAML."""
    if len(text) > MAX_YAML_BYTES:
        raise VitsegError(f"{source}: YAML of {len(text) / 1e6:.1f} MB is larger than the {MAX_YAML_BYTES >> 20} MiB "
                          "a spec or class list may be; refused")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise VitsegError(f"{source}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise VitsegError(f"{source}: not valid YAML: {' '.join(str(err).split())[:200]}") from None
    except RecursionError:  # the pure-Python composer, without libyaml's own nesting limit
        raise VitsegError(f"{source}: YAML nested too deeply; refused") from None
    finally:
        loader.dispose()


def regular_file_size(path: Path) -> int:
    """The size of `path`, refused in one line unless it is a regular file (a FIFO or a device would block or never
    end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VitsegError(f"{path}: file not found") from None
    except OSError as err:
        raise VitsegError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise VitsegError(f"{path}: not a regular file")
    return info.st_size


def read_regular_file(path: "str | Path", max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`: a FIFO or device (which would block or never end) and an
    oversized file are refused before reading."""
    path = Path(path)
    size = regular_file_size(path)
    if size > max_bytes:
        raise VitsegError(f"{path}: {size / 1e6:.1f} MB is more than the {max_bytes >> 20} MiB allowed here")
    try:
        return path.read_bytes()
    except OSError as err:
        raise VitsegError(f"{path}: cannot read ({err.strerror or err})") from None


def read_yaml_file(path: "str | Path") -> Any:
    """`load_yaml` of a file, refusing non-regular and oversized files before reading them."""
    return load_yaml(read_regular_file(path, MAX_YAML_BYTES), str(path))
