"""Scoring: clean and robust accuracy of a model under candidate adversarial images, over noise draws.

How a row is scored (:func:`score`):

- A setting is *randomised* when two forwards of the same images differ (FLOAT with lambda_n > 0). Its
  attack gradients average ``eot`` noise draws (:func:`hwsim.train.attacks.eot_gradient`) and CA / RA are
  the mean over ``n_draws`` scoring passes, each with its own fixed noise draw; ``ca_std`` / ``ra_std`` are
  the standard deviations over those passes (ddof 1). A deterministic setting has ``n_draws = 1``,
  ``eot = 0`` and zero spreads.
- An attack yields one or more candidate images per sample (restarts; the two APGD losses of AutoAttack).
  On scoring pass j a sample is robust when the model classifies it correctly at the clean image and at
  every candidate, all under pass j's noise draw: success is decided on the same draws that score it, and
  RA <= CA on every pass. Later candidates are only generated for samples still robust on some pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train._checks import check_count
from hwsim.train.attack_specs import EOT_DEFAULT, Generator

NOISE_DRAWS = 5  # scoring passes on randomised settings


@dataclass(frozen=True)
class Score:
    """CA and RA in percent (means over ``n_draws`` scoring passes) with their spreads (ddof 1)."""

    ca: float
    ca_std: float
    ra: float
    ra_std: float
    n_draws: int
    eot: int  # noise draws per attack gradient (1: no EOT); 0 exactly when the attacked model is deterministic
    n_images: int
    #: CA and RA of each scoring pass (percent), in draw order: scores computed with the same seed and clean pass
    #: are paired draw by draw (pass j of each under the same noise draw), so their differences can be compared
    ca_draws: tuple[float, ...] = ()
    ra_draws: tuple[float, ...] = ()


def _draw_seed(seed: int, draw: int, batch: int) -> int:
    return (seed * 1_000_003 + draw * 10_007 + batch * 101 + 17) % 2**63


@contextlib.contextmanager
def _fixed_draw(seed: int, device: torch.device) -> Iterator[None]:
    """Run a forward under a fixed RNG seed without disturbing the caller's random streams."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def is_randomised(model: nn.Module, x: torch.Tensor) -> bool:
    """True when forwards of ``x`` (in the model's current mode and knobs) under four seeds differ."""
    outputs = []
    with torch.no_grad():
        for seed in range(1, 5):
            with _fixed_draw(seed, x.device):
                outputs.append(model(x))
    return any(not torch.equal(outputs[0], out) for out in outputs[1:])


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, draw_seed: int) -> torch.Tensor:
    """Whether ``model`` classifies each image correctly under the noise draw of ``draw_seed`` (on the CPU)."""
    with torch.no_grad(), _fixed_draw(draw_seed, images.device):
        return (model(images).argmax(1) == labels).cpu()


@dataclass(frozen=True)
class CleanPass:
    """Which clean images a model classifies correctly: per batch a (draws, batch) bool tensor, one row per
    scoring pass under that pass's noise draw (:func:`clean_pass`).

    Every attack on one setting scores the same batches under the same per-draw seeds, so their clean
    predictions are the same: an evaluation computes them once and gives them to :func:`score` for each attack.
    """

    correct: tuple[torch.Tensor, ...]
    draws: int
    seed: int
    randomised: bool


def clean_pass(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
               n_draws: int = NOISE_DRAWS, seed: int = 0, randomised: bool | None = None) -> CleanPass:
    """The clean predictions :func:`score` makes of ``model`` over ``batches`` with the same ``n_draws``,
    ``seed`` and ``randomised`` (None: :func:`is_randomised` on the first batch), to give to it as ``clean``."""
    check_count("noise draws", n_draws)
    correct = []
    draws = 1
    for b, (x, y) in enumerate(batches):
        if b == 0:
            if randomised is None:
                randomised = is_randomised(model, x[:8])
            draws = n_draws if randomised else 1
        correct.append(torch.stack([_correct(model, x, y, _draw_seed(seed, j, b)) for j in range(draws)]))
    return CleanPass(tuple(correct), draws, seed, bool(randomised))


