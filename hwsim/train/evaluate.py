"""Evaluation of a run's checkpoints: clean and robust accuracy per checkpoint x knob setting x attack.

The result is the contract's evaluation table (``RUN/eval.csv``), one row per checkpoint x knob setting x
attack with columns :data:`COLUMNS`; ca and ra in percent, eps and step_size as fractions of 1. The model is
attacked in eval mode.

This module runs the evaluation of a run (knob settings, loading, the table and its file); the attacks are
parsed in :mod:`hwsim.train.attack_specs` and scored in :mod:`hwsim.train.scoring` (their public names are
importable from here too). ``source`` names the run whose model generated the candidates (transfer attack,
FLOAT paper Table 2); empty for white-box rows.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.variants import get_variant
from hwsim.train import _models, checkpoint, data, scoring, trainer
from hwsim.train._checks import check_count, check_seed
from hwsim.train.attack_specs import (_ATTACKS_HELP, EOT_AUTOATTACK, EOT_DEFAULT, AttackSpec, Generator,  # noqa: F401
                                      art_apgd, art_pgd, parse_attack)
from hwsim.train.attacks import attack_context
from hwsim.train.config import TrainConfig
from hwsim.train.scoring import (NOISE_DRAWS, CleanPass, Score, clean_pass, is_randomised, score)  # noqa: F401
from hwsim.train.trainer import progress, read_run_config, seed_everything, _resolve_device

COLUMNS = ("run", "checkpoint", "model", "variant", "dataset", "film_dim", "bn", "algorithm", "density", "width",
           "lambda_n", "lambda_th", "attack", "eps", "step_size", "steps", "n_images", "ca", "ra",
           "restarts", "eot", "n_draws", "ca_std", "ra_std", "source")
CHECKPOINTS = ("last", "best")
#: What identifies a row of eval.csv: a later evaluation replaces the row with the same values of all of these.
#: eot, n_draws and n_images are part of it, so an evaluation with other EOT draws, scoring passes or images
#: adds its row next to the old one instead of replacing a stronger number (the report picks the strongest).
_KEY = ["checkpoint", "width", "lambda_n", "lambda_th", "attack", "restarts", "source", "eot", "n_draws", "n_images"]
#: Columns a row of eval.csv cannot lack a value in (a row cut short by a crash or a damaged disk lacks them).
_REQUIRED_VALUES = ("checkpoint", "width", "lambda_n", "lambda_th", "attack", "n_images", "ca", "ra")
#: Values of the columns added in issue 12 for rows of an older eval.csv (unknown: NaN / empty).
_NEW_COLUMN_DEFAULTS = {"restarts": 1, "eot": math.nan, "n_draws": math.nan, "ca_std": math.nan,
                        "ra_std": math.nan, "source": ""}
#: Knob values FLOAT runs are evaluated at by default (the FLOAT paper's figures).
FLOAT_LAMBDAS = (0.0, 0.2, 0.7, 1.0)
FLOAT_THRESHOLDS = (0.0, 0.5)
BATCH_SIZE = 256  # images per forward when scoring


# ------------------------------------------------------------------------------------------------ knobs

def knob_settings(config_variant: str, config_lambdas: Sequence[float], film_dim: int, pgd_lambda: float,
                  lambda_n: Sequence[float] | None, lambda_th: Sequence[float] | None,
                  widths: Sequence[float] | None, model_widths: Sequence[float]) -> list[dict[str, float]]:
    """The knob settings to evaluate for a variant (keys lambda_n, lambda_th, width).

    None means the run's own values: base: one setting, lambda_n reported as the pgd-at training lambda (the
    model has no knobs); float*: lambda_n in (0, 0.2, 0.7, 1) x lambda_th in (0, 0.5); oat*: lambda_n in its
    S_lambda (``config_lambdas``), lambda_th reported as 0; *-slim: the largest width. A knob the variant
    does not have (lambda_n / lambda_th on base, lambda_th on oat, width on a non-slim variant) is refused;
    with film_dim > 1 every lambda_n must be one of the run's S_lambda.
    """
    record = get_variant(config_variant)
    has_lambda, has_threshold, slim = record.conditional, record.noise, record.slim
    for knob, given, has in (("lambda_n", lambda_n, has_lambda), ("lambda_th", lambda_th, has_threshold),
                             ("width", widths, slim)):
        if given is not None and not has:
            owners = {"lambda_n": "float*, oat*", "lambda_th": "float*", "width": "*-slim"}[knob]
            raise HwsimError(f"a {config_variant!r} run has no knob {knob} (given {list(given)}); only "
                             f"{owners} variants have it")
    if not record.conditional:
        return [{"lambda_n": pgd_lambda, "lambda_th": 0.0, "width": 1.0}]
    if lambda_n is None:
        lambda_n = FLOAT_LAMBDAS if has_threshold else tuple(config_lambdas)
    if lambda_th is None:
        lambda_th = FLOAT_THRESHOLDS if has_threshold else (0.0,)
    if not lambda_n or not lambda_th or (widths is not None and not widths):
        raise HwsimError("empty knob list: give at least one lambda_n / lambda_th / width value")
    for value in list(lambda_n) + list(lambda_th):
        if not 0 <= value <= 1:
            raise HwsimError(f"lambda values must lie in [0, 1], got {value}")
    if record.film and film_dim > 1:
        bad = [v for v in lambda_n if not any(math.isclose(v, s, abs_tol=1e-6) for s in config_lambdas)]
        if bad:
            raise HwsimError(f"lambda_n {bad[0]:g} is not in the run's training set S_lambda "
                             f"{tuple(config_lambdas)} (required with film_dim={film_dim})")
    width_list = list(widths) if widths else [max(model_widths)] if slim else [1.0]
    if slim:
        bad_w = [w for w in width_list if not any(math.isclose(w, m) for m in model_widths)]
        if bad_w:
            raise HwsimError(f"width {bad_w[0]} is not one of this model's widths {tuple(model_widths)}")
    return [{"lambda_n": float(n), "lambda_th": float(t), "width": float(w)}
            for w, t, n in itertools.product(width_list, lambda_th, lambda_n)]


def clean_setting(config: TrainConfig) -> dict[str, float]:
    """The run's plain (most accurate) knob setting: the smallest lambda_n of its set, the largest width."""
    setting = robust_setting(config)
    record = get_variant(config.variant)
    if record.conditional:
        setting["lambda_n"] = float(min(config.oat_lambdas)) if record.film else 0.0
    return setting


