"""Options that pick a model, variant and knob setting (shared by count, delay, compare, sweep)."""

from __future__ import annotations

from collections.abc import Callable

import click

from hwsim.errors import HwsimError


#: Largest C, H or W of --input-size (a 3 x 4096 x 4096 input traces in a few GB of activations).
MAX_INPUT_SIDE = 4096


def parse_input_size(text: str | None, in_channels: int | None = None) -> tuple[int, ...] | None:
    """``C,L`` / ``C,H,W`` / ``C,D,H,W`` (C and one to three spatial sizes), or ``HxW`` or ``H`` (square;
    channels from the dataset) -> (C, *spatial)."""
    if text is None:
        return None
    usage = "must be C and one to three spatial sizes (C,L / C,H,W / C,D,H,W), HxW or H, with positive integers"
    if "," in text and "x" in text:
        raise HwsimError(f"--input-size {text!r} {usage}")
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise HwsimError(f"--input-size {text!r} {usage}") from None
    if "," not in text:  # H or HxW: square or 2-D spatial size, channels from the dataset
        if len(values) > 2:
            raise HwsimError(f"--input-size {text!r} {usage}")
        values = [in_channels or 3, *(values * 2 if len(values) == 1 else values)]
    if not 2 <= len(values) <= 4 or min(values) < 1:
        raise HwsimError(f"--input-size {text!r} {usage}")
    if max(values) > MAX_INPUT_SIDE:  # a trace allocates activations of this size: refuse before it runs
        raise HwsimError(f"--input-size {text!r}: C and each spatial size must be in [1, {MAX_INPUT_SIDE}]")
    return tuple(values)


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise HwsimError(f"{option} {text!r} must be comma-separated numbers") from None


def model_options(variant: bool = True) -> Callable[[Callable], Callable]:
    """--variant, --dataset, --input-size, --width, --widths, --density, --film-dim, --bn.

    Options that only some variants use default to None (not given), so that :func:`make_setting` can
    refuse one given to a variant that does not use it.
    """

    def decorate(func: Callable) -> Callable:
        options = [
            click.option("--bn", default=None, metavar="single|dual",
                         help="BN of conditional variants (every variant but base): single (default, the paper's "
                              "cost convention) or dual (BN_C / BN_A, as OAT and FLOAT train)."),
            click.option("--film-dim", type=int, default=None,
                         help="oat*: d of the FiLM lambda encoding: 1 (the paper's 2C + 4C^2; default) or 128 "
                              "(OAT training)."),
            click.option("--density", type=float, default=None,
                         help="floats-*: global weight density, in (0, 1] (default 1; compare: 0.5)."),
            click.option("--widths", default=None,
                         help="*-slim: switchable widths S_f (default 0.5,1.0)."),
            click.option("--width", type=float, default=None, help="*-slim: active width (default: widest)."),
            click.option("--input-size", default=None, metavar="C,H,W|C,L|C,D,H,W|H",
                         help="Input size; default: the dataset's (cifar10: 3,32,32). Without --dataset the "
                              "setting's dataset is 'custom' (10 classes)."),
            click.option("--dataset", default=None,
                         help="Dataset preset fixing input size and classes (default cifar10; imagenet: "
                              "3x224x224, 1000 classes; see `hwsim models`)."),
        ]
        if variant:
            options.append(click.option("--variant", default="base", show_default=True,
                                        help="Variant: base, float, oat, floats-i, floats-c, float-slim, oat-slim, "
                                             "floats-slim."))
        for option in options:
            func = option(func)
        return func

    return decorate


def make_setting(model: str, variant: str, dataset: str | None, input_size: str | None, width: float | None,
                 widths: str | None, density: float | None, film_dim: int | None, bn: str | None, *,
                 default_density: float = 1.0, variants: tuple[str, ...] | None = None):
    """Resolve CLI values into a :class:`hwsim.cost.ModelSetting` (validated when the model is built).

    ``variants``: every variant the setting will be costed as (compare); default ``(variant,)``. An option
    given explicitly that none of them uses is refused (SPEC 4.1), naming the variants it applies to.
    """
    from hwsim.cost import COST_BN, COST_FILM_DIM, ModelSetting
    from models import check_options, get_dataset

    given = {"density": ("--density", density), "width": ("--width", width), "widths": ("--widths", widths),
             "film_dim": ("--film-dim", film_dim), "bn": ("--bn", bn)}
    check_options(variants or (variant,), {k: flag for k, (flag, value) in given.items() if value is not None})
    for flag, value in (("--dataset", dataset), ("--widths", widths), ("--input-size", input_size)):
        if value is not None and not value.strip():  # an empty value is a mistake, not the default
            raise HwsimError(f"{flag} is empty; leave it out for the default")
    data = get_dataset(dataset or "cifar10")
    if density is not None and not 0.0 < density <= 1.0:
        raise HwsimError(f"--density {density!r} must lie in (0, 1]")
    width_set = parse_floats(widths or "0.5,1.0", "--widths")
    if width is not None and not any(abs(width - w) < 1e-9 for w in width_set):
        raise HwsimError(f"--width {width:g} is not one of the widths {', '.join(f'{w:g}' for w in width_set)}")
    size = parse_input_size(input_size, data.in_channels)
    if size is not None and len(size) != 3 and ":" not in model:
        # The zoo's models take images: a C,L or C,D,H,W input would be broadcast by their input normalisation
        # into a 4-D tensor of another shape and traced without an error, costing a network that does not exist.
        raise HwsimError(f"--input-size {input_size!r}: {model} takes images (C,H,W, HxW or H); C,L and C,D,H,W "
                         f"apply to user models with 1-D or 3-D convs")
    name = "custom" if size is not None and dataset is None else data.name
    return ModelSetting(model=model, variant=variant, dataset=name, input_size=size,
                        film_dim=COST_FILM_DIM if film_dim is None else film_dim, bn=bn or COST_BN, widths=width_set,
                        width=width, density=default_density if density is None else density)


