"""Checkpoints: the vitseg format (safetensors + spec in metadata), official mmseg ViT-Adapter files, timm/DeiT ViTs.

- `load_model(path, spec=None)`: a vitseg `.safetensors` (spec inside) or an official `.pth`/`.pth.tar` (spec given,
  or inferred from the weights; the guessed fields are listed in `model.load_notes`).
- `save_model(model, path)`: atomic write of the vitseg format.
- `load_vit_pretrained(model, path)`: initialise the ViT part from a timm/DeiT classification checkpoint.

Every user file is read with `torch.load(..., weights_only=True)` or safetensors: never a pickle that can run code.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from . import __version__
from .data.io import atomic_write_bytes, remove_stale_parts
from .errors import VitsegError
from .safe_yaml import load_yaml
from .model.segmentor import Segmentor
from .spec import BACKBONE_PRESETS, Spec, load_spec, spec_from_dict

FORMAT_TAG = "vitseg"
HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16}  # official ViT convention: head dim 64
_SEG_PREFIXES = ("backbone.", "decode_head.", "auxiliary_head.")


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
    """Load a zip-based torch file safely (weights only)."""
    _check_exists(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        what = "an empty file" if not magic else "neither a torch (zip) file nor safetensors"
        raise VitsegError(f"{path}: not a readable checkpoint ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise VitsegError(f"{path}: not a readable checkpoint (it holds Python objects that cannot be loaded "
                          "safely; only tensors, numbers, strings and containers are accepted)") from None
    except Exception as err:  # torch raises many types for damaged zips
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VitsegError(f"{path}: not a readable checkpoint ({first[:160]})") from None


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


def read_official(path: "str | Path") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and meta of an official (mmcv) ViT-Adapter segmentation or backbone checkpoint."""
    path = Path(path)
    state, meta = _unwrap_state_dict(read_torch_file(path), path)
    if "backbone.level_embed" not in state:
        if "level_embed" in state and "spm.stem.0.weight" in state:  # a bare backbone state dict
            state = {f"backbone.{k}": v for k, v in state.items()}
        else:
            sample = ", ".join(list(state)[:3])
            raise VitsegError(f"{path}: not a ViT-Adapter checkpoint (no backbone.level_embed; keys look like "
                              f"{sample}, ...)")
    return state, meta


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


# ----------------------------------------------------------------------------------------------- spec inference


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_spec(state: dict[str, torch.Tensor], meta: Optional[dict[str, Any]] = None) -> tuple[Spec, list[str]]:
    """A spec that fits an official checkpoint's weights, and the list of fields that had to be assumed.
    A malformed file (a key missing, a tensor of the wrong rank) is a `VitsegError` asking for --spec."""
    try:
        return _infer_spec(state, meta)
    except KeyError as err:
        raise VitsegError(f"cannot infer the spec: weight {err.args[0]} is missing (give --spec)") from None
    except (IndexError, ValueError, TypeError, ZeroDivisionError) as err:
        raise VitsegError(f"cannot infer the spec: the weights have unexpected shapes ({err}); give --spec") from None


