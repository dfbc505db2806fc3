"""`vitseg zoo`: the released official checkpoints, by the name that `--weights` accepts (no torch import)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from ..errors import VitsegError, did_you_mean
from .common import friendly_errors


@friendly_errors
def zoo_cmd(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="Show one release in full: URL and cache paths."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as a JSON list of objects."),
) -> None:
    """List the official ViT-Adapter segmentation checkpoints. Give a NAME as --weights (predict, eval, visualize,
    info, convert, export) or --init-from (train): it is downloaded once into $VITSEG_HOME (~/.cache/vitseg) and
    converted. VITSEG_ZOO_MIRROR=URL fetches URL/<file name> instead of the official URL."""
    from rich.console import Console

    from .. import zoo

    records = zoo.as_records()
    if name is not None:
        records = [r for r in records if r["name"] == name]
        if not records:
            raise VitsegError(f"{name}: not a zoo name{did_you_mean(name, zoo.names())} (vitseg zoo lists them)")
    if as_json:
        print(json.dumps(records, indent=1))
        return
    # piped output keeps whole rows (no wrapping at 80 columns), so that it can be searched
    console = Console(markup=False, highlight=False, width=None if sys.stdout.isatty() else 200)
    if name is not None:
        console.print(_details(zoo.find_release(name)), soft_wrap=True)
        return
    table = _table(records, str(zoo.cache_dir()))
    if not sys.stdout.isatty():
        from rich.measure import Measurement

        console.width = Measurement.get(console, console.options, table).maximum
    console.print(table)
    console.print("vitseg zoo NAME shows a release's URL and cache paths; --json gives everything.")


def _table(records: list[dict], cache: str):
    from rich import box
    from rich.table import Table

    table = Table(title=f"official checkpoints (cache: {cache})", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    for column in ("method", "backbone", "pretrain", "dataset"):
        table.add_column(column)
    for column in ("crop", "mIoU SS", "mIoU MS", "params", "size"):
        table.add_column(column, justify="right")
    table.add_column("cached", justify="center")
    for row in records:
        table.add_row(row["name"], row["method"], row["backbone"], row["pretrain"], row["dataset"],
                      str(row["crop_size"]), _score(row["miou_ss"]), _score(row["miou_ms"]), row["params"],
                      row["size"] or "-", "yes" if row["cached"] else "")
    return table


def _score(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _details(release) -> str:
    from .. import zoo

    from ..data.formats import FORMAT_LAYOUTS
    from ..releases import dataset_format, eval_commands
    from ..releases.ms_presets import MS_TESTS, ms_source

    lines = [f"{key}: {value}" for key, value in zoo.dataclasses.asdict(release).items()]
    fmt = dataset_format(release)
    single, multi = eval_commands(release)
    if release.name not in MS_TESTS:
        multi = "none (no official multi-scale test)"
    lines += [f"test data: --format {fmt}, DATA = {FORMAT_LAYOUTS.get(fmt, 'its root')}",
              f"single-scale mIoU ({_score(release.miou_ss)}): {single}",
              f"multi-scale mIoU ({_score(release.miou_ms)}): {multi}",
              f"multi-scale + flip test (--tta): {ms_source(release.name)}"]
    lines += [f"download from: {zoo.download_url(release)}",
              f"a file downloaded by hand goes to: {zoo.release_dir(release) / zoo.official_basename(release)}",
              *([f"its config from: {zoo.config_download_url(release)}, by hand to: {zoo.config_path(release)}"]
                if release.config_url else []),
              f"converted model: {zoo.converted_path(release)}"
              f"{' (cached)' if zoo.converted_path(release).is_file() else ' (not cached yet)'}"]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo_cmd)
