"""The mmseg 0.x config text inside official checkpoints (`meta['config']`) -> a vitseg spec dict, read safely.

Checkpoints saved by mmseg runners carry their whole config as Python source. It is read with `ast` and never run:
a statement must bind a name to literals, `dict(...)` calls, lists, tuples, names bound earlier in the text, or
simple arithmetic on those (`[False] * 24`, `80 + 91`); `_base_` is skipped. Anything else (another call, an
attribute, an import, a lambda, a comprehension, very deep nesting, a huge value) refuses the whole text with one
line naming where and why (`ConfigRefused`). The official model's backbone, decode head and auxiliary head are
then translated by the family registered for their official `type` (each family's `from_official_config`), and
`test_cfg`, the test pipeline and the dataset here, onto the spec's fields, which keep the official argument names.
What the spec cannot hold exactly is refused too, so that a spec read from a config never silently computes
something else; harmless leftovers become notes.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Optional

from ..data.classes import builtin_classes
from ..errors import VitsegError
from ..spec import spec_from_dict
from .official_fields import ConfigRefused, OfficialContext, as_dict, need, show
from .official_test_config import test_section
from .registry import official_family, official_types

MAX_TEXT_CHARS = 2_000_000
MAX_DEPTH = 40  # official configs nest about 8 levels deep
MAX_ITEMS = 1_000_000  # elements and string characters made while reading, all together
MAX_INT = 2 ** 63


# ---------------------------------------------------------------------------------------------------------------
# Reading: Python source -> {name: value}, without running anything.

_NUMBER = (int, float)
_ARITHMETIC = {ast.Add: ("+", operator.add), ast.Sub: ("-", operator.sub), ast.Mult: ("*", operator.mul),
               ast.Div: ("/", operator.truediv)}


class _Reader:
    def __init__(self) -> None:
        self.names: dict[str, Any] = {}
        # Per bound name: how deep its value nests and how many elements it holds counting every reference, so that
        # values built from names (x = [x, x] ...) stay as small and shallow as if written out.
        self.depths: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.items = 0
        self.deepest = 0

    def _spend(self, n: int, node: ast.AST) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise _refuse(node, f"the values grow past {MAX_ITEMS} elements")

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        if not isinstance(node, ast.Assign):
            raise _refuse(node, f"a {type(node).__name__} statement is not allowed")
        for target in node.targets:
            if not isinstance(target, ast.Name):
                raise _refuse(node, "only plain `name = value` assignments are allowed")
            if target.id == "dict":
                raise _refuse(node, "rebinding `dict` is not allowed")
        if any(t.id == "_base_" for t in node.targets):
            return  # a checkpoint's config is already merged; the base files are not read
        spent, self.deepest = self.items, 0
        value = self.value(node.value, 0)
        for target in node.targets:
            self.names[target.id] = value
            self.depths[target.id], self.sizes[target.id] = self.deepest, self.items - spent

    def value(self, node: ast.expr, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _refuse(node, f"values are nested more than {MAX_DEPTH} levels deep")
        self.deepest = max(self.deepest, depth)
        if isinstance(node, ast.Constant):
            if node.value is not None and not isinstance(node.value, (str, int, float, bool)):
                raise _refuse(node, f"a {type(node.value).__name__} literal is not allowed")
            self._spend(len(node.value) if isinstance(node.value, str) else 1, node)
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            self._spend(len(node.elts), node)
            items = [self.value(e, depth + 1) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _refuse(node, "`**` inside a {...} literal is not allowed")
            self._spend(len(node.keys), node)
            return {self._key(k, depth): self.value(v, depth + 1) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name):
            if node.id not in self.names:
                raise _refuse(node, f"name {node.id!r} is not bound earlier in the config")
            if depth + self.depths[node.id] > MAX_DEPTH:
                raise _refuse(node, f"values are nested more than {MAX_DEPTH} levels deep")
            self.deepest = max(self.deepest, depth + self.depths[node.id])
            self._spend(self.sizes[node.id], node)
            return self.names[node.id]
        if isinstance(node, ast.Call):
            return self._dict_call(node, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand, depth + 1)
            if not isinstance(operand, _NUMBER) or isinstance(operand, bool):
                raise _refuse(node, "a sign applies to numbers only")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return self._arithmetic(node, depth)
        raise _refuse(node, f"{_describe(node)} is not allowed")

    def _key(self, node: Optional[ast.expr], depth: int) -> Any:
        key = self.value(node, depth + 1)
        if not isinstance(key, (str, int)):
            raise _refuse(node, "dictionary keys must be strings or integers")
        return key

    def _dict_call(self, node: ast.Call, depth: int) -> dict[str, Any]:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            raise _refuse(node, f"{_describe(node)} is not allowed (only dict(...))")
        if node.args:
            raise _refuse(node, "dict(...) takes keyword arguments only here")
        out: dict[str, Any] = {}
        for keyword in node.keywords:
            value = self.value(keyword.value, depth + 1)
            if keyword.arg is None:  # dict(type='Normalize', **img_norm_cfg)
                if not isinstance(value, dict):
                    raise _refuse(node, "`**` in dict(...) needs a dict")
                out.update(value)
            else:
                out[keyword.arg] = value
        self._spend(len(out), node)
        return out

    def _arithmetic(self, node: ast.BinOp, depth: int) -> Any:
        spent = self.items
        left = self.value(node.left, depth + 1)
        left_size, spent = self.items - spent, self.items
        right = self.value(node.right, depth + 1)
        right_size = self.items - spent
        symbol, apply = _ARITHMETIC[type(node.op)]
        if all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in (left, right)):
            if symbol == "/" and right == 0:
                raise _refuse(node, "division by zero")
            result = apply(left, right)
            if isinstance(result, int) and abs(result) > MAX_INT:
                raise _refuse(node, f"an integer beyond {MAX_INT}")
            return result
        sequences = (list, tuple, str)
        if symbol == "+" and type(left) is type(right) and isinstance(left, sequences):
            return left + right  # both operands are already counted
        if symbol == "*":
            seq, size, times = (left, left_size, right) if isinstance(left, sequences) else (right, right_size, left)
            if isinstance(seq, sequences) and isinstance(times, int) and not isinstance(times, bool):
                self._spend(max(size, len(seq)) * (max(times, 1) - 1), node)  # the copies beyond the counted one
                return seq * times
        raise _refuse(node, f"`{symbol}` on {type(left).__name__} and {type(right).__name__} is not allowed")


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else (func.attr if isinstance(func, ast.Attribute) else None)
        return f"a call of {name!r}" if name else "a call"
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}')"
    if isinstance(node, ast.BinOp):
        symbol = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
                  ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}.get(type(node.op), "?")
        return f"the operator `{symbol}`"
    return {ast.Lambda: "a lambda", ast.ListComp: "a comprehension", ast.DictComp: "a comprehension",
            ast.SetComp: "a comprehension", ast.GeneratorExp: "a generator", ast.Subscript: "indexing",
            ast.JoinedStr: "an f-string", ast.Set: "a set", ast.IfExp: "a conditional expression",
            ast.NamedExpr: "an assignment expression", ast.Starred: "`*` unpacking",
            ast.Compare: "a comparison", ast.BoolOp: "`and`/`or`"}.get(type(node),
                                                                      f"a {type(node).__name__} expression")


def _refuse(node: Optional[ast.AST], why: str) -> ConfigRefused:
    line = getattr(node, "lineno", None)
    return ConfigRefused(f"config text, line {line}: {why}" if line else f"config text: {why}")


def parse_config_text(text: str) -> dict[str, Any]:
    """The top-level names of an mmseg config text and their values (dicts, lists, tuples, literals)."""
    if not isinstance(text, str):
        raise ConfigRefused(f"config text: expected a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigRefused(f"config text: {len(text)} characters, more than the {MAX_TEXT_CHARS} allowed")
    try:
        tree = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        where = f", line {err.lineno}" if getattr(err, "lineno", None) else ""
        reason = (getattr(err, "msg", None) or str(err) or type(err).__name__).splitlines()[0]
        raise ConfigRefused(f"config text{where}: not readable as Python ({reason})") from None
    reader = _Reader()
    try:
        for statement in tree.body:
            reader.statement(statement)
    except RecursionError:
        raise ConfigRefused("config text: values are nested too deeply") from None
    return reader.names


# ---------------------------------------------------------------------------------------------------------------
# Translating: official config dict -> vitseg spec dict; each model section by the family that reads its `type`.

# mmseg datasets: built-in class list and the reduce_zero_label their class fixes (None: the config says).
_DATASETS = {"ADE20KDataset": ("ade20k", True), "CityscapesDataset": ("cityscapes", False),
             "COCOStuffDataset": ("coco_stuff", None), "PascalContextDataset59": ("pascal_context_59", True),
             "MapillaryDataset": ("mapillary", False), "PascalVOCDataset": ("voc", False)}


def _data_test(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's data.test section ({} when there is none)."""
    data = as_dict(cfg.get("data", {}), "data")
    return as_dict(data.get("test", {}), "data.test")