def robust_setting(config: TrainConfig) -> dict[str, float]:
    """The run's most robust knob setting: the largest lambda_n of its set (FLOAT: 1 at lambda_th 0) and
    the largest width; base: its only setting."""
    record = get_variant(config.variant)
    if not record.conditional:
        return {"lambda_n": config.pgd_lambda, "lambda_th": 0.0, "width": 1.0}
    lam = max(config.oat_lambdas) if record.film else 1.0
    return {"lambda_n": float(lam), "lambda_th": 0.0, "width": float(max(config.widths)) if record.slim else 1.0}


def knob_context(model: nn.Module, variant: str, setting: dict[str, float]) -> contextlib.AbstractContextManager:
    """``models.knobs`` for the knobs ``variant`` has (a null context for base)."""
    record = get_variant(variant)
    if not record.conditional:
        return contextlib.nullcontext()
    args = {"lambda_n": setting["lambda_n"]}
    if record.noise:
        args["lambda_th"] = setting["lambda_th"]
    if record.slim:
        args["width"] = setting["width"]
    return _models.knobs(model, **args)


# ------------------------------------------------------------------------------------------------ runs

@dataclass
class LoadedRun:
    """A run's config and its model (checkpoint loaded, eval mode, on ``device``)."""

    path: Path
    config: TrainConfig
    model: nn.Module


