"""The mmseg 0.x config text inside official checkpoints (`meta['config']`) -> a vitseg spec dict, read safely.

Checkpoints saved by mmseg runners carry their whole config as Python source. It is read with `ast` and never run:
a statement must bind a name to literals, `dict(...)` calls, lists, tuples, names bound earlier in the text, or
simple arithmetic on those (`[False] * 24`, `80 + 91`); `_base_` is skipped. Anything else (another call, an
attribute, an import, a lambda, a comprehension, very deep nesting, a huge value) refuses the whole text with one
line naming where and why (`ConfigRefused`). The reader then maps the official model (`ViTAdapter` / `BEiTAdapter` /
`UniPerceiverAdapter`, `UPerHead` / `Mask2FormerHead`, `FCNHead`), `test_cfg` and the test pipeline onto the spec's
fields, which keep the official argument names (DESIGN §3). What the spec cannot hold exactly is refused too, so
that a spec read from a config never silently computes something else; harmless leftovers become notes.
"""

from __future__ import annotations

import ast
import operator
import reprlib
from typing import Any, Optional

from ..errors import VitsegError
from .official_test_pipeline import PipelineRefused, test_section

MAX_TEXT_CHARS = 2_000_000
MAX_DEPTH = 40  # official configs nest about 8 levels deep
MAX_ITEMS = 1_000_000  # elements and string characters made while reading, all together
MAX_INT = 2 ** 63
_show = reprlib.repr  # config values in messages, cut short


class ConfigRefused(VitsegError):
    """The config text is not one vitseg reads safely or can represent exactly; nothing in it was run."""


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
# Translating: official config dict -> vitseg spec dict.

_BACKBONE_TYPES = {"ViTAdapter": "vit_adapter", "BEiTAdapter": "beit_adapter",
                   "UniPerceiverAdapter": "uniperceiver_adapter"}
_ADAPTER_DEFAULTS = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, drop_path_rate=0.0,
                         conv_inplane=64, n_points=4, deform_num_heads=6, cffn_ratio=0.25, deform_ratio=1.0,
                         add_vit_feature=True, with_cffn=True, init_values=0.0)
# The official constructors' defaults, for the spec fields a config may leave out (they differ from vitseg's).
_OFFICIAL_DEFAULTS = {
    "vit_adapter": {**_ADAPTER_DEFAULTS, "pretrain_size": 224, "use_extra_extractor": True, "layer_scale": True},
    "beit_adapter": {**_ADAPTER_DEFAULTS, "img_size": 512, "pretrain_size": 224, "qkv_bias": False,
                     "use_abs_pos_emb": False, "use_rel_pos_bias": True, "use_shared_rel_pos_bias": False},
    "uniperceiver_adapter": {**_ADAPTER_DEFAULTS, "img_size": 224},
}
# Official arguments that change nothing vitseg computes or stores (memory, initialisation, pretrained files).
_NO_EFFECT = {"type", "pretrained", "with_cp", "use_checkpoint", "init_cfg", "drop_rate", "attn_drop_rate",
              "num_classes", "in_chans"}
# mmseg datasets: built-in class list and the reduce_zero_label their class fixes (None: the config says).
_DATASETS = {"ADE20KDataset": ("ade20k", True), "CityscapesDataset": ("cityscapes", False),
             "COCOStuffDataset": ("coco_stuff", None), "PascalContextDataset59": ("pascal_context_59", True),
             "MapillaryDataset": ("mapillary", False), "PascalVOCDataset": ("voc", False)}


def _need(section: Any, key: str, where: str) -> Any:
    if not isinstance(section, dict) or key not in section:
        raise ConfigRefused(f"config: {where}.{key} is missing")
    return section[key]


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigRefused(f"config: {where} must be a dict(...), got {type(value).__name__}")
    return value


