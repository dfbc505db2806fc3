"""`vitseg convert` and `vitseg info`: move official checkpoints to the vitseg format and describe weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import VitsegError
from .common import BackboneWeightsOption, friendly_errors, note, results_console

SPEC_HELP = ("Spec: a YAML file or a preset (nano..large, nano_mask2former, or an official release name: "
             "`vitseg info --presets`). Read from the checkpoint if omitted.")


@friendly_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="Official ViT-Adapter checkpoint (.pth / .pth.tar, mmcv layout) "
                                                "or a zoo name."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help=SPEC_HELP),
    half: bool = typer.Option(False, "--half", help="Store floating-point weights as float16 (half the size)."),
    backbone_weights: BackboneWeightsOption = None,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Convert an official mmseg ViT-Adapter checkpoint to a self-contained vitseg .safetensors file."""
    if out.exists() and not overwrite:
        raise VitsegError(f"--out {out}: exists (use --overwrite)")
    from ..loading import load_model, save_model

    model = load_model(checkpoint, spec, device="cpu", backbone_weights=backbone_weights)
    for line in model.load_notes:
        note(line)
    save_model(model, out, half=half, source=model.source)
    results_console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.num_classes} classes)")


def presets_table():
    """Every spec preset: the official releases' (with their dataset) and the generic ones (nano..large)."""
    from rich.table import Table

    from ..model.registry import head_family
    from ..spec import SPEC_PRESETS, load_spec
    from ..zoo import all_releases

    released = {r.name: r for r in all_releases()}
    table = Table(title=f"{len(SPEC_PRESETS)} spec presets (--spec NAME)", title_justify="left")
    for column in ("name", "method", "backbone", "dataset", "crop"):
        table.add_column(column)
    for name in SPEC_PRESETS:
        s = load_spec(name)
        head = s.model.decode_head
        method = head_family(head.type).label if head else "-"
        r = released.get(name)
        size = getattr(s.model.backbone, "preset", None)
        backbone = r.backbone if r else s.model.backbone.type + (f" ({size})" if size else "")
        crop = str(s.test.crop_size[0]) if s.test.mode == "slide" else "whole"
        table.add_row(name + (" (reconstruction)" if r and r.reconstructed else ""), method, backbone,
                      r.dataset if r else "-", crop)
    return table


@friendly_errors
def info(
    weights: Optional[Path] = typer.Argument(None, help="A vitseg .safetensors, an official .pth/.zip checkpoint, "
                                                        "or a zoo name."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help=SPEC_HELP),
    show_spec: bool = typer.Option(False, "--spec-yaml", help="Also print the full resolved spec as YAML."),
    backbone_weights: BackboneWeightsOption = None,
    device: str = typer.Option("cpu", "--device", help="Where the model would run: cpu or cuda[:N] (whether it "
                                                      "fits there is told before loading)."),
    presets: bool = typer.Option(False, "--presets", help="List the spec presets (one per official release, "
                                                          "and nano..large) instead."),
) -> None:
    """Describe a checkpoint: architecture, classes, parameter counts and where it came from."""
    from rich.table import Table

    if presets:
        results_console.print(presets_table())
        return
    if weights is None:
        raise VitsegError("info: give a WEIGHTS file or zoo name, or --presets to list the spec presets")
    from ..engine.memory import available_bytes, fit_line, weights_bytes
    from ..loading import load_model, resolve_weights
    from ..zoo import all_releases

    files = [resolve_weights(weights), *([resolve_weights(backbone_weights)] if backbone_weights else [])]
    if all(f.is_file() for f in files):  # a missing file is reported by the loader below
        line, fits = fit_line(weights_bytes(files), available_bytes(device), device)
        if not fits:
            raise VitsegError(f"{weights}: {line.removeprefix('memory: ')}")
        print(line, flush=True)  # stdout, with the table: stderr keeps errors only
    model = load_model(weights, spec, device="cpu", backbone_weights=backbone_weights)
    s = model.spec
    b = s.model.backbone
    table = Table(title=str(weights), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    count = lambda m: f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M" if m is not None else "-"  # noqa: E731
    table.add_row("source", model.source)
    table.add_row("backbone", f"{b.type}: {b.summary()}")
    head = s.model.decode_head
    table.add_row("decode head", f"{head.type}: {head.summary()}" if head else "none")
    aux = s.model.auxiliary_head
    table.add_row("aux head", aux.summary() if aux else "none")
    table.add_row("parameters", f"backbone {count(model.backbone)}, decode head {count(model.decode_head)}, "
                                f"aux head {count(model.auxiliary_head)}, total {count(model)}")
    names = s.class_names
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    table.add_row("classes", f"{s.model.num_classes}: {shown}")
    table.add_row("test", f"{s.test.mode}, crop {list(s.test.crop_size)}, stride {list(s.test.stride)}, "
                          f"resize {list(s.test.resize.scale) if s.test.resize else 'native'}")
    out = results_console
    out.print(table)
    for line in model.load_notes:
        out.print(f"note: {line}", soft_wrap=True)
    if spec is not None and any(r.reconstructed and r.name == spec for r in all_releases()):
        out.print(f"note: the preset {spec} is a reconstruction; the config file released beside the checkpoint is "
                  "the authority", soft_wrap=True)
    if show_spec:
        out.print(s.to_yaml(), markup=False)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
    app.command("info")(info)