def load_run(run_dir: str | Path, checkpoint_name: str, device: torch.device) -> LoadedRun:
    """Build a run's model with :func:`hwsim.train.trainer.build_model` and load ``checkpoint_name``."""
    if checkpoint_name not in CHECKPOINTS:
        raise HwsimError(f"unknown checkpoint {checkpoint_name!r}; valid: {', '.join(CHECKPOINTS)}")
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = trainer.build_model(config)
    state = getattr(model, "hwsim_knobs", None)
    built = tuple(getattr(state, "lambda_set", ()))
    if get_variant(config.variant).film and config.film_dim > 1 and built and not (
            len(built) == len(config.oat_lambdas)
            and all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(built, config.oat_lambdas))):
        raise HwsimError(f"run {run_dir} trained with S_lambda {tuple(config.oat_lambdas)} but build_model "
                         f"built the FiLM encoding for {built}; the trainer must pass lambdas=config.oat_lambdas")
    ckpt = checkpoint.load(run_dir / "checkpoints" / f"{checkpoint_name}.pt")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise HwsimError(f"checkpoint {checkpoint_name} of {run_dir} does not fit its config: "
                         f"{str(exc).splitlines()[0]}") from None
    return LoadedRun(run_dir, config, model.to(device).eval())


def load_test_set(config: TrainConfig, n_images: int | None, data_dir: str | Path | None) -> data.ImageDataset:
    """The run's test split, its first ``n_images`` images when given."""
    test = data.load_split(config.dataset, "test", data_dir if data_dir is not None else config.data_dir,
                           synthetic_size=config.synthetic_size)
    if n_images is not None:
        check_count("n_images", n_images)
        test = test.subset(torch.arange(min(n_images, len(test))))
    return test