def masks_option(func: Callable) -> Callable:
    """--masks: cost a pruned variant with the masks a training run ended with."""
    return click.option("--masks", "masks", default=None, metavar="RUN|CHECKPOINT",
                        help="floats-*: cost the masks of a trained run (its checkpoints/last.pt) or of a "
                             "checkpoint file, instead of the masks drawn at build time. A run directory also "
                             "gives the run's density, --bn, --film-dim and --widths (a differing explicit "
                             "option is refused).")(func)


def with_run_masks(setting, masks: str | None, variant: str, *, density: float | None = None, bn: str | None = None,
                   film_dim: int | None = None, widths: str | None = None):
    """``setting`` costed with the masks ``--masks`` names, as the network that run trained: where the masks
    come from a run directory (its ``config.json``), the run's ``bn``, ``film_dim`` (a variant with FiLM) and
    ``widths`` (a slim one) replace the defaults, so that ``hwsim count --masks RUN`` counts what ``hwsim report``
    costs for that run (e.g. the dual norms of a ``--bn dual`` run). An option given explicitly that differs
    from the run's is refused, naming both; a bare checkpoint file keeps the options as given."""
    import dataclasses

    if masks is None:
        return setting
    path, trained_density, run = _resolve_masks(masks, variant, density)
    changes: dict = {"masks": path, "density": trained_density or setting.density}
    if run is not None:
        from hwsim.variants import get_variant

        record = get_variant(variant)
        given = {"bn": ("--bn", bn, str(run.get("bn", setting.bn)))}
        if record.film:
            given["film_dim"] = ("--film-dim", film_dim, int(run.get("film_dim", setting.film_dim)))
        if record.slim and run.get("widths") is not None:
            given["widths"] = ("--widths", parse_floats(widths, "--widths") if widths is not None else None,
                               tuple(float(w) for w in run["widths"]))
        for key, (flag, value, trained) in given.items():
            if value is not None and value != trained:
                shown = ",".join(f"{w:g}" for w in trained) if isinstance(trained, tuple) else trained
                raise HwsimError(f"{flag} {value if not isinstance(value, tuple) else widths} conflicts with the "
                                 f"run that --masks {masks!r} names, which trained with {flag} {shown}; leave "
                                 f"{flag} out")
            changes[key] = trained
        if setting.width is not None and "widths" in changes and not any(
                abs(setting.width - w) < 1e-9 for w in changes["widths"]):
            raise HwsimError(f"--width {setting.width:g} is not one of the widths the run trained "
                             f"({', '.join(f'{w:g}' for w in changes['widths'])})")
    return dataclasses.replace(setting, **changes)


def resolve_masks(path: str | None, variant: str, density: float | None = None) -> tuple[str | None, float | None]:
    """The checkpoint file ``--masks`` names and the density its run trained at (see :func:`_resolve_masks`)."""
    if path is None:
        return None, None
    target, trained_density, _ = _resolve_masks(path, variant, density)
    return target, trained_density


def _resolve_masks(path: str, variant: str, density: float | None = None) -> tuple[str, float | None, dict | None]:
    """The checkpoint file ``--masks`` names (a run directory means its ``checkpoints/last.pt``) and the density
    its run trained at (from the run's ``config.json``; None when the file has no run around it), and that config
    (None without one). Refused: a
    variant without masks, ``--density`` (the masks are the run's), a run trained as another variant, and a
    path that is neither a run nor a checkpoint."""
    import json
    from pathlib import Path

    from hwsim.variants import VARIANT_RECORDS, get_variant

    masked = ", ".join(v.name for v in VARIANT_RECORDS.values() if v.masked)
    if not get_variant(variant).masked:
        raise HwsimError(f"--masks applies only to masked variants ({masked}), not {variant!r}")
    if density is not None:
        raise HwsimError("--density does not apply with --masks: the masks, and so the density, are the run's")
    target = Path(path)
    if target.is_dir():
        target = target / "checkpoints" / "last.pt"
    if not target.is_file():
        raise HwsimError(f"--masks {path!r}: no checkpoint there (give a run directory or a .pt file)")
    config = target.parent.parent / "config.json"
    if target.parent.name != "checkpoints" or not config.is_file():
        return str(target), None, None
    try:
        trained = json.loads(config.read_text(encoding="utf-8"))
        run_variant, run_density = trained["variant"], float(trained["density"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HwsimError(f"--masks {path!r}: cannot read the run's config {str(config)!r}: {exc}") from None
    if run_variant in VARIANT_RECORDS and not VARIANT_RECORDS[run_variant].masked:
        raise HwsimError(f"--masks {path!r} is a {run_variant!r} run, which has no masks; give a run of a masked "
                         f"variant ({masked})")
    if run_variant != variant:
        raise HwsimError(f"--masks {path!r} holds the masks of a {run_variant!r} run; cost it as --variant "
                         f"{run_variant}, not {variant}")
    return str(target), run_density, trained