def score(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
          generators: Sequence[Generator], *, n_draws: int = NOISE_DRAWS, eot: int = EOT_DEFAULT,
          seed: int = 0, attacked: nn.Module | None = None, randomised: bool | None = None,
          attacked_randomised: bool | None = None, clean: CleanPass | None = None) -> Score:
    """CA and RA of ``model`` (mode and knobs as the caller set them) over ``batches`` of (images, labels).

    ``generators`` produce candidate adversarial images (none: RA = CA); ``attacked`` is the model they
    attack (default ``model``; another model for a transfer attack), which decides whether EOT is used.
    ``n_draws`` and ``eot`` apply only when the respective model is randomised (else 1 pass, no EOT).
    ``randomised`` / ``attacked_randomised`` say whether ``model`` / ``attacked`` are, when the caller has
    already decided it (None: :func:`is_randomised` on the first batch, once per model): an evaluation decides
    it once per setting rather than once per attack. ``clean``: the :func:`clean_pass` of ``model`` over the
    same batches with the same seed, used instead of computing the clean predictions again (its draws are the
    scoring passes and it knows whether ``model`` is randomised; ``n_draws`` is then not used). See the module
    docstring for the rule that decides a sample's success.
    """
    check_count("noise draws", n_draws)
    check_count("eot", eot)
    if clean is not None and clean.seed != seed:
        raise ValueError(f"the clean pass was drawn with seed {clean.seed}, not {seed}")
    attacked = model if attacked is None else attacked
    clean_counts = adv_counts = None
    total = batch_count = 0
    draws = attack_eot = 1
    for b, (x, y) in enumerate(batches):
        if b == 0:
            if randomised is None:
                randomised = clean.randomised if clean is not None else is_randomised(model, x[:8])
            if attacked_randomised is None:
                attacked_randomised = randomised if attacked is model else is_randomised(attacked, x[:8])
            draws = clean.draws if clean is not None else (n_draws if randomised else 1)
            attack_eot = eot if attacked_randomised else 1
            clean_counts = torch.zeros(draws, dtype=torch.long)
            adv_counts = torch.zeros(draws, dtype=torch.long)
        seeds = [_draw_seed(seed, j, b) for j in range(draws)]
        if clean is None:
            correct = torch.stack([_correct(model, x, y, seeds[j]) for j in range(draws)])  # (draws, batch)
        elif b < len(clean.correct) and clean.correct[b].shape[1] == len(y):
            correct = clean.correct[b]
        else:
            raise ValueError("the clean pass was computed over other batches")
        robust = correct.clone()
        for generate in generators:
            index = robust.any(0).nonzero().squeeze(1)
            if index.numel() == 0:
                break
            x_adv = generate(x[index.to(x.device)], y[index.to(y.device)], attack_eot).detach()
            for j in range(draws):
                robust[j, index] &= _correct(model, x_adv, y[index.to(y.device)], seeds[j])
        clean_counts += correct.sum(1)
        adv_counts += robust.sum(1)
        total += len(y)
        batch_count += 1
    if not total:
        raise HwsimError("no images to evaluate")
    if clean is not None and batch_count != len(clean.correct):
        raise ValueError("the clean pass was computed over other batches")
    ca = 100.0 * clean_counts.double() / total
    ra = 100.0 * adv_counts.double() / total

    def spread(values: torch.Tensor) -> float:
        return float(values.std()) if len(values) > 1 else 0.0

    return Score(float(ca.mean()), spread(ca), float(ra.mean()), spread(ra), draws,
                 attack_eot if attacked_randomised else 0, total, tuple(ca.tolist()), tuple(ra.tolist()))