def batches(test: data.ImageDataset, batch_size: int, device: torch.device,
            desc: str = "eval") -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(float images in [0, 1], labels) on ``device``, in order."""
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False)
    for images, labels in progress(loader, True, desc=desc):
        yield data.to_float(images.to(device)), labels.to(device)


def evaluate_run(run_dir: str | Path, attack_names: Sequence[str] = ("pgd20",),
                 lambda_n: Sequence[float] | None = None, lambda_th: Sequence[float] | None = None,
                 widths: Sequence[float] | None = None, checkpoints: Sequence[str] = ("last",),
                 n_images: int | None = None, batch_size: int = BATCH_SIZE, device: str = "auto",
                 data_dir: str | Path | None = None, seed: int = 0, write: bool = True, *,
                 restarts: int = 1, eot: int | None = None, noise_draws: int | None = None,
                 transfer_from: str | Path | None = None) -> pd.DataFrame:
    """Evaluate a run directory and return the evaluation table (also merged into ``RUN/eval.csv``).

    Knob lists left None take the run's own values (:func:`knob_settings`). ``n_images``: the first N test
    images (all when None). ``restarts``: random starts of pgdK / cwK / art-pgdK (per-sample worst case).
    ``eot``: noise draws per attack gradient on randomised settings (None: 10, autoattack 20).
    ``noise_draws``: scoring passes on randomised settings (None: 5). Given for a run none of whose settings
    can be randomised (no weight noise, or only lambda_n = 0), ``noise_draws`` is refused, and so is ``eot``
    unless the transfer source can be randomised. A checkpoint or attack named twice, and a transfer source
    that is the run itself, are refused. ``transfer_from``: a run directory whose model
    (same checkpoint name, at its most robust setting, :func:`robust_setting`) generates the attacks.
    Rows already in eval.csv with the same (checkpoint, width, lambda_n, lambda_th, attack, restarts,
    source, eot, n_draws, n_images) are replaced; others are kept. The file is replaced atomically, after
    every row is computed; an eval.csv that is not a readable table is refused before any work
    (:func:`read_eval_table`), and rows of it cut short are dropped, saying so.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    bad = [c for c in checkpoints if c not in CHECKPOINTS]
    if bad or not checkpoints:
        raise HwsimError(f"unknown checkpoint {bad[0] if bad else ''!r}; valid: {', '.join(CHECKPOINTS)}")
    _refuse_twice("checkpoint", checkpoints)
    _refuse_twice("attack", attack_names)
    given_draws = noise_draws is not None
    noise_draws = NOISE_DRAWS if noise_draws is None else noise_draws
    for name, value in (("batch_size", batch_size), ("noise_draws", noise_draws), ("restarts", restarts)):
        check_count(name, value)
    if eot is not None:  # None: each attack's own default
        check_count("eot", eot)
    check_seed(seed)
    specs = [parse_attack(name, config.eps, config.step_size, restarts) for name in attack_names]
    if not specs:
        raise HwsimError(f"no attacks given; valid: {_ATTACKS_HELP}")
    settings = knob_settings(config.variant, config.oat_lambdas, config.film_dim, config.pgd_lambda, lambda_n,
                             lambda_th, widths, config.widths)
    source_config = None
    if transfer_from is not None:
        source_config = check_transfer_source(config, transfer_from, run_dir)  # a bad source fails before any work
    refuse_unused_noise_options(config, [s["lambda_n"] for s in settings], eot, given_draws, source_config)
    old = read_eval_table(run_dir / "eval.csv") if write else None  # a damaged file fails before any work too
    test = load_test_set(config, n_images, data_dir)
    dev = _resolve_device(device, 0)
    probe = data.to_float(test.images[:8].to(dev))  # the images that decide whether a model is randomised
    sources: dict[str, _Source] = {}  # by checkpoint name: loaded once, whichever of ours transfer from it
    rows = []
    for name in checkpoints:
        run = load_run(run_dir, name, dev)
        source = None
        if transfer_from is not None:
            available = [c for c in (name, "last") if (Path(transfer_from) / "checkpoints" / f"{c}.pt").is_file()]
            source_name = available[0] if available else name
            if source_name not in sources:
                sources[source_name] = _transfer_source(transfer_from, source_name, probe, dev)
            source = sources[source_name]
        info = run.model.hwsim_info  # the network as built: film_dim 0 without FiLM, one BN for base
        for setting in settings:
            scores = _score_setting(run, setting, specs, source, test, batch_size, dev, eot, noise_draws, seed, probe)
            for spec, result in zip(specs, scores):
                rows.append({"run": str(run_dir), "checkpoint": name, "model": config.model,
                             "variant": config.variant, "dataset": config.dataset, "film_dim": info["film_dim"],
                             "bn": info["bn"], "algorithm": config.algorithm, "density": config.density,
                             "width": setting["width"], "lambda_n": setting["lambda_n"],
                             "lambda_th": setting["lambda_th"], "attack": spec.name, "eps": spec.eps,
                             "step_size": spec.step_size, "steps": spec.steps, "n_images": result.n_images,
                             "ca": result.ca, "ra": result.ra, "restarts": spec.restarts, "eot": result.eot,
                             "n_draws": result.n_draws, "ca_std": result.ca_std, "ra_std": result.ra_std,
                             "source": source.run.path.name if source is not None else ""})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if write:
        merged = table if old is None else pd.concat([old, table]).drop_duplicates(subset=_KEY, keep="last")
        write_csv_atomic(merged, run_dir / "eval.csv")
    return table


