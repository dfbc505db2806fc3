"""`Family`: everything vitseg knows about one backbone or head, as one registry entry (torch-free).

A family is two modules: a torch module with the `nn.Module`s, and a torch-free `*_config.py` beside it holding the
pydantic section class, the translation of the official mmseg config and a `FAMILY = Family(...)` entry. The
entry's torch functions are written as "package.module:function" strings, imported on first call, so that
validating a spec or listing the presets never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional, Union


class LazyFunction:
    """A function named "package.module:name", imported on its first call."""

    def __init__(self, target: str):
        module, sep, name = target.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"a lazy function is named 'package.module:function', got {target!r}")
        self.target = target
        self._function: Optional[Callable[..., Any]] = None

    def resolve(self) -> Callable[..., Any]:
        if self._function is None:
            module, _, name = self.target.partition(":")
            self._function = getattr(importlib.import_module(module), name)
        return self._function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFunction({self.target!r})"


FunctionRef = Union[Callable[..., Any], str]
_FUNCTIONS = ("build", "detect", "infer", "from_official_config", "pretrained", "infer_test")


@dataclass(frozen=True)
class Family:
    """One backbone or head family.

    - `name`: the spec's `type` value; `config_cls`: its pydantic section class (a `BackboneConfig` or `HeadConfig`
      subclass with `type: Literal[name]`); `label`: its display name (`vitseg info --presets`).
    - `build`: backbones `build(section) -> nn.Module`, heads `build(section, in_channels, num_classes)`; the
      module must meet the contract in `model/contracts.py`.
    - `detect(state) -> bool`: whether an official state dict is of this family (backbones: the whole state, keys
      `backbone.*`; heads: the head's part, prefix removed). `infer(state, meta)`: the section that fits it, as
      `(section, assumed)` for backbones and `(section, num_classes, assumed)` for heads.
    - `official_types` and `from_official_config(cfg, ctx)`: the official mmseg `type` names this family reads,
      and the translation of such a config dict (see `model/official_fields.py`): backbones return the section,
      heads `(section, num_classes)`.
    - `pretrained(model, state, path) -> notes`: backbones: initialise from a classification/pretraining file.
    - `infer_test(section) -> (test, assumed)`: backbones: the `test` spec fields an inferred section needs (a
      fixed input size slides windows of exactly that size), or None.
    - `roles`: heads: where the head may go (`decode_head`, `auxiliary_head`).
    - `tiny`: a small valid section (CPU-sized, no weights), for the contract tests and demos.
    Each function may be given as a callable or a "package.module:function" string, imported on first call.
    """

    name: str
    config_cls: type
    build: FunctionRef
    detect: Optional[FunctionRef] = None
    infer: Optional[FunctionRef] = None
    from_official_config: Optional[FunctionRef] = None
    pretrained: Optional[FunctionRef] = None
    label: str = ""
    official_types: tuple[str, ...] = ()
    infer_test: Optional[FunctionRef] = None
    roles: tuple[str, ...] = ("decode_head",)
    tiny: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _FUNCTIONS and isinstance(value, str):
                object.__setattr__(self, f.name, LazyFunction(value))
        if not self.label:
            object.__setattr__(self, "label", self.name)
        declared = getattr(self.config_cls, "model_fields", {}).get("type")
        if declared is None or declared.default != self.name:
            raise ValueError(f"family {self.name!r}: its config class {self.config_cls.__name__} must declare "
                             f"type: Literal[{self.name!r}] = {self.name!r}")
