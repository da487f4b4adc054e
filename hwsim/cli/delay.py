"""``hwsim delay``: analytical ASIC delay (FLOAT paper Eq. 7-9) of a model or of layers given as shapes."""

from __future__ import annotations

import click

from hwsim.cli.common import hardware_options, output_options
from hwsim.cli.modelopts import make_setting, masks_option, model_options, with_run_masks
from hwsim.errors import HwsimError
from hwsim.output import emit

SHAPE_VARIANTS = ("base", "float", "oat")
_LAYER_KEYS = {"k": "k", "kh": "kh", "kw": "kw", "kd": "kd", "cin": "c_in", "cout": "c_out", "dout": "d_out",
               "hout": "h_out", "wout": "w_out", "groups": "groups", "nnz": "nnz"}
_CONV_ONLY = ("k", "kh", "kw", "kd", "dout", "groups")


def parse_layer(text: str, index: int, *, variant: str, film_dim: int):
    """``k=3,cin=64,cout=64,hout=32,wout=32[,groups=1][,kind=conv|linear][,name=NAME][,nnz=N]``.

    A conv needs its kernel (``k=`` for a square one, else ``kh=`` and ``kw=``; ``kd=`` and ``dout=`` for a
    3-D one), ``cin``, ``cout``, ``hout`` and ``wout``; a linear layer ``cin`` and ``cout`` (``hout``: the
    positions it runs at, default 1) and no kernel or groups. A key given twice, or missing, is refused."""
    from hwsim.delay import LayerShape

    values: dict[str, object] = {}
    given: set[str] = set()
    name, kind = f"layer{index}", "conv"
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not raw:
            raise HwsimError(f"malformed --layer {text!r}: {item!r} is not KEY=VALUE")
        if key in given:
            raise HwsimError(f"malformed --layer {text!r}: {key} given twice")
        given.add(key)
        if key == "name":
            name = raw
        elif key == "kind":
            if raw not in ("conv", "linear"):
                raise HwsimError(f"malformed --layer {text!r}: kind={raw!r}; valid kinds: conv, linear")
            kind = raw
        elif key in _LAYER_KEYS:
            try:
                values[_LAYER_KEYS[key]] = int(raw)
            except ValueError:
                raise HwsimError(f"malformed --layer {text!r}: {key}={raw!r} is not an integer") from None
        else:
            valid = ", ".join([*_LAYER_KEYS, "kind", "name"])
            raise HwsimError(f"malformed --layer {text!r}: unknown key {key!r}; valid keys: {valid}")
    if kind == "linear":
        wrong = [k for k in _CONV_ONLY if k in given]
        verb = "does" if len(wrong) == 1 else "do"
        if wrong:
            raise HwsimError(f"malformed --layer {text!r}: {', '.join(wrong)} {verb} not apply to kind=linear "
                             "(a linear layer has k = 1 and no groups)")
        values["k"] = 1
        required = ("cin", "cout")
    else:
        if "k" in given and ({"kh", "kw"} & given):
            raise HwsimError(f"malformed --layer {text!r}: give k= (a square kernel) or kh= and kw=, not both")
        kernel = ("k",) if "k" in given or not ({"kh", "kw"} & given) else ("kh", "kw")
        depth = ("kd", "dout") if {"kd", "dout"} & given else ()  # a 3-D conv: its depth kernel and positions
        required = (*kernel, *depth, "cin", "cout", "hout", "wout")
    missing = [k for k in required if k not in given]
    if missing:
        raise HwsimError(f"malformed --layer {text!r}: missing {', '.join(missing)}")
    from hwsim.variants import get_variant

    record = get_variant(variant)
    formula, film = "eq7", {}
    if kind == "conv" and record.noise:
        formula = "eq8"
    elif kind == "conv" and record.film:
        formula, film = "eq9", {"film_dim": film_dim, "film_channels": values["c_out"]}
    return LayerShape(name=name, kind=kind, formula=formula, **film, **values)