def read_eval_table(path: Path, warn: Callable[[str], None] | None = None) -> pd.DataFrame | None:
    """The rows of an existing ``eval.csv`` to merge new rows into (None when there is no file).

    A file that is not a CSV table with the contract's columns (random bytes, another file put there) is
    refused with one line naming it: nothing is written over it. A row that lacks a value in
    :data:`_REQUIRED_VALUES` or holds a non-number where a number belongs (a row cut short) is dropped, and
    ``warn`` (default: a line on stderr) says which row; the rewritten file no longer holds it.
    """
    if not path.is_file():
        return None
    try:
        old = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise HwsimError(f"{path} is not a readable evaluation table ({' '.join(str(exc).split())[:120]}); move it "
                         f"aside (or delete it) and evaluate again: nothing was changed") from None
    missing = [c for c in COLUMNS[:19] if c not in old.columns]  # the contract's columns, before issue 12's
    if missing:
        raise HwsimError(f"{path} is not an evaluation table: it lacks column(s) {', '.join(missing)}; move it "
                         f"aside (or delete it) and evaluate again: nothing was changed")
    for column, default in _NEW_COLUMN_DEFAULTS.items():
        if column not in old.columns:
            old[column] = default
    old["source"] = ["" if pd.isna(v) else str(v) for v in old["source"]]
    numeric = ("film_dim", "density", "width", "lambda_n", "lambda_th", "eps", "step_size", "steps", "n_images", "ca",
               "ra", "restarts", "eot", "n_draws", "ca_std", "ra_std")
    bad = old[list(_REQUIRED_VALUES)].isna().any(axis=1)
    for column in numeric:
        values = pd.to_numeric(old[column], errors="coerce")
        bad |= values.isna() & old[column].notna()
        old[column] = values
    if bad.any():
        rows = [int(i) + 1 for i in bad.to_numpy().nonzero()[0]]
        say = warn if warn is not None else (lambda text: print(text, file=sys.stderr))
        say(f"{path}: dropped {len(rows)} incomplete or damaged row(s) ({', '.join(map(str, rows[:5]))}"
            f"{', ...' if len(rows) > 5 else ''}; rows count from 1 after the header)")
        old = old[~bad].reset_index(drop=True)
    return old


def _refuse_twice(what: str, names: Sequence[str]) -> None:
    twice = [name for i, name in enumerate(names) if name in names[:i]]
    if twice:
        raise HwsimError(f"{what} {twice[0]!r} is given twice; give each {what} once")


def can_be_randomised(config: TrainConfig, lambdas: Sequence[float]) -> bool:
    """Whether the run's model can draw noise at any of ``lambdas`` (float* variants at lambda_n > 0)."""
    return bool(get_variant(config.variant).noise) and any(value > 0 for value in lambdas)


def refuse_unused_noise_options(config: TrainConfig, lambdas: Sequence[float], eot: int | None, noise_draws: bool,
                                source: TrainConfig | None = None) -> None:
    """HwsimError when ``eot`` (not None) or ``noise_draws`` (given) cannot apply: no evaluated setting of the
    run (at ``lambdas``) is randomised, nor (for ``eot``) the transfer source at its most robust setting."""
    own = can_be_randomised(config, lambdas)
    theirs = source is not None and can_be_randomised(source, [robust_setting(source)["lambda_n"]])
    where = (f"lambda_n {', '.join(f'{v:g}' for v in lambdas)} of a {config.variant!r} run"
             if get_variant(config.variant).noise else f"a {config.variant!r} run")
    if noise_draws and not own:
        raise HwsimError(f"--noise-draws applies to randomised settings (float* variants at lambda_n > 0); {where} "
                         f"is deterministic: drop --noise-draws")
    if eot is not None and not own and not theirs:
        raise HwsimError(f"--eot applies to randomised settings (float* variants at lambda_n > 0); {where} is "
                         f"deterministic{' and so is the transfer source' if source is not None else ''}: drop --eot")


