"""Models from files and back: the one place that joins the file IO (`checkpoints`), the model families and the zoo.

- `load_model(path, spec=None)`: a vitseg `.safetensors` (spec inside) or an official `.pth`/`.pth.tar`/`.zip` (spec
  given, or read from the checkpoint's config / inferred from the weights by the model families; how it was found is
  in `model.load_notes`); `path` may also name an official release (`vitseg zoo`), fetched and converted on first use.
- `read_spec(path, spec=None)`: the spec `load_model` would build, without building the model.
- `save_model(model, path)`: atomic write of the vitseg format.
- `load_pretrained(model, path)`: initialise the block stack from a pretraining checkpoint (the family maps keys).
- `init_from_checkpoint(model, path)`: train's `--init-from`, class-dependent layers re-initialised as needed.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from . import zoo
from ._version import __version__
from .checkpoints import (check_file, is_safetensors, read_safetensors, read_torch_file, read_torch_meta, read_vitseg,
                          read_vitseg_metadata, unwrap_state_dict, write_vitseg)
from .errors import VitsegError
from .model.dinov3 import is_head_file as is_two_file_head
from .model.dinov3 import two_file_state
from .model.official_config import ConfigRefused, spec_from_config_text
from .model.official import (check_weight_values, infer_spec, init_from_state, load_state_strict, meta_classes,
                             segmentor_state)
from .model.registry import backbone_family
from .model.segmentor import Segmentor
from .releases import Release
from .safe_yaml import load_yaml
from .spec import SPEC_PRESETS, Spec, load_spec, merge_spec, read_spec_data, spec_from_dict, with_overrides

SpecLike = "Spec | dict | str | Path | None"


# -------------------------------------------------------------------------------------------------------- the zoo


DEFAULT_MODEL = "default"  # the name of the shipped model
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"


def resolve_weights(path: "str | Path") -> Path:
    """A local checkpoint file for `path`: the path itself when it exists, the shipped default model for the name
    'default', else the converted file of the zoo release of that name (fetched and converted on first use).
    Unknown names get 'did you mean' suggestions."""
    if str(path) == DEFAULT_MODEL and not Path(path).exists():
        if not DEFAULT_WEIGHTS.is_file():
            raise VitsegError(f"no default model is shipped with this installation ({DEFAULT_WEIGHTS} is missing)")
        return DEFAULT_WEIGHTS
    release = zoo.release_for(path)
    return fetch_release(release) if release is not None else Path(path)


def fetch_release(release: Release) -> Path:
    """The converted vitseg file of `release`, downloading and converting it first if the cache lacks it."""
    return zoo.fetch(release, convert=_convert_release)


def _release_spec(release: Release) -> tuple["dict | str | None", list[str]]:
    """The spec to convert a release with, and notes: the config file served beside its checkpoint, read safely
    (when the release has one and it can be read), else its preset (inferred from the weights when there is none)."""
    notes = []
    config = zoo.config_path(release)
    if config is not None and config.is_file():
        try:
            data, config_notes = spec_from_config_text(config.read_text(encoding="utf-8", errors="replace"))
            return data, [f"spec read from {config.name}, the config served beside the checkpoint", *config_notes]
        except ConfigRefused as err:
            notes.append(f"{config.name} was not used: {err}")
    if release.name not in SPEC_PRESETS:
        return None, notes
    if release.reconstructed:
        notes.append(f"spec: the preset {release.name}, a reconstruction of the released config")
    return release.name, notes


# Spec fields only training reads: a release's config may differ from its preset there and predict the same.
_TRAINING_ONLY = {"preset", "drop_path_rate", "dropout_ratio", "loss", "with_cp", "use_checkpoint"}


def _differences(carried: Any, preset: Any, where: str = "") -> list[str]:
    if isinstance(carried, dict) and isinstance(preset, dict):
        return [d for key in sorted(set(carried) | set(preset)) if key not in _TRAINING_ONLY
                for d in _differences(carried.get(key), preset.get(key), f"{where}.{key}" if where else key)]
    return [] if carried == preset else [f"{where}: {carried!r}, the preset {preset!r}"]


def _check_carried_config(release: Release, checkpoint: Path) -> None:
    """An official release's checkpoint that carries its config (`meta['config']`) must describe that release's
    preset exactly: the model, the normalisation and label treatment, and the single- or multi-scale test. A
    reconstructed preset (the served config is the authority) and a file without a config are not checked."""
    if release.reconstructed or release.name not in SPEC_PRESETS:
        return
    text = read_torch_meta(checkpoint).get("config")
    if not isinstance(text, str) or not text.strip():
        return
    how = f"; to use it anyway, load the file by path with --spec {release.name}"
    try:
        data, _ = spec_from_config_text(text)
        carried = spec_from_dict(data, source=f"{checkpoint.name} (its config)").to_dict()
    except VitsegError as err:  # ConfigRefused too
        raise zoo.RefusedFile(f"{checkpoint}: the config it carries cannot be read ({err}), so it is not shown to "
                              f"be the release {release.name}; removed from the cache{how}") from None
    found = []
    for name in (release.name, f"{release.name}_ms"):
        if name in SPEC_PRESETS:
            preset = load_spec(name).to_dict()
            found.append(_differences({k: carried[k] for k in ("model", "test")},
                                      {k: preset[k] for k in ("model", "test")}) +
                         _differences({k: carried["data"][k] for k in ("mean", "std", "reduce_zero_label")},
                                      {k: preset["data"][k] for k in ("mean", "std", "reduce_zero_label")}, "data"))
    if all(found):
        first = min(found, key=len)
        raise zoo.RefusedFile(f"{checkpoint}: the config it carries is not the release {release.name} "
                              f"({len(first)} difference(s), e.g. {first[0]}); removed from the cache{how}")


def _convert_release(release: Release, checkpoint: Path, converted: Path, backbone: Optional[Path] = None) -> None:
    """Load the official file (and the backbone file of a two-file release) with the release's config or preset
    (inferred when it has neither) and save the vitseg file."""
    _check_carried_config(release, checkpoint)
    spec, notes = _release_spec(release)
    model = load_model(checkpoint, spec, device="cpu", backbone_weights=backbone)
    model.load_notes = [*notes, *model.load_notes]
    how = next((n for n in notes if n.startswith("spec")), None)
    save_model(model, converted, source=f"zoo {release.name} ({zoo.official_basename(release)}"
                                        f"{'; ' + how if how else ''})")
    for note in model.load_notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"converted {checkpoint.name} to {converted} (later runs load this file)", file=sys.stderr)


# ------------------------------------------------------------------------------------------------------- reading


def read_official(path: "str | Path", backbone_weights: "str | Path | None" = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and meta of an official (mmcv) ViT-Adapter segmentation or backbone checkpoint, or of a release
    made of two files (a head file, and `backbone_weights`: the ViT's own file)."""
    path = Path(path)
    state, meta = unwrap_state_dict(read_torch_file(path), path)
    if is_two_file_head(state):
        backbone = None
        if backbone_weights is not None:
            bpath = Path(backbone_weights)
            check_file(bpath)
            backbone = unwrap_state_dict(read_torch_file(bpath), bpath)[0]
        return two_file_state(state, backbone, str(path), str(backbone_weights))
    if backbone_weights is not None:
        raise VitsegError(f"{path}: --backbone-weights is for releases made of a head file and a backbone file; "
                          "this checkpoint holds its whole model")
    return segmentor_state(state, path), meta


