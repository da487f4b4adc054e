"""Gradient-masking checks (Athalye et al. 2018, Sec. 3.1; Carlini et al. 2019, Sec. 5) on one setting.

Each check compares robust accuracies that a model without masked or obfuscated gradients orders in a known
way; a check fails when the measured order is violated by more than the tolerance

    tol(a, b) = max(1 point, one image (100 / N points), 2 std_j(RA_a,j - RA_b,j))

where j runs over the scoring passes. Every attack here is scored on the same images under the same noise
draws (one clean pass, the same per-draw seeds), so pass j of attack a and pass j of attack b are paired: the
spread that matters is that of their difference, not the sum of the two draw-to-draw spreads (which on a noisy
model is many points and would let almost any order pass). Deterministic settings have one pass and no spread.
Every number comes from :func:`hwsim.train.evaluate.score`, so randomised settings are attacked with EOT and
scored over draws.

Checks (``check`` column of ``sanity.csv``), with K the PGD steps and eps the run's radius:

- ``more_steps``: RA under PGD-5K is not above RA under PGD-K. PGD-K is the PGD-5K run's iterate after K
  steps (the same start and draws), so the two cost one 5K-step attack.
- ``restarts``: RA under PGD-K with R random restarts is not above RA with one start. The R starts are other
  than PGD-K's own (sharing it would make the check true by construction).
- ``eps_sweep``: RA does not rise as eps grows over 0, eps/2, eps, 2 eps, 4 eps, 8 eps (capped at 1), and
  at the largest eps it is at most max(1 point, one image) ("reaches 0"). eps 0 is the clean accuracy and
  eps the PGD-K run, both reused.
- ``unbounded``: PGD-K with eps = 1 (the whole image range; step 2.5 / K, so K steps can cross it 2.5 times)
  reaches RA at most max(1 point, one image).
- ``transfer``: PGD-K transferred from a plain model (another run, or this model at lambda_n = 0) leaves RA
  at least the white-box RA (the lower of PGD-K and PGD-5K).
- ``eot``: on randomised settings, RA under PGD-K with EOT is not below RA without EOT (one draw per
  gradient) by more than the tolerance ("skip" on deterministic settings).
- ``fgsm``: RA under FGSM is not below the white-box PGD RA (the lower of PGD-K and PGD-5K): a single step
  is not stronger than the iterative attack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train import attacks
from hwsim.train._checks import check_count, check_seed
from hwsim.train.attacks import attack_context
from hwsim.train.evaluate import (BATCH_SIZE, EOT_DEFAULT, NOISE_DRAWS, CHECKPOINTS, Generator, Score, SettingView,
                                  batches, clean_pass, clean_setting, knob_context, load_run, load_test_set,
                                  robust_setting, score, write_csv_atomic, check_transfer_source,
                                  refuse_unused_noise_options)
from hwsim.train.trainer import _resolve_device, read_run_config

SANITY_COLUMNS = ("check", "values", "verdict", "rule")
PASS, FAIL, SKIP = "pass", "FAIL", "skip"
EPS_FACTORS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
STEPS = 20  # K, the PGD steps of the checks (more_steps compares K with 5K)
RESTARTS = 5  # R, the random starts of the restarts check

Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class SanitySettings:
    """What the checks run: eps / step in fractions of 1, K PGD steps, R restarts, EOT and scoring draws."""

    eps: float
    step_size: float
    steps: int = STEPS
    restarts: int = RESTARTS
    eot: int = EOT_DEFAULT
    n_draws: int = NOISE_DRAWS
    seed: int = 0


def _fmt(name: str, s: Score) -> str:
    spread = f"±{s.ra_std:.2f}" if s.n_draws > 1 else ""
    return f"{name} {s.ra:.2f}{spread}"


def _paired_spread(a: Score, b: Score) -> float:
    """The standard deviation (ddof 1) over scoring passes of RA_a - RA_b, pass by pass (0 with one pass)."""
    if len(a.ra_draws) != len(b.ra_draws):
        raise ValueError("the two scores were not computed over the same draws")
    if len(a.ra_draws) < 2:
        return 0.0
    return float(torch.tensor(a.ra_draws, dtype=torch.float64).sub(torch.tensor(b.ra_draws, dtype=torch.float64))
                 .std())


def _tol(n_images: int, a: Score, b: Score) -> float:
    return max(1.0, 100.0 / n_images, 2.0 * _paired_spread(a, b))


def _zero_tol(n_images: int) -> float:
    return max(1.0, 100.0 / n_images)


def sanity_checks(model: nn.Module, batches: Batches, settings: SanitySettings,
                  surrogate: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
                  surrogate_name: str = "plain model", surrogate_model: nn.Module | None = None) -> pd.DataFrame:
    """Run every check on ``model`` (mode and knobs as the caller set them) and return the sanity table.

    ``batches()`` yields (images in [0, 1], labels) afresh at each call. ``surrogate(x, y, eot)``, if given,
    generates the transfer attack (PGD-K on a plain model, ``surrogate_model``); without it ``transfer`` is
    skipped. Columns: :data:`SANITY_COLUMNS`.
    """
    st = settings
    k = st.steps
    # every check scores the same model on the same images and draws: one clean pass (and randomness probe)
    clean = clean_pass(model, batches(), n_draws=st.n_draws, seed=st.seed)

    def run(generators: list[Generator], eot: int = st.eot, attacked: nn.Module | None = None,
            starts_seed: int = 0) -> Score:
        torch.manual_seed(st.seed + starts_seed)  # the attacks' random starts
        return score(model, batches(), generators, n_draws=st.n_draws, eot=eot, seed=st.seed, attacked=attacked,
                     clean=clean)

    def pgd(eps: float, step: float, steps: int) -> Generator:
        return lambda x, y, eot: attacks.pgd(model, x, y, eps=eps, step_size=step, steps=steps, eot=eot)

    # PGD-5K records its iterate after K steps (PGD-K from the same start and draws) for every batch it attacks;
    # PGD-K's run then takes them in the same order (the same batches and samples: both are the first attack
    # of their run, on the clean-correct samples), so the K steps are not run twice.
    prefixes: list[tuple[torch.Tensor, torch.Tensor]] = []

    def longer(x: torch.Tensor, y: torch.Tensor, eot: int) -> torch.Tensor:
        snapshots = {k: x}
        x_adv = attacks.pgd(model, x, y, eps=st.eps, step_size=st.step_size, steps=5 * k, eot=eot, snapshots=snapshots)
        prefixes.append((x, snapshots[k]))
        return x_adv

    def shorter(x: torch.Tensor, y: torch.Tensor, eot: int) -> torch.Tensor:
        start, x_k = prefixes.pop(0)
        if start.shape != x.shape or not torch.equal(start, x):
            raise RuntimeError("PGD-K was asked for other images than PGD-5K attacked")
        return x_k

    rows = []

    def add(check: str, values: str, ok: bool | None, rule: str) -> None:
        rows.append({"check": check, "values": values, "verdict": SKIP if ok is None else PASS if ok else FAIL,
                     "rule": rule})

    more = run([longer])
    base = run([shorter])
    n = base.n_images
    add("more_steps", f"{_fmt(f'pgd{k}', base)}; {_fmt(f'pgd{5 * k}', more)}",
        more.ra <= base.ra + _tol(n, base, more), f"RA(pgd{5 * k}) <= RA(pgd{k}) + tol")

    # the strongest white-box PGD run here is what transfer and FGSM must not beat
    best, best_name = (more, f"pgd{5 * k}") if more.ra < base.ra else (base, f"pgd{k}")

    # other random starts than base's, so that the worst case over them is not below base by construction
    restarted = run([pgd(st.eps, st.step_size, k)] * st.restarts, starts_seed=1)
    add("restarts", f"{_fmt(f'pgd{k}', base)}; {_fmt(f'pgd{k} x{st.restarts}', restarted)}",
        restarted.ra <= base.ra + _tol(n, base, restarted), f"RA({st.restarts} restarts) <= RA(1 start) + tol")

    factors = sorted({min(1.0, f * st.eps) for f in EPS_FACTORS})
    # eps = 0 is base's clean accuracy (no attack: RA = CA) and the run's own eps is base itself: reused
    sweep = [replace(base, ra=base.ca, ra_std=base.ca_std, ra_draws=base.ca_draws) if e == 0 else base if e == st.eps
             else run([pgd(e, st.step_size * e / st.eps, k)]) for e in factors]
    monotone = all(b.ra <= a.ra + _tol(n, a, b) for a, b in zip(sweep, sweep[1:]))
    reaches_zero = sweep[-1].ra <= _zero_tol(n)
    add("eps_sweep", "; ".join(_fmt(f"eps={e:.4g}", s) for e, s in zip(factors, sweep)), monotone and reaches_zero,
        f"RA non-increasing in eps (within tol) and RA(eps={factors[-1]:.4g}) <= {_zero_tol(n):.3g}")

    unbounded = run([pgd(1.0, 2.5 / k, k)])
    add("unbounded", _fmt(f"pgd{k} eps=1", unbounded), unbounded.ra <= _zero_tol(n),
        f"RA(eps=1) <= {_zero_tol(n):.3g}")

    if surrogate is not None:
        transfer = run([surrogate], attacked=surrogate_model)
        add("transfer", f"{_fmt(f'{best_name} white-box', best)}; {_fmt(f'pgd{k} from {surrogate_name}', transfer)}",
            transfer.ra >= best.ra - _tol(n, best, transfer), "RA(transfer) >= RA(white-box PGD) - tol")
    else:
        add("transfer", "no plain model to transfer from (give --transfer-from RUN)", None,
            "RA(transfer) >= RA(white-box PGD) - tol")

    if base.n_draws > 1:
        single = run([pgd(st.eps, st.step_size, k)], eot=1)
        add("eot", f"{_fmt(f'pgd{k} eot=1', single)}; {_fmt(f'pgd{k} eot={base.eot}', base)}",
            base.ra >= single.ra - _tol(n, base, single), "RA(EOT) >= RA(one draw per gradient) - tol")
    else:
        add("eot", "deterministic setting: no noise draws", None, "RA(EOT) >= RA(one draw per gradient) - tol")

    fgsm = run([lambda x, y, eot: attacks.fgsm(model, x, y, eps=st.eps, eot=eot)])
    add("fgsm", f"{_fmt('fgsm', fgsm)}; {_fmt(best_name, best)}", fgsm.ra >= best.ra - _tol(n, best, fgsm),
        "RA(fgsm) >= RA(white-box PGD) - tol")
    return pd.DataFrame(rows, columns=list(SANITY_COLUMNS))


def sanity_run(run_dir: str | Path, checkpoint_name: str = "last", *, steps: int = STEPS, restarts: int = RESTARTS,
               eot: int | None = None, noise_draws: int | None = None, transfer_from: str | Path | None = None,
               n_images: int | None = None, batch_size: int = BATCH_SIZE, device: str = "auto",
               data_dir: str | Path | None = None, seed: int = 0, write: bool = True) -> pd.DataFrame:
    """The checks of :func:`sanity_checks` on a run at its most robust setting; writes ``RUN/sanity.csv``.

    The transfer source is ``transfer_from`` (a run, at its plain setting: its smallest lambda_n) or, when
    None, this run's own model at its plain setting (lambda_n = 0 / the smallest of S_lambda); a base run
    without ``transfer_from`` skips the transfer check. Eps and step size are the run's. ``eot`` (default 10)
    and ``noise_draws`` (default 5) are as in :func:`hwsim.train.evaluate.evaluate_run`, and refused when given
    for a run whose most robust setting is deterministic; a ``transfer_from`` that is the run itself is refused.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if checkpoint_name not in CHECKPOINTS:
        raise HwsimError(f"unknown checkpoint {checkpoint_name!r}; valid: {', '.join(CHECKPOINTS)}")
    refuse_unused_noise_options(config, [robust_setting(config)["lambda_n"]], eot, noise_draws is not None)
    eot = EOT_DEFAULT if eot is None else eot
    noise_draws = NOISE_DRAWS if noise_draws is None else noise_draws
    for name, value in (("steps", steps), ("restarts", restarts), ("eot", eot), ("noise_draws", noise_draws),
                        ("batch_size", batch_size)):
        check_count(name, value)
    check_seed(seed)
    if transfer_from is not None:
        check_transfer_source(config, transfer_from, run_dir)
    test = load_test_set(config, n_images, data_dir)
    dev = _resolve_device(device, 0)
    run = load_run(run_dir, checkpoint_name, dev)
    if transfer_from is not None:
        source = load_run(transfer_from, "last", dev)
        plain: nn.Module | None = SettingView(source, clean_setting(source.config))
        plain_name = f"run {source.path.name}"
    elif config.variant != "base":
        plain, plain_name = SettingView(run, clean_setting(config)), "this model at its plain setting"
    else:
        plain, plain_name = None, ""
    st = SanitySettings(eps=config.eps, step_size=config.step_size, steps=steps, restarts=restarts, eot=eot,
                        n_draws=noise_draws, seed=seed)
    surrogate = None
    if plain is not None:
        surrogate = lambda x, y, e: attacks.pgd(plain, x, y, eps=st.eps, step_size=st.step_size, steps=st.steps,
                                                eot=e)
    with attack_context(run.model, "eval"), knob_context(run.model, config.variant, robust_setting(config)):
        table = sanity_checks(run.model, lambda: batches(test, batch_size, dev, desc="sanity"), st,
                              surrogate=surrogate, surrogate_name=plain_name, surrogate_model=plain)
    setting = robust_setting(config)
    table.insert(0, "checkpoint", checkpoint_name)
    table.insert(1, "lambda_n", setting["lambda_n"])
    table.insert(2, "width", setting["width"])
    table["n_images"] = len(test)
    if write:
        write_csv_atomic(table, run_dir / "sanity.csv")
    return table
