"""Checkpoint files: the vitseg format (safetensors + spec in metadata), official mmseg files, pretraining files.

- `load_model(path, spec=None)`: a vitseg `.safetensors` (spec inside) or an official `.pth`/`.pth.tar`/`.zip` (spec
  given, or read from the checkpoint's config / inferred from the weights by the model families; how it was found is
  in `model.load_notes`); `path` may also name an official release (`vitseg_cli.zoo`).
- `save_model(model, path)`: atomic write of the vitseg format.
- `load_pretrained(model, path)`: initialise the block stack from a pretraining checkpoint (the family maps keys).

What a state dict means (key names, spec inference) is the model families' knowledge (vitseg_cli/model/); this module
reads and writes files.

Every user file is read with `torch.load(..., weights_only=True)` or safetensors: never a pickle that can run code.
"""

from __future__ import annotations

import json
import pickle
import struct
import tempfile
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from . import __version__
from .data.io import atomic_write_bytes, remove_stale_parts
from .errors import VitsegError
from .model.dinov3 import is_head_file as is_two_file_head
from .model.dinov3 import two_file_state
from .model.official import check_weight_values, infer_spec, load_state_strict, meta_classes
from .model.registry import backbone_family
from .model.segmentor import Segmentor
from .safe_yaml import load_yaml
from .spec import Spec, merge_spec, read_spec_data, spec_from_dict, with_overrides
from .zoo import resolve_weights

FORMAT_TAG = "vitseg"
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")


# ---------------------------------------------------------------------------------------------------------- reading


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VitsegError(f"{path}: file not found")
    if path.is_dir():
        raise VitsegError(f"{path}: is a folder, expected a checkpoint file")
    if not path.is_file():  # a FIFO or device: opening it would block forever
        raise VitsegError(f"{path}: not a regular file, expected a checkpoint file")


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n < path.stat().st_size and head[8:9] == b"{"


def read_torch_file(path: Path) -> Any:
    """Load a zip-based torch file safely (weights only); a `.zip` release holding one such file is read through."""
    _check_exists(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        what = "an empty file" if not magic else "neither a torch (zip) file nor safetensors"
        raise VitsegError(f"{path}: not a readable checkpoint ({what})")
    member = _archived_checkpoint(path)
    if member is not None:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="vitseg-zip-") as tmp:
            inner = Path(archive.extract(member, tmp))
            return _load_weights_only(inner, f"{path} ({member})")
    return _load_weights_only(path, str(path))


def _archived_checkpoint(path: Path) -> Optional[str]:
    """The one checkpoint inside a release `.zip`, or None when `path` is itself a torch file (also a zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise VitsegError(f"{path}: not a readable checkpoint (damaged zip: {err})") from None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    found = [n for n in names if n.endswith(_CHECKPOINT_SUFFIXES) and not Path(n).name.startswith(".")]
    if len(found) != 1:
        listed = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        what = "no checkpoint (.pth/.pt/.pth.tar)" if not found else f"{len(found)} checkpoints ({listed})"
        raise VitsegError(f"{path}: a zip archive with {what}; expected exactly one")
    return found[0]


def _load_weights_only(path: Path, name: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise VitsegError(f"{name}: not a readable checkpoint (it holds Python objects that cannot be loaded "
                          "safely; only tensors, numbers, strings and containers are accepted)") from None
    except Exception as err:  # torch raises many types for damaged zips
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VitsegError(f"{name}: not a readable checkpoint ({first[:160]})") from None


def _unwrap_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) from the usual containers: {'state_dict'|'model'|'module': ...} or a bare dict of tensors."""
    if not isinstance(obj, dict):
        raise VitsegError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, not a dict of weights)")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    for key in ("state_dict", "model", "module"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise VitsegError(f"{path}: not a checkpoint (no weight tensors found)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, meta


def read_official(path: "str | Path", backbone_weights: "str | Path | None" = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and meta of an official (mmcv) ViT-Adapter segmentation or backbone checkpoint, or of a release
    made of two files (a head file, and `backbone_weights`: the ViT's own file)."""
    path = Path(path)
    state, meta = _unwrap_state_dict(read_torch_file(path), path)
    if is_two_file_head(state):
        backbone = None
        if backbone_weights is not None:
            bpath = Path(backbone_weights)
            _check_exists(bpath)
            backbone = _unwrap_state_dict(read_torch_file(bpath), bpath)[0]
        return two_file_state(state, backbone, str(path), str(backbone_weights))
    if backbone_weights is not None:
        raise VitsegError(f"{path}: --backbone-weights is for releases made of a head file and a backbone file; "
                          "this checkpoint holds its whole model")
    if "backbone.level_embed" not in state:
        if "level_embed" in state and "spm.stem.0.weight" in state:  # a bare backbone state dict
            state = {f"backbone.{k}": v for k, v in state.items()}
        else:
            sample = ", ".join(list(state)[:3])
            raise VitsegError(f"{path}: not a ViT-Adapter checkpoint (no backbone.level_embed; keys look like "
                              f"{sample}, ...)")
    return state, meta


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise VitsegError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:200]})") from None