@dataclass
class _Resolved:
    spec: Spec
    state: Optional[dict[str, torch.Tensor]]  # None when only the spec was asked for (a vitseg file)
    source: str
    notes: list[str] = field(default_factory=list)


def _resolve(path: "str | Path", spec: SpecLike, overrides: Sequence[str], with_state: bool,
             backbone_weights: "str | Path | None" = None) -> tuple[Path, _Resolved]:
    """The checkpoint's file, its final spec and (when asked, or needed to infer the spec) its state dict."""
    # a bad spec is reported before the weights are read
    partial = None if spec is None or isinstance(spec, Spec) else spec if isinstance(spec, dict) else \
        read_spec_data(spec)
    given = spec if isinstance(spec, Spec) else None
    path = resolve_weights(path)
    check_file(path)
    if is_safetensors(path):
        if with_state:
            state, metadata = read_vitseg(path)
        else:
            state, metadata = None, read_vitseg_metadata(path)
        resolved = _Resolved(given or _spec_from_metadata(metadata, path), state, metadata.get("source", str(path)))
        if partial is not None:
            resolved.spec = merge_spec(resolved.spec, partial, source=f"{spec} (over the spec in {path.name})")
    else:
        if partial is not None:
            given = spec_from_dict(partial, source=str(spec) if not isinstance(spec, dict) else "spec")
        backbone = resolve_weights(backbone_weights) if backbone_weights else None
        state, meta = read_official(path, backbone)
        resolved = _Resolved(given, state, f"official checkpoint {path.name}" +
                             (f" + {backbone.name}" if backbone else ""))
        if given is None:
            resolved.spec, resolved.notes = infer_spec(state, meta)
        else:
            data = meta_classes(meta, given.model.num_classes)
            if data and not given.data.classes:
                resolved.spec = given.updated(data=data)
    resolved.spec = with_overrides(resolved.spec, list(overrides))
    return path, resolved


