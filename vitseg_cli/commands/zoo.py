"""`vitseg zoo`: the released official checkpoints, by the name that `--weights` accepts (no torch import)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from ..errors import VitsegError, did_you_mean
from .common import friendly_errors, results_console


@friendly_errors
def zoo_cmd(
    name: Optional[str] = typer.Argument(None, metavar="NAME", help="Show one release in full: URL and cache paths."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as a JSON list of objects."),
) -> None:
    """List the official ViT-Adapter segmentation checkpoints. Give a NAME as --weights (predict, eval, visualize,
    info, convert, export) or --init-from (train): it is downloaded once into $VITSEG_HOME (~/.cache/vitseg) and
    converted. VITSEG_ZOO_MIRROR=URL fetches URL/<file name> instead of the official URL."""
    from .. import zoo

    records = zoo.as_records()
    if name is not None:
        records = [r for r in records if r["name"] == name]
        if not records:
            raise VitsegError(f"{name}: not a zoo name{did_you_mean(name, zoo.names())} (vitseg zoo lists them)")
    if as_json:
        print(json.dumps(records, indent=1))
        return
    if name is not None:
        results_console.print(_details(zoo.find_release(name)))
        return
    show_table(records, str(zoo.cache_dir()), results_console)
    results_console.print("vitseg zoo NAME shows a release's URL and cache paths; --json gives everything.")


def show_table(records: list[dict], cache: str, console: Console) -> None:
    """The releases as a table where it fits the terminal, else one name line and an indented line of details per
    release (the names are long: 56 characters). Piped: the whole table, each line as long as its content."""
    from rich.measure import Measurement

    table = _table(records)
    if not console.is_terminal:
        console.print(_unpadded(table))
    elif Measurement.get(console, console.options.update_width(1 << 16), table).maximum <= console.width:
        console.print(table)
    else:
        from rich.padding import Padding
        from rich.text import Text

        console.print("official checkpoints")
        for row in records:
            console.print(Text(row["name"], style="bold"), no_wrap=True, overflow="ignore", crop=False)
            console.print(Padding(Text(_summary(row)), (0, 0, 0, 4)))
    console.print(f"cache: {cache}")


def _summary(row: dict) -> str:
    return (f"{row['dataset']}, mIoU {_score(row['miou_ss'])} SS / {_score(row['miou_ms'])} MS, {row['method']}, "
            f"{row['backbone']} ({row['pretrain']}), crop {row['crop_size']}, {row['params']} parameters, download "
            f"{_size(row['size'])}{', cached' if row['cached'] else ''}")


def _unpadded(table) -> str:
    """The table as text at its natural width, without the spaces that pad each line to it."""
    import io

    from rich.measure import Measurement

    buffer = io.StringIO()
    plain = Console(file=buffer, color_system=None, highlight=False, markup=False, width=1 << 16)
    plain.width = Measurement.get(plain, plain.options, table).maximum
    plain.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def _table(records: list[dict]):
    from rich import box
    from rich.table import Table

    table = Table(title="official checkpoints", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    for column in ("method", "backbone", "pretrain", "dataset"):
        table.add_column(column)
    for column in ("crop", "mIoU SS", "mIoU MS", "params", "size"):
        table.add_column(column, justify="right")
    table.add_column("cached", justify="center")
    for row in records:
        table.add_row(row["name"], row["method"], row["backbone"], row["pretrain"], row["dataset"],
                      str(row["crop_size"]), _score(row["miou_ss"]), _score(row["miou_ms"]), row["params"],
                      _size(row["size"]), "yes" if row["cached"] else "")
    return table


def _size(value) -> str:
    """A download size from the release table; `?` where it does not know one."""
    return value or "?"


def _score(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _details(release) -> str:
    from .. import zoo

    from ..data.formats import FORMAT_LAYOUTS
    from ..releases import dataset_format, eval_commands
    from ..releases.ms_presets import MS_TESTS, ms_source

    lines = [f"{key}: {_size(value) if key == 'size' else value}"
             for key, value in zoo.dataclasses.asdict(release).items()]
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
