"""BulletTrain (Hua et al., Algorithm 2 of its paper): per-sample attack-step allocation, an extension of the
step protocol that composes with every PGD-based algorithm (pgd-at, float, oat, trades, mart).

From the clean logits z of the samples about to be attacked:

- signed prediction variance ``SVar = sign x Var(softmax(z))`` (Eq. 4: sign +1 when argmax z = y, else -1;
  the variance over the K class probabilities, population form);
- Eq. 6: outliers ``SVar < 0``; boundary ``0 <= SVar < Percentile(SVar, 1 - F_R)``; robust otherwise
  (the percentile over the batch, linear interpolation as numpy's default); at F_R = 0 (the start) no sample
  is robust (see :func:`classify`);
- steps: N_O (default 0) for outliers, N_B (default the algorithm's k, at its step size) for boundary samples,
  N_R (default 1, step size 1.7 eps / N_R) for robust samples. A sample with 0 steps keeps its clean image,
  and algorithms that have its clean logits reuse them (no forward or backward for it). Attacks run only on
  the rows still iterating (indexed subsets, not masked full batches);
- Eq. 5, after the step: ``F_R <- p F_R + (1 - p) gamma mean(1[argmax z' = y])`` over the batch's training
  logits z' (p = 0.9, gamma = 0.8, F_R starts at 0; one estimate per width of a slimmable model).

Per epoch it reports the fractions of samples classified outlier / boundary / robust (``bt_f_o``,
``bt_f_b``, ``bt_f_r``, summing to 1) and Eq. 7's theoretical speedup
``(N + 1) / (F_B N_B + F_R N_R + F_O N_O + 1)`` with N the algorithm's k.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hwsim.errors import HwsimError
from hwsim.train.options import BULLETTRAIN_OPTIONS, default
from hwsim.train.protocol import Hooks, StepContext

OUTLIER, BOUNDARY, ROBUST = 0, 1, 2
ROBUST_STEP = 1.7  # x eps / N_R: the step size of robust samples (BulletTrain Sec. 4)


def signed_prediction_variance(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 4 x Var: ``sign x Var(softmax(z))`` per sample, sign +1 when correctly classified."""
    probs = F.softmax(logits.float(), dim=1)
    sign = torch.where(logits.argmax(1) == y, 1.0, -1.0)
    return sign * probs.var(dim=1, unbiased=False)


def classify(logits: torch.Tensor, y: torch.Tensor, f_r: float) -> torch.Tensor:
    """Eq. 6: OUTLIER (0), BOUNDARY (1) or ROBUST (2) per sample, given the estimated robust fraction F_R.

    F_R is the estimated fraction of robust samples (it starts at zero, Algorithm 2; gamma scales it down "to
    make conservative predictions for robust examples"), so at F_R = 0 no sample is robust: every correctly
    classified sample is a boundary one and gets N_B steps. Read literally, Eq. 6 at F_R = 0 would compare with
    Percentile(SVar, 1), the batch maximum, and class that sample and every sample tied with it as robust
    (with identical logits, the whole batch at N_R steps), which is not a fraction of zero.
    """
    svar = signed_prediction_variance(logits, y)
    classes = torch.full_like(y, BOUNDARY)
    if f_r > 0:
        threshold = torch.quantile(svar, 1.0 - f_r)
        classes[svar >= threshold] = ROBUST
    classes[svar < 0] = OUTLIER
    return classes


def theoretical_speedup(f_o: float, f_b: float, f_r: float, n: int, n_o: int, n_b: int, n_r: int) -> float:
    """BulletTrain Eq. 7: ``(N + 1) / (F_B N_B + F_R N_R + F_O N_O + 1)``.

    >>> theoretical_speedup(0.2, 0.3, 0.5, 10, 0, 10, 1)
    2.4444444444444446
    """
    return (n + 1) / (f_b * n_b + f_r * n_r + f_o * n_o + 1)


class BulletTrain(Hooks):
    """The allocator the algorithms consult through ``ctx.allocator`` (see the module docstring).

    ``OPTIONS``: the config fields it uses (with ``bullettrain`` on); ``bt_steps`` None means (0, k, 1).
    """

    OPTIONS = BULLETTRAIN_OPTIONS  # declared in hwsim.train.options

    def __init__(self, k: int, n_o: int = 0, n_b: int | None = None, n_r: int = 1, p: float = default("bt_p"),
                 gamma: float = default("bt_gamma")) -> None:
        n_b = k if n_b is None else n_b
        if min(n_o, n_b, n_r) < 0:
            raise HwsimError(f"BulletTrain steps must be >= 0, got N_O={n_o}, N_B={n_b}, N_R={n_r}")
        if not 0 <= p < 1 or not 0 < gamma <= 1:
            raise HwsimError(f"BulletTrain needs p in [0, 1) and gamma in (0, 1], got p={p}, gamma={gamma}")
        self.k, self.n_o, self.n_b, self.n_r, self.p, self.gamma = k, n_o, n_b, n_r, p, gamma
        self.f_r: dict[str, float] = {}
        self.counts = [0, 0, 0]

    def setup(self, ctx: StepContext) -> None:
        ctx.allocator = self

    def allocate(self, clean_logits: torch.Tensor, y: torch.Tensor, width: float,
                 attack: Any) -> list[tuple[torch.Tensor, int, float]]:
        """``[(rows, steps, step_size)]`` for the outlier, boundary and robust rows of a batch."""
        classes = classify(clean_logits, y, self.f_r.get(f"{width:g}", 0.0))
        plan = []
        for cls, steps, step_size in ((OUTLIER, self.n_o, attack.step_size),
                                      (BOUNDARY, self.n_b, attack.step_size),
                                      (ROBUST, self.n_r, ROBUST_STEP * attack.eps / max(self.n_r, 1))):
            rows = (classes == cls).nonzero().squeeze(1)
            self.counts[cls] += len(rows)
            plan.append((rows, steps, step_size))
        return plan

    def observe(self, logits: torch.Tensor, y: torch.Tensor, width: float) -> None:
        key = f"{width:g}"
        accuracy = float((logits.argmax(1) == y).float().mean())
        self.f_r[key] = self.p * self.f_r.get(key, 0.0) + (1 - self.p) * self.gamma * accuracy

    def end_epoch(self, ctx: StepContext, epoch: int) -> dict[str, Any]:
        total = sum(self.counts)
        if total == 0:
            return {}
        f_o, f_b, f_r = (c / total for c in self.counts)
        self.counts = [0, 0, 0]
        return {"bt_f_o": f_o, "bt_f_b": f_b, "bt_f_r": f_r,
                "bt_theoretical_speedup": theoretical_speedup(f_o, f_b, f_r, self.k, self.n_o, self.n_b, self.n_r),
                "bt_f_r_estimate": dict(self.f_r)}

    def state_dict(self) -> dict[str, Any]:
        return {"f_r": dict(self.f_r)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.f_r = dict(state["f_r"])