def _spec_from_metadata(metadata: dict[str, str], path: Path) -> Spec:
    # size, depth and alias expansion are capped: the metadata is as untrusted as the rest of the file
    data = load_yaml(metadata["spec"], f"{path} (embedded spec)")
    return spec_from_dict(data, source=f"{path} (embedded spec)")


def read_spec(path: "str | Path", spec: SpecLike = None, overrides: Sequence[str] = ()) -> Spec:
    """The spec `load_model(path, spec, overrides=overrides)` would build, without building the model (a vitseg
    file's tensors are not even read)."""
    return _resolve(path, spec, overrides, with_state=False)[1].spec


def load_model(path: "str | Path" = DEFAULT_MODEL, spec: SpecLike = None, device: "str | torch.device" = "auto",
               overrides: Sequence[str] = (), backbone_weights: "str | Path | None" = None) -> Segmentor:
    """A ready model (eval mode) from a vitseg `.safetensors`, an official `.pth`/`.zip` (+ optional spec), the
    name of an official release (`vitseg zoo`), fetched and converted on first use, or 'default' (the shipped model,
    also what no path gives). `device` 'auto' is CUDA when available, else the CPU. (`vitseg_cli.load_model`, the
    public one, returns this model with the image-level API: model.predict(...), model("image.jpg").)

    On a vitseg file a YAML/dict `spec` is merged onto the embedded one (a file that only sets `test.resize` keeps
    the class names); a `Spec` object replaces it. `overrides` (`key.path=value`, as `--set`) apply last.
    `backbone_weights`: the backbone file of a release made of two files (DINOv3: head file + ViT file)."""
    path, resolved = _resolve(path, spec, overrides, with_state=True, backbone_weights=backbone_weights)
    # a family that allows it is built on the meta device and takes the file's tensors themselves: a 7B model
    # never holds two copies of its weights
    meta = getattr(resolved.spec.model.backbone, "loads_by_assignment", False)
    with torch.device("meta") if meta else nullcontext():
        model = Segmentor(resolved.spec)
    model.load_notes = resolved.notes + load_state_strict(model, resolved.state, path)
    model.source = resolved.source
    if str(device) == "auto":  # as `--device auto` (engine.device); the loading module sits below the engine
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------------- writing


def save_model(model: Segmentor, path: "str | Path", *, half: bool = False, source: Optional[str] = None) -> Path:
    """Write the vitseg format atomically: tensors in safetensors, spec/classes/palette/version in its metadata."""
    spec = model.spec.updated(data={"classes": model.spec.class_names,
                                    "palette": [list(c) for c in model.spec.palette]})
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous().clone()
    metadata = {
        "vitseg_version": __version__,
        "spec": spec.to_yaml(),
        "classes": json.dumps(spec.class_names),
        "palette": json.dumps([list(c) for c in spec.palette]),
        "source": source or getattr(model, "source", "vitseg"),
    }
    return write_vitseg(path, tensors, metadata)


# ------------------------------------------------------------------------------------------ initialising weights


def load_pretrained(model: Segmentor, path: "str | Path") -> list[str]:
    """Initialise the block stack of `model`'s backbone from a pretraining checkpoint (timm/DeiT ViT, BEiT, ...):
    the file is read here, the keys are matched by the backbone's family."""
    path = Path(path)
    check_file(path)
    if is_safetensors(path):  # e.g. a timm model as the Hugging Face hub ships it (`model.safetensors`)
        state = unwrap_state_dict(read_safetensors(path), path)[0]
    else:
        state, _ = unwrap_state_dict(read_torch_file(path), path)
    check_weight_values(state, state, path)  # no NaN or infinity in any floating-point tensor
    family = backbone_family(model.spec.model.backbone.type)
    if family.pretrained is None:
        raise VitsegError(f"{path}: the {family.name} backbone cannot be initialised from a pretraining file")
    return family.pretrained(model, state, path)


def init_from_checkpoint(model: Segmentor, path: "str | Path", backbone_weights: "str | Path | None" = None
                         ) -> list[str]:
    """Load a vitseg or official segmentor checkpoint (or zoo release; `backbone_weights`: the backbone file of a
    two-file release) into `model` (class-dependent layers re-initialised when the class count differs; the
    model's heads say which those are)."""
    path = resolve_weights(path)
    backbone = resolve_weights(backbone_weights) if backbone_weights else None
    state, _ = read_vitseg(path) if is_safetensors(path) else read_official(path, backbone)
    return init_from_state(model, state, path)
