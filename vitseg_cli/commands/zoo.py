"""`vitseg zoo`: the released official checkpoints, by the name that `--weights` accepts (no torch import)."""

from __future__ import annotations

import json

import typer

from .common import friendly_errors


@friendly_errors
def zoo_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the table as a JSON list of objects."),
) -> None:
    """List the official ViT-Adapter segmentation checkpoints. Give a NAME as --weights (predict, eval, visualize,
    info, convert, export) or --init-from (train): it is downloaded once into $VITSEG_HOME (~/.cache/vitseg) and
    converted. VITSEG_ZOO_MIRROR=URL fetches URL/<file name> instead of the official URL."""
    from rich.console import Console
    from rich.table import Table

    from .. import zoo

    if as_json:
        print(json.dumps(zoo.as_records(), indent=1))
        return
    table = Table(title=f"official checkpoints (cache: {zoo.cache_dir()})", title_justify="left")
    for column, justify in (("name", "left"), ("method", "left"), ("backbone", "left"), ("pretrain", "left"),
                            ("dataset", "left"), ("crop", "right"), ("mIoU SS", "right"), ("mIoU MS", "right"),
                            ("params", "right"), ("size", "right"), ("cached", "center"), ("url", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    score = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for row in zoo.as_records():
        table.add_row(row["name"], row["method"], row["backbone"], row["pretrain"], row["dataset"],
                      str(row["crop_size"]), score(row["miou_ss"]), score(row["miou_ms"]), row["params"],
                      row["size"] or "-", "yes" if row["cached"] else "", row["url"])
    Console(markup=False, highlight=False).print(table)


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo_cmd)
