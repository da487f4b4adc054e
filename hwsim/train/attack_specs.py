"""Attack specifications of ``hwsim eval``: attack names parsed into :class:`AttackSpec`, each of which yields the
candidate generators that :func:`hwsim.train.scoring.score` scores.

Attack names: ``pgdK`` (our PGD-K, CE loss, random start), ``cwK`` (our PGD-K on the CW loss), ``fgsm``,
``art-pgdK`` (adversarial-robustness-toolbox's ProjectedGradientDescent, for final tables) and ``autoattack``
(APGD-CE then APGD-DLR, 100 iterations each: ART's APGD on deterministic settings; on randomised ones
AutoAttack's 'rand' version, our APGD with EOT over 20 draws, :func:`hwsim.train.attacks.apgd`; extra
``hwsim[art]``). PGD attacks use the run's eps and step size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.train import attacks
from hwsim.train._checks import COUNT_LIMITS, check_count

EOT_DEFAULT = 10  # noise draws per attack gradient on randomised settings
EOT_AUTOATTACK = 20  # AutoAttack's 'rand' version
_ATTACKS_HELP = "pgdK, cwK, fgsm, art-pgdK (K >= 1 steps), autoattack"

#: One candidate generator: (clean images, labels, eot) -> adversarial images of the same shape.
Generator = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name: its kind and the eps / step / steps / restarts it runs and reports."""

    name: str
    kind: str  # pgd, cw, fgsm, art-pgd, autoattack
    eps: float
    step_size: float
    steps: int
    restarts: int = 1

    def default_eot(self) -> int:
        return EOT_AUTOATTACK if self.kind == "autoattack" else EOT_DEFAULT

    def generators(self, model: nn.Module, randomised: bool, seed: int = 0) -> list[Generator]:
        """The candidate generators against ``model``, in order (one per restart / per APGD loss)."""
        eps, step, steps = self.eps, self.step_size, self.steps
        if self.kind in ("pgd", "cw"):
            loss = "ce" if self.kind == "pgd" else "cw"
            one: Generator = lambda x, y, eot: attacks.pgd(model, x, y, eps=eps, step_size=step, steps=steps,
                                                           loss=loss, eot=eot)
            return [one] * self.restarts
        if self.kind == "fgsm":
            return [lambda x, y, eot: attacks.fgsm(model, x, y, eps=eps, eot=eot)]
        if self.kind == "art-pgd":
            return [lambda x, y, eot, r=r: art_pgd(model, x, y, eps=eps, step_size=step, steps=steps,
                                                   seed=seed + r) for r in range(self.restarts)]
        if randomised:  # AutoAttack 'rand': APGD-CE and APGD-DLR with EOT
            return [lambda x, y, eot, loss=loss: attacks.apgd(model, x, y, eps=eps, steps=100, loss=loss, eot=eot)
                    for loss in ("ce", "dlr")]
        return [lambda x, y, eot, loss=loss: art_apgd(model, x, y, eps=eps, loss=loss, seed=seed)
                for loss in ("cross_entropy", "difference_logits_ratio")]


def parse_attack(name: str, eps: float, step_size: float, restarts: int = 1) -> AttackSpec:
    """``pgd20`` / ``cw20`` / ``fgsm`` / ``art-pgd20`` / ``autoattack`` -> AttackSpec (HwsimError otherwise).

    ``restarts`` applies to pgdK, cwK and art-pgdK (per-sample worst case over R random starts).
    """
    check_count("restarts", restarts)
    match = re.fullmatch(r"(pgd|cw|art-pgd)(\d+)", name)
    if match and int(match.group(2)) >= 1:
        kind, steps = match.group(1), int(match.group(2))
        check_count(f"the steps K of {name}", steps, COUNT_LIMITS["steps"])
        if kind == "art-pgd":
            _require_art(name)
        return AttackSpec(name, kind, eps, step_size, steps, restarts)
    if name in ("fgsm", "autoattack") and restarts > 1:
        raise HwsimError(f"restarts apply to pgdK, cwK and art-pgdK; {name!r} takes none (got restarts={restarts})")
    if name == "fgsm":
        return AttackSpec(name, "fgsm", eps, eps, 1)
    if name == "autoattack":
        _require_art("autoattack")
        return AttackSpec(name, "autoattack", eps, math.nan, 100)
    raise HwsimError(f"unknown attack {name!r}; valid: {_ATTACKS_HELP}")


def _require_art(attack: str) -> None:
    try:
        import art  # noqa: F401
    except ImportError:
        raise HwsimError(f"attack {attack!r} needs adversarial-robustness-toolbox: pip install hwsim[art]") from None


def _art_classifier(model: nn.Module, x: torch.Tensor):  # noqa: ANN202 (ART type, imported lazily)
    from art.estimators.classification import PyTorchClassifier

    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=num_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if x.is_cuda else "cpu")


def art_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
            step_size: float = 2 / 255, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """L-inf PGD from adversarial-robustness-toolbox (one random start), for final-table numbers.

    ART runs on numpy; the model's mode and knobs are the caller's (ART's classifier evaluates in eval mode).
    """
    import numpy as np

    _require_art("art-pgd")
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(_art_classifier(model, x), norm=np.inf, eps=eps, eps_step=step_size,
                                      max_iter=steps, num_random_init=1, batch_size=len(x), verbose=False)
    np.random.seed(seed)  # ART draws its random start from numpy's global RNG
    x_adv = attack.generate(x=x.detach().cpu().numpy(), y=y.detach().cpu().numpy())
    return torch.from_numpy(x_adv).to(x.device)


def art_apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
             loss: str = "cross_entropy", seed: int = 0) -> torch.Tensor:
    """ART's L-inf APGD (100 iterations, step 2 eps, one start) with ``loss`` cross_entropy or
    difference_logits_ratio: AutoAttack's APGD-CE / APGD-DLR on a deterministic model."""
    import numpy as np

    _require_art("autoattack")
    from art.attacks.evasion import AutoProjectedGradientDescent

    attack = AutoProjectedGradientDescent(_art_classifier(model, x), norm=np.inf, eps=eps, eps_step=2 * eps,
                                          max_iter=100, nb_random_init=1, batch_size=len(x), loss_type=loss,
                                          verbose=False)
    np.random.seed(seed)  # ART draws random starts from numpy's global RNG
    x_adv = attack.generate(x=x.detach().cpu().numpy(), y=y.detach().cpu().numpy())
    return torch.from_numpy(x_adv).to(x.device)
