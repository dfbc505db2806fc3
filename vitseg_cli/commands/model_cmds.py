"""`vitseg convert` and `vitseg info`: move official checkpoints to the vitseg format and describe weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..checkpoints import load_model, save_model
from .common import console, friendly_errors

SPEC_HELP = "Spec: a YAML file or a preset (nano, tiny, small, base, large). Inferred from the weights if omitted."


@friendly_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="Official ViT-Adapter checkpoint (.pth / .pth.tar, mmcv layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .safetensors file."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help=SPEC_HELP),
    half: bool = typer.Option(False, "--half", help="Store floating-point weights as float16 (half the size)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Convert an official mmseg ViT-Adapter checkpoint to a self-contained vitseg .safetensors file."""
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists (use --overwrite)", param_hint="--out")
    model = load_model(checkpoint, spec)
    for note in model.load_notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    save_model(model, out, half=half, source=model.source)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {model.num_classes} classes)", markup=False)


@friendly_errors
def info(
    weights: Path = typer.Argument(..., help="A vitseg .safetensors or an official .pth checkpoint."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help=SPEC_HELP),
    show_spec: bool = typer.Option(False, "--spec-yaml", help="Also print the full resolved spec as YAML."),
) -> None:
    """Describe a checkpoint: architecture, classes, parameter counts and where it came from."""
    model = load_model(weights, spec)
    s = model.spec
    b = s.model.backbone
    table = Table(title=Text(str(weights)), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    count = lambda m: f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}M" if m is not None else "-"  # noqa: E731
    table.add_row("source", Text(model.source))  # literal: a path may hold '[/b]'-like text
    table.add_row("backbone", f"ViT-Adapter D{b.embed_dim} depth {b.depth} heads {b.num_heads} "
                              f"deform heads {b.deform_num_heads} ratio {b.deform_ratio} pretrain {b.pretrain_size}")
    table.add_row("decode head", f"UperNet {s.model.decode_head.channels} ch" if s.model.decode_head else "none")
    table.add_row("aux head", f"FCN {s.model.auxiliary_head.channels} ch" if s.model.auxiliary_head else "none")
    table.add_row("parameters", f"backbone {count(model.backbone)}, decode head {count(model.decode_head)}, "
                                f"aux head {count(model.auxiliary_head)}, total {count(model)}")
    names = s.class_names
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    table.add_row("classes", Text(f"{s.model.num_classes}: {shown}"))
    table.add_row("test", f"{s.test.mode}, crop {list(s.test.crop_size)}, stride {list(s.test.stride)}, "
                          f"resize {list(s.test.resize.scale) if s.test.resize else 'native'}")
    from rich.console import Console

    out = Console(highlight=False)
    out.print(table)
    for note in model.load_notes:
        out.print(f"note: {note}", soft_wrap=True, markup=False)
    if show_spec:
        out.print(s.to_yaml(), markup=False)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
    app.command("info")(info)