def _first_cfg(value: Any, where: str) -> dict:
    """mmcv accepts one layer config or a list of equal ones (attn_cfgs, ffn_cfgs)."""
    if isinstance(value, (list, tuple)):
        if not value or any(v != value[0] for v in value):
            raise ConfigRefused(f"config: {where} lists different layer configs; vitseg builds equal layers only")
        value = value[0]
    return _dict(value, where)


def _pair(value: Any) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _backbone(cfg: dict, notes: list[str]) -> dict[str, Any]:
    from ..spec import BACKBONE_TYPES

    official = _need(cfg, "type", "model.backbone")
    if official not in _BACKBONE_TYPES:
        raise ConfigRefused(f"config: model.backbone.type {_show(official)} is not one vitseg runs "
                            f"({', '.join(_BACKBONE_TYPES)})")
    kind = _BACKBONE_TYPES[official]
    fields = set(BACKBONE_TYPES[kind].model_fields) - {"type", "preset"}
    out: dict[str, Any] = {"type": kind, **_OFFICIAL_DEFAULTS[kind]}
    out["interaction_indexes"] = [list(p) for p in _need(cfg, "interaction_indexes", "model.backbone")]
    for key, value in cfg.items():
        if key in fields:
            out[key] = [list(v) for v in value] if key == "interaction_indexes" else value
        elif key == "img_size" and kind == "vit_adapter":
            # the official ViT sizes pos_embed by img_size and reads it back on the pretrain_size grid
            if _pair(value) != _pair(cfg.get("pretrain_size", 224)):
                raise ConfigRefused(f"config: model.backbone.img_size {_show(value)} differs from pretrain_size "
                                    f"{_show(cfg.get('pretrain_size', 224))}; the official ViTAdapter cannot run that")
        elif key == "window_attn" and kind == "vit_adapter":
            if any(value if isinstance(value, (list, tuple)) else [value]):
                raise ConfigRefused("config: model.backbone.window_attn: windowed attention is not supported "
                                    "by vitseg's vit_adapter")
        elif key == "qkv_bias" and kind == "vit_adapter":
            if not value:
                raise ConfigRefused("config: model.backbone.qkv_bias false is not supported by vitseg's vit_adapter")
        elif key == "window_size" or (key == "qk_scale" and value is None):
            pass  # window sizes only matter with window_attn; qk_scale None is the default
        elif key not in _NO_EFFECT:
            notes.append(f"config: model.backbone.{key}={_show(value)} has no vitseg field; ignored")
    if kind == "beit_adapter" and isinstance(out.get("img_size"), (list, tuple)):
        out["img_size"] = list(out["img_size"])
    if kind == "uniperceiver_adapter":
        depth = out["depth"]
        for key, default in (("window_attn", False), ("window_size", 14)):
            value = out.get(key, default)
            out[key] = list(value) if isinstance(value, (list, tuple)) else [value] * depth
    return out


def _check_in_channels(head: dict, backbone: dict, where: str) -> None:
    expected = [backbone["embed_dim"]] * 4
    got = head.get("in_channels", expected)
    if list(got) != expected:
        raise ConfigRefused(f"config: {where}.in_channels {list(got)} do not match the backbone's {expected}")
    if list(head.get("in_index", [0, 1, 2, 3])) != [0, 1, 2, 3]:
        raise ConfigRefused(f"config: {where}.in_index must be [0, 1, 2, 3]")
    if head.get("align_corners", False):
        raise ConfigRefused(f"config: {where}.align_corners true is not supported")


def _upernet(head: dict, backbone: dict) -> tuple[dict[str, Any], int]:
    _check_in_channels(head, backbone, "model.decode_head")
    spec = {"type": "upernet", "channels": _need(head, "channels", "model.decode_head"),
            "pool_scales": list(head.get("pool_scales", (1, 2, 3, 6))), "dropout": head.get("dropout_ratio", 0.1)}
    return spec, _need(head, "num_classes", "model.decode_head")


