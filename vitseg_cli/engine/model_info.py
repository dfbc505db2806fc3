"""What predict and eval say about the model they run: its name, architecture, classes and where it came from, and,
for the shipped default model, that it is a synthetic-shapes demo (with the command that lists real models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..model.registry import backbone_family, head_family
from ..releases import find_release
from ..spec import SPEC_PRESETS
from .common import default_weights_path
from .progress import StreamConsole

SHOWN_CLASSES = 8
DEFAULT_MODEL_NOTE = ("note: the default model is a synthetic-shapes demo (6 toy classes), not a model of real "
                      "photos; `vitseg zoo` lists trained models (use one with --weights NAME)")


def _architecture(spec) -> str:
    backbone, head = spec.model.backbone, spec.model.decode_head
    name = backbone_family(backbone.type).label
    size = getattr(backbone, "preset", None)
    name += f" {size}" if size else ""
    return name + (f" + {head_family(head.type).label}" if head is not None else "")


def _classes(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_CLASSES])
    return f"{len(names)} classes ({shown}{', ...' if len(names) > SHOWN_CLASSES else ''})"


def model_origin(weights: "Optional[str | Path]", spec: Optional[str] = None) -> tuple[str, str]:
    """(name, origin) of the model `--weights`/`--spec` give: the shipped default, a zoo release or a file; with the
    spec's preset or file when one was given."""
    if weights is None:
        name, origin = "default", "the shipped default model (vitseg_cli/weights/default.safetensors)"
    elif not Path(str(weights)).exists() and find_release(str(weights)) is not None:
        name, origin = str(weights), "the zoo (vitseg zoo)"
    else:
        kind = "ONNX file" if str(weights).lower().endswith(".onnx") else "file"
        name, origin = Path(str(weights)).name, f"{kind} {weights}"
    if spec is not None:
        origin += f", spec: {'preset' if str(spec) in SPEC_PRESETS else 'file'} {spec}"
    return name, origin


def is_default_model(weights: "Optional[str | Path]") -> bool:
    """No --weights, or the shipped file named by its path."""
    if weights is None:
        return True
    try:
        return Path(str(weights)).resolve() == default_weights_path().resolve()
    except OSError:
        return False


def model_lines(model: Any, weights: "Optional[str | Path]", spec: Optional[str] = None) -> list[str]:
    """The lines `announce_model` prints."""
    name, origin = model_origin(weights, spec)
    lines = [f"model: {name}, {_architecture(model.spec)}, {_classes(list(model.spec.class_names))}; from {origin}"]
    if is_default_model(weights):
        lines.append(DEFAULT_MODEL_NOTE)
    return lines


def announce_model(model: Any, weights: "Optional[str | Path]", spec: Optional[str] = None) -> None:
    """Say on stderr (with the other notes) which model runs."""
    console = StreamConsole(stderr=True)
    for line in model_lines(model, weights, spec):
        console.print(line)