def check_transfer_source(config: TrainConfig, transfer_from: str | Path, run_dir: str | Path | None = None
                          ) -> TrainConfig:
    """The config of a transfer attack's source run, refused (naming both) when it is the attacked run itself
    (``run_dir``) or its inputs differ from the attacked run's: its adversarial images would not be images of
    this run's test set."""
    if run_dir is not None and Path(transfer_from).resolve() == Path(run_dir).resolve():
        raise HwsimError(f"--transfer-from {str(transfer_from)!r} is the evaluated run itself; a transfer attack "
                         f"comes from another run's model (the white-box attack is the run's own)")
    source = read_run_config(transfer_from)
    ours, theirs = (data.get_source(c.dataset).model_dataset for c in (config, source))
    if ours != theirs:
        raise HwsimError(f"transfer source {str(transfer_from)!r} was trained on {source.dataset} ({theirs} "
                         f"inputs), this run on {config.dataset} ({ours} inputs): attacks do not transfer between them")
    return source


def write_csv_atomic(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` to ``path`` as CSV with :func:`hwsim.train.checkpoint.write_atomic`."""
    checkpoint.write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


@dataclass(frozen=True)
class _Source:
    """The source of a transfer attack: its run, its model at its most robust setting (what the attacks are
    generated on) and whether that model is randomised."""

    run: LoadedRun
    model: SettingView
    randomised: bool


def _transfer_source(run_dir: str | Path, checkpoint_name: str, probe: torch.Tensor,
                     device: torch.device) -> _Source:
    """Load a transfer source and decide once whether it is randomised (its setting never changes)."""
    run = load_run(run_dir, checkpoint_name, device)
    view = SettingView(run)
    with attack_context(run.model, "eval"):
        return _Source(run, view, is_randomised(view, probe))


def _score_setting(run: LoadedRun, setting: dict[str, float], specs: Sequence[AttackSpec], source: _Source | None,
                   test: data.ImageDataset, batch_size: int, device: torch.device, eot: int | None,
                   noise_draws: int, seed: int, probe: torch.Tensor) -> list[Score]:
    """The score of each attack of ``specs`` on ``run`` at ``setting``, each from the same seeds.

    What does not depend on the attack is computed once here for all of them: whether the setting is randomised
    (on ``probe``) and the clean predictions, so CA is the same number in every attack's row.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(attack_context(run.model, "eval"))
        stack.enter_context(knob_context(run.model, run.config.variant, setting))
        if source is not None:
            stack.enter_context(attack_context(source.run.model, "eval"))
        randomised = is_randomised(run.model, probe)
        attacked, attacked_randomised = ((source.model, source.randomised) if source is not None
                                         else (run.model, randomised))
        art = [spec.name for spec in specs if spec.kind == "art-pgd"]
        if attacked_randomised and art:  # ART's PGD cannot average noise draws: no EOT
            target = (f"the transfer source {str(source.run.path)!r}, randomised at its most robust setting"
                      if source is not None else f"the randomised setting lambda_n={setting['lambda_n']:g} of this run")
            raise HwsimError(f"{art[0]} has no EOT, so it cannot attack {target}; use pgdK (with --eot) or autoattack")
        clean = clean_pass(run.model, batches(test, batch_size, device, desc="eval clean"), n_draws=noise_draws,
                           seed=seed, randomised=randomised)
        scores = []
        for spec in specs:
            seed_everything(seed)
            scores.append(score(run.model, batches(test, batch_size, device, desc=f"eval {spec.name}"),
                                spec.generators(attacked, attacked_randomised, seed=seed), n_draws=noise_draws,
                                eot=eot if eot is not None else spec.default_eot(), seed=seed, attacked=attacked,
                                randomised=randomised, attacked_randomised=attacked_randomised, clean=clean))
        return scores


class SettingView(nn.Module):
    """A run's model that always runs at one knob setting (default its most robust one,
    :func:`robust_setting`), e.g. the source model of a transfer attack."""

    def __init__(self, run: LoadedRun, setting: dict[str, float] | None = None) -> None:
        super().__init__()
        self.run = run
        self.setting = setting if setting is not None else robust_setting(run.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with knob_context(self.run.model, self.run.config.variant, self.setting):
            return self.run.model(x)
