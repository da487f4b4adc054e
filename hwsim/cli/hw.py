"""``hwsim hw``: list and show hardware presets."""

from __future__ import annotations

import click

from hwsim.cli.common import output_options
from hwsim.hardware import FIELD_DOCS, get_preset, list_presets, load_hardware
from hwsim.output import emit, render_rows, to_json


@click.group("hw")
def hw_group() -> None:
    """Hardware presets: the ASIC constants the delay model runs on."""


@hw_group.command("list")
@output_options
def hw_list(fmt: str, output: str | None) -> None:
    """List the built-in presets with their constants.

    Example: hwsim hw list --format markdown
    """
    rows = []
    for name in list_presets():
        hw = get_preset(name)
        rows.append({"name": name, **{k: v for k, v in hw.as_dict().items() if k not in ("name", "description")},
                     "description": hw.description})
    if fmt == "table":  # descriptions are long: print them under the table, not in a column
        table = render_rows([{k: v for k, v in row.items() if k != "description"} for row in rows], fmt)
        notes = "\n".join(f"{row['name']}: {row['description']}" for row in rows)
        emit(f"{table}\n\n{notes}", output)
        return
    emit(to_json(rows) if fmt == "json" else render_rows(rows, fmt), output)


@hw_group.command("show")
@click.argument("spec", default="asic65", metavar="PRESET|FILE.toml")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one field (repeatable).")
@output_options
def hw_show(spec: str, overrides: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Show one preset or TOML file, every field with its unit and allowed range.

    Example: hwsim hw show asic65 --set n_mult=256
    """
    hw = load_hardware(spec, overrides)
    if fmt == "json":
        emit(to_json(hw.as_dict()), output)
        return
    rows = [
        {"field": key, "value": value, "unit": FIELD_DOCS[key][0], "allowed": FIELD_DOCS[key][1]}
        for key, value in hw.as_dict().items()
        if key in FIELD_DOCS
    ]
    text = render_rows(rows, fmt)
    if fmt == "table":
        text = f"{hw.name}: {hw.description}\n\n{text}" if hw.description else f"{hw.name}\n\n{text}"
    emit(text, output)
