"""The `mask2former` head family's spec sections, official-config translation and registry entry (torch-free; the
modules are in `mask2former.py`, `pixel_decoder.py` and `mask2former_loss.py`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ...spec_base import MAX_DIM, Channels, HeadConfig, Strict
from ..family import Family
from ..official_fields import ConfigRefused, OfficialContext, as_dict, check_in_channels, first_cfg, need


class PixelDecoderSpec(Strict):
    """Mask2Former's MSDeformAttnPixelDecoder: a deformable-attention encoder over the 1/8..1/32 levels."""

    num_layers: int = Field(6, gt=0, le=256)
    num_heads: int = Field(8, gt=0, le=MAX_DIM)
    num_points: int = Field(4, gt=0, le=64)
    feedforward_channels: Channels = 1024
    num_groups: int = Field(32, gt=0, le=MAX_DIM)


class TransformerDecoderSpec(Strict):
    """Mask2Former's masked-attention decoder (DetrTransformerDecoder of DetrTransformerDecoderLayers)."""

    num_layers: int = Field(9, gt=0, le=256)
    num_heads: int = Field(8, gt=0, le=MAX_DIM)
    feedforward_channels: Channels = 2048


class Mask2FormerLossSpec(Strict):
    """The official Mask2Former loss: Hungarian matching on sampled points, deep supervision."""

    cls_weight: float = Field(2.0, ge=0)
    mask_weight: float = Field(5.0, ge=0)
    dice_weight: float = Field(5.0, ge=0)
    no_object_weight: float = Field(0.1, ge=0)
    num_points: int = Field(12544, gt=0, le=1 << 20)
    oversample_ratio: float = Field(3.0, ge=1)
    importance_sample_ratio: float = Field(0.75, ge=0, le=1)


class Mask2FormerHeadSpec(HeadConfig):
    """Mask2Former (mmdet-style, as the official ViT-Adapter `Mask2FormerHead`): per-query class + mask."""

    type: Literal["mask2former"] = "mask2former"
    feat_channels: Channels = 256
    out_channels: Channels = 256
    num_queries: int = Field(100, gt=0, le=4096)
    enforce_decoder_input_project: bool = False
    pixel_decoder: PixelDecoderSpec = Field(default_factory=PixelDecoderSpec)
    transformer_decoder: TransformerDecoderSpec = Field(default_factory=TransformerDecoderSpec)
    loss: Mask2FormerLossSpec = Field(default_factory=Mask2FormerLossSpec)

    def summary(self) -> str:
        return (f"Mask2Former {self.num_queries} queries, {self.feat_channels} ch, pixel decoder "
                f"{self.pixel_decoder.num_layers} layers, transformer decoder {self.transformer_decoder.num_layers} "
                f"layers")

    @model_validator(mode="after")
    def _check_dims(self) -> "Mask2FormerHeadSpec":
        if self.feat_channels % 2:
            raise ValueError(f"feat_channels {self.feat_channels} must be even (sine position encoding)")
        for name, heads in (("pixel_decoder", self.pixel_decoder.num_heads),
                            ("transformer_decoder", self.transformer_decoder.num_heads)):
            if self.feat_channels % heads:
                raise ValueError(f"feat_channels {self.feat_channels} is not divisible by {name}.num_heads {heads}")
        if self.feat_channels % self.pixel_decoder.num_groups:
            raise ValueError(f"feat_channels {self.feat_channels} is not divisible by pixel_decoder.num_groups "
                             f"{self.pixel_decoder.num_groups}")
        return self


def from_official_config(head: dict, ctx: OfficialContext) -> tuple[dict[str, Any], int]:
    """An official `Mask2FormerHead` dict -> (the mask2former section, num_classes); the point-sampling settings
    come from the model's train_cfg."""
    where, train_cfg = ctx.where, ctx.model.get("train_cfg") or {}
    check_in_channels(head, ctx.backbone, where)
    feat = need(head, "feat_channels", where)
    pixel = as_dict(need(head, "pixel_decoder", where), f"{where}.pixel_decoder")
    encoder = as_dict(need(pixel, "encoder", f"{where}.pixel_decoder"), f"{where}.pixel_decoder.encoder")
    enc_layer = as_dict(need(encoder, "transformerlayers", f"{where}.pixel_decoder.encoder"),
                      f"{where}.pixel_decoder.encoder.transformerlayers")
    enc_attn = first_cfg(need(enc_layer, "attn_cfgs", "pixel_decoder.encoder.transformerlayers"),
                          "pixel_decoder.encoder.transformerlayers.attn_cfgs")
    enc_ffn = first_cfg(need(enc_layer, "ffn_cfgs", "pixel_decoder.encoder.transformerlayers"),
                         "pixel_decoder.encoder.transformerlayers.ffn_cfgs")
    decoder = as_dict(need(head, "transformer_decoder", where), f"{where}.transformer_decoder")
    dec_layer = as_dict(need(decoder, "transformerlayers", f"{where}.transformer_decoder"),
                      f"{where}.transformer_decoder.transformerlayers")
    dec_attn = first_cfg(need(dec_layer, "attn_cfgs", "transformer_decoder.transformerlayers"),
                          "transformer_decoder.transformerlayers.attn_cfgs")
    dec_ffn = dec_layer.get("feedforward_channels") or need(
        first_cfg(need(dec_layer, "ffn_cfgs", "transformer_decoder.transformerlayers"), "ffn_cfgs"),
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
    losses = {name: as_dict(head.get(f"loss_{name}", {}), f"{where}.loss_{name}") for name in ("cls", "mask", "dice")}
    class_weight = losses["cls"].get("class_weight")
    spec = {
        "type": "mask2former", "feat_channels": feat, "out_channels": need(head, "out_channels", where),
        "num_queries": need(head, "num_queries", where),
        "enforce_decoder_input_project": head.get("enforce_decoder_input_project", False),
        "pixel_decoder": {"num_layers": need(encoder, "num_layers", "pixel_decoder.encoder"),
                          "num_heads": enc_attn.get("num_heads", 8), "num_points": enc_attn.get("num_points", 4),
                          "feedforward_channels": need(enc_ffn, "feedforward_channels", "ffn_cfgs"),
                          "num_groups": norm.get("num_groups", 32)},
        "transformer_decoder": {"num_layers": need(decoder, "num_layers", "transformer_decoder"),
                                "num_heads": need(dec_attn, "num_heads", "transformer_decoder attn_cfgs"),
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
        classes = need(head, "num_classes", where)
    return spec, classes


FAMILY = Family(
    name="mask2former", config_cls=Mask2FormerHeadSpec, label="Mask2Former",
    build=f"{__package__}.mask2former:build_mask2former",
    detect=f"{__package__}.mask2former:is_official", infer=f"{__package__}.mask2former:infer_official",
    official_types=("Mask2FormerHead",), from_official_config=from_official_config,
    tiny=dict(type="mask2former", feat_channels=32, out_channels=32, num_queries=8,
              pixel_decoder=dict(num_layers=1, num_heads=2, num_points=2, feedforward_channels=32, num_groups=8),
              transformer_decoder=dict(num_layers=3, num_heads=2, feedforward_channels=32),
              loss=dict(num_points=64)),
)