def _infer_spec(state: dict[str, torch.Tensor], meta: Optional[dict[str, Any]]) -> tuple[Spec, list[str]]:
    meta = meta or {}
    assumed: list[str] = []
    g = lambda k: state[f"backbone.{k}"]  # noqa: E731
    d = g("level_embed").shape[1]
    depth = _count(state, r"backbone\.blocks\.(\d+)\.norm1\.weight")
    n_inter = _count(state, r"backbone\.interactions\.(\d+)\.injector\.gamma")
    if depth == 0 or n_inter == 0 or depth % n_inter:
        raise VitsegError(f"cannot infer the spec: {depth} ViT blocks and {n_inter} interaction blocks")
    per = depth // n_inter
    if d in HEADS_BY_DIM:
        num_heads = HEADS_BY_DIM[d]
    else:
        num_heads = max(3, d // 64) if d % max(3, d // 64) == 0 else 1
    assumed.append(f"num_heads={num_heads} (convention for embed_dim {d})")
    n_points = 4
    offsets_rows = g("interactions.0.injector.attn.sampling_offsets.weight").shape[0]
    deform_heads = offsets_rows // (3 * n_points * 2)
    assumed.append("n_points=4")
    preset = {v["embed_dim"]: k for k, v in BACKBONE_PRESETS.items() if k != "nano"}.get(d)
    dpr = BACKBONE_PRESETS[preset]["drop_path_rate"] if preset else 0.1
    assumed.append(f"drop_path_rate={dpr} (training only)")
    assumed.append(f"interaction_indexes: {n_inter} even ranges of {per} blocks")
    assumed.append("add_vit_feature=true")
    ffn_key = "backbone.interactions.0.extractor.ffn.fc1.weight"
    backbone = dict(
        pretrain_size=int(round(math.sqrt(g("pos_embed").shape[1] - 1))) * 16,
        embed_dim=d, depth=depth, num_heads=num_heads,
        mlp_ratio=g("blocks.0.mlp.fc1.weight").shape[0] / d,
        drop_path_rate=dpr,
        conv_inplane=g("spm.stem.0.weight").shape[0],
        n_points=n_points, deform_num_heads=deform_heads,
        cffn_ratio=(state[ffn_key].shape[0] / d) if ffn_key in state else 0.25,
        deform_ratio=g("interactions.0.injector.attn.value_proj.weight").shape[0] / d,
        interaction_indexes=[[i * per, i * per + per - 1] for i in range(n_inter)],
        add_vit_feature=True,
        use_extra_extractor=any(".extra_extractors." in k for k in state),
        with_cffn=ffn_key in state,
        layer_scale="backbone.blocks.0.gamma1" in state,
    )
    model: dict[str, Any] = {"backbone": backbone}
    if "decode_head.conv_seg.weight" in state:
        seg = state["decode_head.conv_seg.weight"]
        model["num_classes"] = seg.shape[0]
        n_pool = _count(state, r"decode_head\.psp_modules\.(\d+)\.")
        pool_scales = [1, 2, 3, 6] if n_pool == 4 else list(range(1, n_pool + 1))
        model["decode_head"] = {"type": "upernet", "channels": seg.shape[1], "pool_scales": pool_scales}
        assumed.append(f"decode_head.pool_scales={pool_scales}")
    if "auxiliary_head.conv_seg.weight" in state:
        model["auxiliary_head"] = {"type": "fcn", "channels": state["auxiliary_head.conv_seg.weight"].shape[1],
                                   "num_convs": _count(state, r"auxiliary_head\.convs\.(\d+)\."), "in_index": 2}
        assumed.append("auxiliary_head.in_index=2")
        model.setdefault("num_classes", state["auxiliary_head.conv_seg.weight"].shape[0])
    data = _meta_classes(meta, model.get("num_classes"))
    return spec_from_dict({"model": model, "data": data}, source="inferred spec"), assumed


def _meta_classes(meta: dict[str, Any], num_classes: Optional[int]) -> dict[str, Any]:
    """Class names and palette from an official checkpoint's meta, when they are well-formed and fit the model."""
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
    except (TypeError, ValueError):  # a damaged meta: the generic palette serves
        pass
    return data


# ------------------------------------------------------------------------------------------------ loading weights


def _load_strict(model: Segmentor, state: dict[str, torch.Tensor], path: Path) -> list[str]:
    notes = []
    expected = model.state_dict()
    if model.auxiliary_head is None:
        state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    elif not any(k.startswith("auxiliary_head.") for k in state):
        model.auxiliary_head = None
        model.spec = model.spec.updated(model={"auxiliary_head": None})
        expected = model.state_dict()
        notes.append("the checkpoint has no auxiliary head: the model is built without one")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:6])}"
                         f"{', ...' if len(unexpected) > 6 else ''})")
        raise VitsegError(f"{path}: weights do not match the spec: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if state[k].shape != v.shape]
    if wrong:
        raise VitsegError(f"{path}: weight shapes do not match the spec: {'; '.join(wrong[:4])}"
                          f"{' ...' if len(wrong) > 4 else ''}")
    check_weight_values(state, expected, path)
    model.load_state_dict(state, strict=True)
    return notes


def check_weight_values(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights that would silently give garbage (all-zero masks): integer tensors where the model has floating
    point ones, and NaN or infinite values."""
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


def load_model(path: "str | Path", spec: "Spec | dict | str | Path | None" = None,
               device: "str | torch.device" = "cpu") -> Segmentor:
    """A ready model (eval mode) from a vitseg `.safetensors` or an official `.pth` (+ optional spec)."""
    path = Path(path)
    given = load_spec(spec) if spec is not None else None  # a bad spec is reported before the weights are read
    _check_exists(path)
    notes: list[str] = []
    if _is_safetensors(path):
        state, metadata = read_vitseg(path)
        resolved = given or _spec_from_metadata(metadata, path)
        source = metadata.get("source", str(path))
    else:
        state, meta = read_official(path)
        if given is None:
            resolved, assumed = infer_spec(state, meta)
            notes.append("spec inferred from the weights; assumed " + "; ".join(assumed))
        else:
            resolved = given
            data = _meta_classes(meta, resolved.model.num_classes)
            if data and not resolved.data.classes:
                resolved = resolved.updated(data=data)
        source = f"official checkpoint {path.name}"
    model = Segmentor(resolved)
    notes += _load_strict(model, state, path)
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


# ------------------------------------------------------------------------------------------ timm / DeiT pretrained

_TIMM_DROPPED = ("cls_token", "dist_token", "norm.", "fc_norm.", "head.", "head_dist.", "pre_logits.")


def load_vit_pretrained(model: Segmentor, path: "str | Path") -> list[str]:
    """Initialise the ViT part (patch embed, pos embed, blocks) from a timm/DeiT classification checkpoint."""
    path = Path(path)
    state, _ = _unwrap_state_dict(read_torch_file(path), path)
    vit: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith(_TIMM_DROPPED):
            continue
        k = k.replace(".ls1.gamma", ".gamma1").replace(".ls2.gamma", ".gamma2")
        vit[k] = v
    backbone = model.backbone
    own = backbone.state_dict()
    wanted = [k for k in own if k == "pos_embed" or k.startswith(("patch_embed.", "blocks."))]
    if "pos_embed" in vit:
        pos = vit["pos_embed"]
        if pos.shape[1] == own["pos_embed"].shape[1] - 1:  # no cls slot: add an unused one
            pos = torch.cat([pos.new_zeros(1, 1, pos.shape[2]), pos], dim=1)
        if pos.shape != own["pos_embed"].shape:
            grid = int(round(math.sqrt(pos.shape[1] - 1)))
            raise VitsegError(f"{path}: pos_embed {tuple(pos.shape)} fits pretrain_size {grid * 16}, the spec has "
                              f"{backbone.pretrain_grid * 16} (set model.backbone.pretrain_size)")
        vit["pos_embed"] = pos
    optional = {k for k in wanted if k.endswith((".gamma1", ".gamma2"))}
    missing = [k for k in wanted if k not in vit and k not in optional]
    if missing:
        raise VitsegError(f"{path}: not a matching ViT checkpoint: {len(missing)} ViT weights missing "
                          f"({', '.join(missing[:4])}, ...)")
    wrong = [k for k in wanted if k in vit and vit[k].shape != own[k].shape]
    if wrong:
        raise VitsegError(f"{path}: ViT shapes differ from the spec: " + "; ".join(
            f"{k} {tuple(vit[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:4]))
    loaded = {k: vit[k] for k in wanted if k in vit}
    check_weight_values(loaded, {k: own[k] for k in loaded}, path)
    backbone.load_state_dict(loaded, strict=False)
    notes = [f"ViT initialised from {path.name} ({sum(k in vit for k in wanted)} tensors)"]
    if any(k not in vit for k in optional):
        notes.append("the checkpoint has no layer-scale gammas: they start at 1.0")
    return notes
