"""Official (mmseg) checkpoints of every family: which spec fits a state dict, and loading it into a model.

The families recognise their own keys and infer their own spec sections (model/registry.py); this module asks them
in turn and assembles a whole spec, with the list of fields that had to be assumed. Key names of vitseg modules are
the official ones, so loading is a strict state-dict load with one allowance: an auxiliary head the spec has but the
file lacks (or the reverse) is dropped, with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import VitsegError
from ..spec import Spec, spec_from_dict
from .official_config import spec_from_config_text
from .official_fields import ConfigRefused
from .registry import detect_backbone, detect_head


def infer_spec(state: dict[str, torch.Tensor], meta: Optional[dict[str, Any]] = None) -> tuple[Spec, list[str]]:
    """The spec of an official checkpoint and notes saying where it came from: the config text the checkpoint
    carries (`meta['config']`, read safely, nothing assumed) or, when it has none or it cannot be read, the weights
    (the notes then list the fields that had to be assumed)."""
    meta = meta or {}
    notes: list[str] = []
    text = meta.get("config")
    if isinstance(text, str) and text.strip():
        try:
            data, config_notes = spec_from_config_text(text)
        except ConfigRefused as err:
            notes.append(f"the config inside the checkpoint was not used: {err}")
        else:
            spec = spec_from_dict(data, source="config inside the checkpoint")
            classes = meta_classes(meta, spec.model.num_classes)
            if classes and not spec.data.classes:
                spec = spec.updated(data=classes)
            return spec, ["spec read from the config inside the checkpoint", *config_notes]
    spec, assumed = infer_spec_from_weights(state, meta)
    return spec, [*notes, "spec inferred from the weights; assumed " + "; ".join(assumed)]


def infer_spec_from_weights(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[Spec, list[str]]:
    """A spec that fits an official checkpoint's weights, and the list of fields that had to be assumed."""
    family = detect_backbone(state)
    if family is None:
        sample = ", ".join(list(state)[:3])
        raise VitsegError(f"cannot infer the spec: the weights are of no known backbone family (keys look like "
                          f"{sample}, ...)")
    try:
        backbone, assumed = family.infer(state, meta)
    except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as err:
        raise VitsegError(f"cannot infer the {family.name} spec from these weights ({type(err).__name__}: "
                          f"{str(err)[:120]})") from None
    model: dict[str, Any] = {"backbone": backbone}
    for key in ("decode_head", "auxiliary_head"):
        head = detect_head(state, f"{key}.")
        if head is None:
            continue
        part = {k[len(key) + 1:]: v for k, v in state.items() if k.startswith(f"{key}.")}
        try:
            section, num_classes, more = head.infer(part, meta)
        except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as err:
            raise VitsegError(f"cannot infer the {key} spec from these weights ({type(err).__name__}: "
                              f"{str(err)[:120]})") from None
        model[key] = section
        model.setdefault("num_classes", num_classes)
        assumed += more
    data = meta_classes(meta, model.get("num_classes"))
    spec: dict[str, Any] = {"model": model, "data": data}
    test = family.infer_test(backbone) if family.infer_test else None
    if test is not None:  # e.g. a backbone that takes one input size slides windows of exactly that size
        spec["test"], more = test
        assumed += more
    return spec_from_dict(spec, source="inferred spec"), assumed


def meta_classes(meta: dict[str, Any], num_classes: Optional[int]) -> dict[str, Any]:
    """`data.classes` / `data.palette` from an mmseg checkpoint's meta, when they are well-formed and fit the class
    count (a damaged meta leaves the generic names and colours)."""
    data: dict[str, Any] = {}
    classes, palette = meta.get("CLASSES"), meta.get("PALETTE")
    if isinstance(classes, (list, tuple)) and len(classes) == num_classes and all(
            isinstance(c, (str, int)) for c in classes):
        data["classes"] = [str(c) for c in classes]
    try:
        if palette is not None and len(palette) == num_classes:
            colours = [[int(v) for v in c] for c in palette]
            if all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours):
                data["palette"] = colours
    except (TypeError, ValueError):
        pass
    return data


def check_weight_values(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights that would silently give garbage (all-zero masks): integer tensors where the model (`expected`)
    has floating-point ones, and NaN or infinite values."""
    for key, own in expected.items():
        value = state[key]
        if not own.is_floating_point():
            continue
        if not value.is_floating_point():
            raise VitsegError(f"{path}: weight {key} is stored as {str(value.dtype).removeprefix('torch.')}, not "
                              "floating point (a damaged or wrongly converted checkpoint)")
        if not bool(torch.isfinite(value).all()):
            raise VitsegError(f"{path}: weight {key} holds NaN or infinite values (a diverged training run or a "
                              "damaged file)")


def _listed(keys: list[str]) -> str:
    return f"{', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}"


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Load an official or vitseg state dict into `model` (a Segmentor); every key must match, in name and shape."""
    notes = []
    if model.auxiliary_head is None:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    elif not any(k.startswith("auxiliary_head.") for k in state):
        model.auxiliary_head = None
        model.spec = model.spec.updated(model={"auxiliary_head": None})
        notes.append("the checkpoint has no auxiliary head: the model is built without one")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_listed(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
        raise VitsegError(f"{path}: weights do not match the spec: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise VitsegError(f"{path}: weight shapes do not match the spec: {'; '.join(wrong[:4])}"
                          f"{' ...' if len(wrong) > 4 else ''}")
    check_weight_values(state, expected, path)
    model.load_state_dict(state, strict=True)
    return notes


def init_from_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Fine-tuning start: load a whole segmentor's weights into `model`, except the class-dependent layers the
    heads name (UperNet's `conv_seg`, Mask2Former's class embedding) when the class count differs; say which."""
    own = model.state_dict()
    notes: list[str] = []
    class_prefixes = tuple(model.class_layers())
    skipped = [k for k in own if k.startswith(class_prefixes) and k in state and state[k].shape != own[k].shape]
    if skipped:
        first = skipped[0]  # a class layer has num_classes rows plus a fixed number (Mask2Former: no-object)
        theirs = state[first].shape[0] - (own[first].shape[0] - model.num_classes)
        layers = sorted({k.rsplit(".", 1)[0] for k in skipped})
        notes.append(f"{path.name} predicts {theirs} classes, this model {model.num_classes}: these class layers "
                     f"start from random weights: {', '.join(layers)}")
    if model.auxiliary_head is not None and not any(k.startswith("auxiliary_head.") for k in state):
        notes.append(f"{path.name} has no auxiliary head: it starts from random weights")
        skipped += [k for k in own if k.startswith("auxiliary_head.")]
    if model.auxiliary_head is None:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and k not in skipped and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else
                f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else
                f"shape of {wrong[0]} {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
        raise VitsegError(f"{path}: weights do not fit the spec's model: {what}")
    kept = {k: v for k, v in state.items() if k not in skipped}
    check_weight_values(kept, {k: own[k] for k in kept}, path)
    model.load_state_dict(kept, strict=False)
    notes.append(f"initialised from {path.name}")
    return notes


def segmentor_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """An official ViT-Adapter segmentation state dict as the segmentor names it: a bare backbone state dict (a
    backbone checkpoint) gets the `backbone.` prefix; anything else is refused in one line naming the file."""
    if "backbone.level_embed" in state:
        return state
    if "level_embed" in state and "spm.stem.0.weight" in state:
        return {f"backbone.{k}": v for k, v in state.items()}
    sample = ", ".join(list(state)[:3])
    raise VitsegError(f"{path}: not a ViT-Adapter checkpoint (no backbone.level_embed; keys look like {sample}, ...)")