def _mask2former(head: dict, backbone: dict, train_cfg: dict) -> tuple[dict[str, Any], int]:
    where = "model.decode_head"
    _check_in_channels(head, backbone, where)
    feat = _need(head, "feat_channels", where)
    pixel = _dict(_need(head, "pixel_decoder", where), f"{where}.pixel_decoder")
    encoder = _dict(_need(pixel, "encoder", f"{where}.pixel_decoder"), f"{where}.pixel_decoder.encoder")
    enc_layer = _dict(_need(encoder, "transformerlayers", f"{where}.pixel_decoder.encoder"),
                      f"{where}.pixel_decoder.encoder.transformerlayers")
    enc_attn = _first_cfg(_need(enc_layer, "attn_cfgs", "pixel_decoder.encoder.transformerlayers"),
                          "pixel_decoder.encoder.transformerlayers.attn_cfgs")
    enc_ffn = _first_cfg(_need(enc_layer, "ffn_cfgs", "pixel_decoder.encoder.transformerlayers"),
                         "pixel_decoder.encoder.transformerlayers.ffn_cfgs")
    decoder = _dict(_need(head, "transformer_decoder", where), f"{where}.transformer_decoder")
    dec_layer = _dict(_need(decoder, "transformerlayers", f"{where}.transformer_decoder"),
                      f"{where}.transformer_decoder.transformerlayers")
    dec_attn = _first_cfg(_need(dec_layer, "attn_cfgs", "transformer_decoder.transformerlayers"),
                          "transformer_decoder.transformerlayers.attn_cfgs")
    dec_ffn = dec_layer.get("feedforward_channels") or _need(
        _first_cfg(_need(dec_layer, "ffn_cfgs", "transformer_decoder.transformerlayers"), "ffn_cfgs"),
        "feedforward_channels", "transformer_decoder.transformerlayers.ffn_cfgs")
    levels = {head.get("num_transformer_feat_level", 3), pixel.get("num_outs", 3), enc_attn.get("num_levels", 4)}
    if levels != {3}:
        raise ConfigRefused(f"config: {where}: vitseg's Mask2Former uses 3 feature levels, the config {sorted(levels)}")
    for name, section in (("pixel_decoder", pixel), ("decode_head", head)):
        encoding = section.get("positional_encoding", {})
        if isinstance(encoding, dict) and encoding.get("num_feats", feat // 2) != feat // 2:
            raise ConfigRefused(f"config: {name}.positional_encoding.num_feats must be feat_channels/2 = {feat // 2}")
    for name, dims in (("pixel_decoder encoder", enc_attn.get("embed_dims", feat)),
                       ("transformer_decoder", dec_attn.get("embed_dims", feat))):
        if dims != feat:
            raise ConfigRefused(f"config: {where}: {name} embed_dims {dims} differ from feat_channels {feat}")
    norm = pixel.get("norm_cfg", {"type": "GN", "num_groups": 32})
    if not isinstance(norm, dict) or norm.get("type") != "GN":
        raise ConfigRefused(f"config: {where}.pixel_decoder.norm_cfg must be GroupNorm (type='GN')")
    losses = {name: _dict(head.get(f"loss_{name}", {}), f"{where}.loss_{name}") for name in ("cls", "mask", "dice")}
    class_weight = losses["cls"].get("class_weight")
    spec = {
        "type": "mask2former", "feat_channels": feat, "out_channels": _need(head, "out_channels", where),
        "num_queries": _need(head, "num_queries", where),
        "enforce_decoder_input_project": head.get("enforce_decoder_input_project", False),
        "pixel_decoder": {"num_layers": _need(encoder, "num_layers", "pixel_decoder.encoder"),
                          "num_heads": enc_attn.get("num_heads", 8), "num_points": enc_attn.get("num_points", 4),
                          "feedforward_channels": _need(enc_ffn, "feedforward_channels", "ffn_cfgs"),
                          "num_groups": norm.get("num_groups", 32)},
        "transformer_decoder": {"num_layers": _need(decoder, "num_layers", "transformer_decoder"),
                                "num_heads": _need(dec_attn, "num_heads", "transformer_decoder attn_cfgs"),
                                "feedforward_channels": dec_ffn},
        "loss": {"cls_weight": losses["cls"].get("loss_weight", 2.0),
                 "mask_weight": losses["mask"].get("loss_weight", 5.0),
                 "dice_weight": losses["dice"].get("loss_weight", 5.0),
                 "no_object_weight": class_weight[-1] if class_weight else 0.1,
                 **{k: train_cfg[k] for k in ("num_points", "oversample_ratio", "importance_sample_ratio")
                    if k in train_cfg}},
    }
    if "num_things_classes" in head or "num_stuff_classes" in head:
        classes = head.get("num_things_classes", 0) + head.get("num_stuff_classes", 0)
    else:
        classes = _need(head, "num_classes", where)
    return spec, classes


def _auxiliary(aux: Any, backbone: dict, classes: int) -> dict[str, Any]:
    where = "model.auxiliary_head"
    aux = _dict(aux, where)
    if aux.get("type") != "FCNHead":
        raise ConfigRefused(f"config: {where}.type {_show(aux.get('type'))} is not supported (FCNHead only)")
    if aux.get("concat_input", True) or aux.get("kernel_size", 3) != 3:
        raise ConfigRefused(f"config: {where}: vitseg's FCN head needs concat_input=False and kernel_size 3")
    index = aux.get("in_index", -1)
    if aux.get("in_channels", backbone["embed_dim"]) != backbone["embed_dim"] or not isinstance(index, int):
        raise ConfigRefused(f"config: {where}: in_channels/in_index do not match one backbone level")
    if aux.get("num_classes", classes) != classes:
        raise ConfigRefused(f"config: {where}.num_classes {aux['num_classes']} differs from the decode head's "
                            f"{classes}")
    loss = aux.get("loss_decode", {})
    return {"type": "fcn", "channels": _need(aux, "channels", where), "in_index": index % 4,
            "num_convs": aux.get("num_convs", 2), "dropout": aux.get("dropout_ratio", 0.1),
            "loss_weight": loss.get("loss_weight", 1.0) if isinstance(loss, dict) else 1.0}


def _data_test(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's data.test section ({} when there is none)."""
    data = _dict(cfg.get("data", {}), "data")
    return _dict(data.get("test", {}), "data.test")


def _test(cfg: dict[str, Any], model: dict, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec.test, the normalisation part of spec.data): every test step translated, or the config refused."""
    try:
        return test_section(cfg, model, notes)
    except PipelineRefused as err:
        raise ConfigRefused(str(err)) from None


def _dataset(cfg: dict[str, Any], classes: int, notes: list[str]) -> dict[str, Any]:
    from ..data.classes import builtin_classes

    test = _data_test(cfg)
    kind = test.get("type", cfg.get("dataset_type"))
    out: dict[str, Any] = {}
    if kind not in _DATASETS:
        notes.append(f"config: dataset {_show(kind)} is not a built-in one; class names not set")
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
        raise ConfigRefused(f"config: a value of an unexpected kind ({_show(str(err))})") from None


def _translate(cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    from ..spec import spec_from_dict

    notes: list[str] = []
    model = _dict(_need(cfg, "model", "(top level)"), "model")
    backbone = _backbone(_dict(_need(model, "backbone", "model"), "model.backbone"), notes)
    head = _dict(_need(model, "decode_head", "model"), "model.decode_head")
    kind = head.get("type")
    if kind == "UPerHead":
        decode_head, classes = _upernet(head, backbone)
    elif kind == "Mask2FormerHead":
        decode_head, classes = _mask2former(head, backbone, model.get("train_cfg") or {})
    else:
        raise ConfigRefused(f"config: model.decode_head.type {_show(kind)} is not one vitseg runs (UPerHead, "
                            f"Mask2FormerHead)")
    spec_model: dict[str, Any] = {"backbone": backbone, "decode_head": decode_head, "num_classes": classes}
    if model.get("auxiliary_head"):
        spec_model["auxiliary_head"] = _auxiliary(model["auxiliary_head"], backbone, classes)
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