def _test(cfg: dict[str, Any], model: dict, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec.test, the normalisation part of spec.data): every test step translated, or the config refused."""
    return test_section(cfg, model, notes)


def _dataset(cfg: dict[str, Any], classes: int, notes: list[str]) -> dict[str, Any]:
    test = _data_test(cfg)
    kind = test.get("type", cfg.get("dataset_type"))
    out: dict[str, Any] = {}
    if kind not in _DATASETS:
        notes.append(f"config: dataset {show(kind)} is not a built-in one; class names not set")
        out["reduce_zero_label"] = bool(test.get("reduce_zero_label", False))
        return out
    name, reduce = _DATASETS[kind]
    out["reduce_zero_label"] = bool(test.get("reduce_zero_label", False)) if reduce is None else reduce
    names, palette = builtin_classes(name)
    if len(names) == classes:
        out["classes"], out["palette"] = names, [list(c) for c in palette]
    else:
        notes.append(f"config: {kind} has {len(names)} classes, the model {classes}; class names not set")
    return out


def spec_from_config(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A vitseg spec dict (validated) and notes from the names of a parsed official config."""
    try:
        return _translate(cfg)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
        # a config of the right shape with values of the wrong kinds (interaction_indexes=5, decode_head=[1], ...)
        raise ConfigRefused(f"config: a value of an unexpected kind ({show(str(err))})") from None