def read_vitseg(path: "str | Path") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    _check_exists(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise VitsegError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:200]})") from None
    if metadata.get("format") != FORMAT_TAG or "spec" not in metadata:
        raise VitsegError(f"{path}: a safetensors file without a vitseg spec in its metadata "
                          "(convert official checkpoints with `vitseg convert`)")
    return state, metadata


# ------------------------------------------------------------------------------------------------ loading weights


def load_model(path: "str | Path", spec: "Spec | dict | str | Path | None" = None,
               device: "str | torch.device" = "cpu", overrides: Sequence[str] = (),
               backbone_weights: "str | Path | None" = None) -> Segmentor:
    """A ready model (eval mode) from a vitseg `.safetensors`, an official `.pth`/`.zip` (+ optional spec), or the
    name of an official release (`vitseg zoo`), fetched and converted on first use.

    On a vitseg file a YAML/dict `spec` is merged onto the embedded one (a file that only sets `test.resize` keeps
    the class names); a `Spec` object replaces it. `overrides` (`key.path=value`, as `--set`) apply last.
    `backbone_weights`: the backbone file of a release made of two files (DINOv3: head file + ViT file)."""
    # a bad spec is reported before the weights are read
    partial = None if spec is None or isinstance(spec, Spec) else spec if isinstance(spec, dict) else \
        read_spec_data(spec)
    given = spec if isinstance(spec, Spec) else None
    path = resolve_weights(path)
    _check_exists(path)
    notes: list[str] = []
    if _is_safetensors(path):
        state, metadata = read_vitseg(path)
        resolved = given or _spec_from_metadata(metadata, path)
        if partial is not None:
            resolved = merge_spec(resolved, partial, source=f"{spec} (over the spec in {path.name})")
        source = metadata.get("source", str(path))
    else:
        if partial is not None:
            given = spec_from_dict(partial, source=str(spec) if not isinstance(spec, dict) else "spec")
        state, meta = read_official(path, resolve_weights(backbone_weights) if backbone_weights else None)
        if given is None:
            resolved, how = infer_spec(state, meta)
            notes += how
        else:
            resolved = given
            data = meta_classes(meta, resolved.model.num_classes)
            if data and not resolved.data.classes:
                resolved = resolved.updated(data=data)
        source = f"official checkpoint {path.name}" + (f" + {Path(backbone_weights).name}" if backbone_weights else "")
    resolved = with_overrides(resolved, list(overrides))
    # a family that allows it is built on the meta device and takes the file's tensors themselves: a 7B model
    # never holds two copies of its weights
    with torch.device("meta") if getattr(resolved.model.backbone, "loads_by_assignment", False) else nullcontext():
        model = Segmentor(resolved)
    notes += load_state_strict(model, state, path)
    model.load_notes = notes
    model.source = source
    return model.to(device).eval()


def _spec_from_metadata(metadata: dict[str, str], path: Path) -> Spec:
    # size, depth and alias expansion are capped: the metadata is as untrusted as the rest of the file
    data = load_yaml(metadata["spec"], f"{path} (embedded spec)")
    return spec_from_dict(data, source=f"{path} (embedded spec)")


# ------------------------------------------------------------------------------------------------------- writing


def save_model(model: Segmentor, path: "str | Path", *, half: bool = False, source: Optional[str] = None) -> Path:
    """Write the vitseg format atomically: tensors in safetensors, spec/classes/palette/version in its metadata."""
    path = Path(path)
    spec = model.spec.updated(data={"classes": model.spec.class_names,
                                    "palette": [list(c) for c in model.spec.palette]})
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous().clone()
    metadata = {
        "format": FORMAT_TAG,
        "vitseg_version": __version__,
        "spec": spec.to_yaml(),
        "classes": json.dumps(spec.class_names),
        "palette": json.dumps([list(c) for c in spec.palette]),
        "source": source or getattr(model, "source", "vitseg"),
    }
    remove_stale_parts(path.parent, path.name)  # what a kill during an earlier save of this file left
    atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))
    return path


# ---------------------------------------------------------------------------------------- pretraining files


def load_pretrained(model: Segmentor, path: "str | Path") -> list[str]:
    """Initialise the block stack of `model`'s backbone from a pretraining checkpoint (timm/DeiT ViT, BEiT, ...):
    the file is read here, the keys are matched by the backbone's family."""
    path = Path(path)
    _check_exists(path)
    if _is_safetensors(path):  # e.g. a timm model as the Hugging Face hub ships it (`model.safetensors`)
        state = _unwrap_state_dict(_read_safetensors(path), path)[0]
    else:
        state, _ = _unwrap_state_dict(read_torch_file(path), path)
    check_weight_values(state, state, path)  # no NaN or infinity in any floating-point tensor
    family = backbone_family(model.spec.model.backbone.type)
    if family.pretrained is None:
        raise VitsegError(f"{path}: the {family.name} backbone cannot be initialised from a pretraining file")
    return family.pretrained(model, state, path)


load_vit_pretrained = load_pretrained  # the name it had when only plain ViTs existed
