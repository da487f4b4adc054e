"""``hwsim export``: a model at a variant and knob setting, as files the hardware tools run (SPEC 3.3)."""

from __future__ import annotations

import click

from hwsim.cli.modelopts import make_setting, masks_option, model_options, with_run_masks
from hwsim.errors import HwsimError


@click.command("export")
@click.argument("model")
@model_options()
@masks_option
@click.option("--format", "fmt", required=True, metavar="scalesim|onnx|zigzag",
              help="scalesim: SCALE-Sim v3 topology, config and layout; onnx: the network as an ONNX graph; "
                   "zigzag: ZigZag workload, hardware and mapping.")
@click.option("--out", required=True, metavar="DIR",
              help="A new (or empty, or hwsim-written) directory; written all at once, nothing on failure.")
@click.option("--hw", "hw_spec", default=None, metavar="PRESET|FILE.toml",
              help="scalesim, zigzag: the hardware the files describe (default asic65: a 25 x 7 array, ws, for "
                   "its 175 multipliers; a systolic preset gives its own array and dataflow).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="scalesim, zigzag: override a hardware field.")
@click.option("--no-cache", is_flag=True, help="Trace the model afresh instead of reading its layer shapes.")
def export_command(model: str, variant: str, dataset: str | None, input_size: str | None, width: float | None,
                   widths: str | None, density: float | None, film_dim: int | None, bn: str | None,
                   masks: str | None, fmt: str, out: str, hw_spec: str | None, overrides: tuple[str, ...],
                   no_cache: bool) -> None:
    """Write MODEL (a zoo name or `path/to/file.py:factory`) as VARIANT for SCALE-Sim, as ONNX or for ZigZag.

    \b
    Examples:
      hwsim export resnet18 --variant oat --format scalesim --out r18-oat
      (cd r18-oat && python -m scalesim.scale -c resnet18_oat.cfg -t resnet18_oat.csv -l layout.csv -p out)
      hwsim export resnet18 --variant float --format scalesim --hw asic65 --set n_mult=256 --out r18-float
      hwsim export wrn16_8 --variant oat-slim --width 0.5 --format onnx --out wrn-onnx
      hwsim export resnet18 --variant oat --format zigzag --out r18-zz && (cd r18-zz && python run_zigzag.py)
    """

    from hwsim.export import FORMATS, export

    if fmt not in FORMATS:
        raise HwsimError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "onnx" and (hw_spec is not None or overrides):
        raise HwsimError("--hw and --set do not apply to --format onnx (a graph has no hardware)")
    if fmt == "onnx" and no_cache:
        raise HwsimError("--no-cache does not apply to --format onnx (it always builds the model)")
    hw = None
    if fmt in ("scalesim", "zigzag"):
        from hwsim.hardware import load_hardware

        hw = load_hardware(hw_spec or "asic65", overrides)
    if film_dim is not None and film_dim < 1:
        raise HwsimError(f"--film-dim={film_dim} must be an integer >= 1 to export (a FiLM needs an input)")
    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    setting = with_run_masks(setting, masks, variant, density=density, bn=bn, film_dim=film_dim, widths=widths)
    if no_cache:
        from hwsim import shapecache

        token = shapecache.set_enabled(False)
        try:
            written = export(setting, fmt, out, hw)
        finally:
            shapecache._enabled.reset(token)
    else:
        written = export(setting, fmt, out, hw)
    for path in written:
        click.echo(str(path))