def _section(cfg: Any, slot: str, ctx: OfficialContext) -> Any:
    """One official model section translated by the family that reads its `type` (model/registry.py)."""
    cfg = as_dict(cfg, ctx.where)
    official = need(cfg, "type", ctx.where)
    family = official_family(official, slot)
    if family is None:
        raise ConfigRefused(f"config: {ctx.where}.type {show(official)} is not one vitseg runs "
                            f"({', '.join(official_types(slot))})")
    return family.from_official_config(cfg, ctx)


def _translate(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    model = as_dict(need(cfg, "model", "(top level)"), "model")
    backbone = _section(need(model, "backbone", "model"), "backbone", OfficialContext("model.backbone", model, notes))
    decode_head, classes = _section(need(model, "decode_head", "model"), "decode_head",
                                    OfficialContext("model.decode_head", model, notes, backbone))
    spec_model: dict[str, Any] = {"backbone": backbone, "decode_head": decode_head, "num_classes": classes}
    if model.get("auxiliary_head"):
        spec_model["auxiliary_head"], _ = _section(
            model["auxiliary_head"], "auxiliary_head",
            OfficialContext("model.auxiliary_head", model, notes, backbone, classes))
    test, data = _test(cfg, model, notes)
    spec = {"model": spec_model, "data": {**data, **_dataset(cfg, classes, notes)}, "test": test}
    try:
        spec_from_dict(spec, source="config")
    except VitsegError as err:
        raise ConfigRefused(str(err)) from None
    return spec, notes


def spec_from_config_text(text: str) -> tuple[dict[str, Any], list[str]]:
    """The vitseg spec dict and notes for an official checkpoint's `meta['config']` text; `ConfigRefused` (one line)
    when the text is not safely readable or describes a model vitseg cannot represent exactly."""
    return spec_from_config(parse_config_text(text))