@click.command("delay")
@click.argument("model", required=False)
@click.option("--layer", "layers", multiple=True, metavar="SPEC",
              help="A layer as k=3,cin=64,cout=64,hout=32,wout=32[,groups=G][,name=N] (kh=1,kw=7 for a non-square "
                   "kernel) or kind=linear,cin=512,cout=10[,hout=POSITIONS] (repeatable); "
                   "used when no MODEL is given.")
@model_options()
@masks_option
@click.option("--energy", is_flag=True,
              help="Add energy (pJ, SPEC 3.1) per layer and in total, split into read_pj, mac_pj, noise_pj and "
                   "film_pj, and norm_energy; the hardware must have the energy fields (asic65 does).")
@hardware_options
@output_options
def delay_command(model: str | None, layers: tuple[str, ...], variant: str, dataset: str | None,
                  input_size: str | None, width: float | None, widths: str | None, density: float | None,
                  film_dim: int | None, bn: str | None, masks: str | None, energy: bool, hw_spec: str,
                  overrides: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Analytical ASIC delay (ns) per layer and in total, FLOAT paper Eq. 7 (plain), 8 (FLOAT), 9 (OAT).

    MODEL is a registered name (see `hwsim models`) or a user factory `path/to/file.py:factory`; the
    equation of each layer comes from the traced model (noise-conditioned weight: Eq. 8; conv owning a
    FiLM: Eq. 9; otherwise Eq. 7). Without MODEL, give layers as shapes with --layer.

    \b
    Examples:
      hwsim delay resnet34 --variant oat
      hwsim delay resnet34 --variant float --hw asic65 --set n_mult=256 --format json
      hwsim delay wrn40_2 --variant floats-c --density 0.3 --set sparse_storage=bitmap
      hwsim delay --layer k=3,cin=64,cout=64,hout=32,wout=32 --variant oat
      hwsim delay --layer k=3,cin=64,cout=64,hout=32,wout=32 --hw asic65 --set n_mult=256 --format json
      hwsim delay resnet18 --variant oat --energy
      hwsim delay resnet18 --variant oat --hw systolic32 --set dataflow=os --energy --format json
    """
    from hwsim.delay import model_delay, model_energy
    from hwsim.hardware import load_hardware
    from hwsim.output import delay_document, render_delay

    hw = load_hardware(hw_spec, overrides)
    if energy:  # refused before any tracing
        hw.require_energy()
    if film_dim is not None and film_dim < 0:
        raise HwsimError(f"--film-dim={film_dim} must be an integer >= 0")
    if model is None:
        from models import check_options

        if not layers:
            raise HwsimError("give a MODEL (see `hwsim models`) or at least one --layer SPEC")
        for flag, value in (("--masks", masks), ("--dataset", dataset), ("--input-size", input_size),
                            ("--bn", bn)):
            if value is not None:  # a layer shape carries its own output size and has no BN
                raise HwsimError(f"{flag} applies to a MODEL, not to --layer shapes")
        if variant not in SHAPE_VARIANTS:
            raise HwsimError(f"unknown variant {variant!r} for --layer shapes; valid: {', '.join(SHAPE_VARIANTS)}")
        given = {"film_dim": ("--film-dim", film_dim), "density": ("--density", density),
                 "width": ("--width", width), "widths": ("--widths", widths)}
        check_options(variant, {k: flag for k, (flag, value) in given.items() if value is not None})
        film_dim = 1 if film_dim is None else film_dim
        shapes = [parse_layer(text, i, variant=variant, film_dim=film_dim) for i, text in enumerate(layers)]
        report = model_delay(shapes, hw)
        document = delay_document(report, model=None, variant=variant, input_size=None,
                                  energy=model_energy(shapes, hw) if energy else None)
        emit(render_delay(document, fmt), output)
        return
    if layers:
        raise HwsimError("give either a MODEL or --layer shapes, not both")
    from hwsim.shapecache import analyze
    from hwsim.output import analysis_document, render_analysis

    setting = make_setting(model, variant, dataset, input_size, width, widths, density, film_dim, bn)
    setting = with_run_masks(setting, masks, variant, density=density, bn=bn, film_dim=film_dim, widths=widths)
    document = analysis_document(analyze(setting, hw), energy=energy)
    emit(render_analysis(document, fmt, command="delay"), output)
