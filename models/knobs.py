"""Inference knobs (lambda_n, lambda_th, width) held in ONE state object per model.

``create_model`` builds a :class:`KnobState` and hands it to every conditional layer at construction;
:func:`set_knobs` validates and writes that single object. No module walking, no per-module flags.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from hwsim.errors import HwsimError

#: The OAT training lambdas (the default S_lambda); a model's d > 1 FiLM encoding indexes its orthogonal rows
#: by position in its own set (``KnobState.lambda_set``), which ``create_model(lambdas=...)`` chooses.
S_LAMBDA: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)

Lambda = float | torch.Tensor


@dataclass
class KnobState:
    """Mutable knob values shared by the conditional layers of one model.

    ``widths`` are the slimming factors S_f (``(1.0,)`` when not slimmable); ``film_dim`` is the FiLM
    encoding size (0 when the model has no FiLM); ``lambda_set`` is the model's S_lambda: with
    ``film_dim > 1`` lambda_n must be one of them (the encoding has one row per value, in this order).
    """

    widths: tuple[float, ...] = (1.0,)
    film_dim: int = 0
    lambda_set: tuple[float, ...] = S_LAMBDA
    lambda_n: Lambda = 0.0
    lambda_th: float = 0.0
    width: float = field(default=1.0)

    def __post_init__(self) -> None:
        self.width = max(self.widths)

    # -- derived values the layers read ------------------------------------------------------------
    def width_index(self) -> int:
        return self.widths.index(self.width)

    def active(self, channels: int) -> int:
        """Channels kept at the active width: the first ``round(width * channels)`` (at least 1)."""
        return max(1, int(round(self.width * channels)))

    def lambdas(self, batch: int, device: torch.device) -> torch.Tensor:
        """Per-sample lambda, shape (batch,), float32."""
        lam = self.lambda_n
        if isinstance(lam, torch.Tensor):
            if lam.numel() != batch:
                raise HwsimError(f"per-sample lambda_n has {lam.numel()} values but the batch has {batch}")
            return lam.to(device=device, dtype=torch.float32).reshape(batch)
        return torch.full((batch,), float(lam), device=device)

    def adversarial_mask(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """Per-sample routing to BN_A (``lambda > lambda_th``); None when the whole batch takes one BN.

        Returns a bool tensor only for a mixed batch; a uniform batch is reported through
        :meth:`uniform_adversarial` so the common path stays a plain BN call.
        """
        if not isinstance(self.lambda_n, torch.Tensor):
            return None
        mask = self.lambdas(batch, device) > self.lambda_th
        if bool(mask.all()) or not bool(mask.any()):
            return None
        return mask

    def uniform_adversarial(self) -> bool:
        lam = self.lambda_n
        value = float(lam.reshape(-1)[0]) if isinstance(lam, torch.Tensor) else float(lam)
        return value > self.lambda_th

    def noise_scale(self) -> float:
        """The factor s in ``theta + s * alpha * eta`` (FLOAT Eq. 4 with the Eq. 6 re-scaling).

        Eq. 6 (lambda_th = 0.5) maps each side of the threshold onto [0, 1]: ``2 lambda_n`` below,
        ``2 (lambda_n - 0.5)`` above. We generalise it to any threshold t in [0, 1) as
        ``lambda_n / t`` for ``lambda_n <= t`` and ``(lambda_n - t) / (1 - t)`` above; t = 0 gives
        ``lambda_n`` (the paper's OAT-like setting) and t = 0.5 gives Eq. 6 exactly.
        """
        lam = self.lambda_n
        if isinstance(lam, torch.Tensor):
            flat = lam.reshape(-1)
            if flat.numel() and not bool((flat == flat[0]).all()):
                raise HwsimError("noise-conditioned (float*) models take one lambda_n per batch, "
                                 "not per-sample values; split the batch by lambda")
            lam = float(flat[0]) if flat.numel() else 0.0
        t = self.lambda_th
        if lam <= t:
            return lam / t if t > 0 else 0.0
        return (lam - t) / (1.0 - t)


def knob_state(model: nn.Module) -> KnobState:
    """The knob state ``create_model`` attached to ``model``."""
    state = getattr(model, "hwsim_knobs", None)
    if not isinstance(state, KnobState):
        raise HwsimError(f"{type(model).__name__} was not built by models.create_model; it has no knobs")
    return state


def _validate_lambda(state: KnobState, lambda_n: Lambda) -> Lambda:
    if isinstance(lambda_n, torch.Tensor):
        if lambda_n.dim() != 1:
            raise HwsimError(f"lambda_n tensor must be 1-D (one value per sample), got shape {tuple(lambda_n.shape)}")
        values = lambda_n.detach().float().cpu()
        if values.numel() and (bool((values < 0).any()) or bool((values > 1).any())):
            raise HwsimError(f"lambda_n values must lie in [0, 1], got min {values.min():g} max {values.max():g}")
        lambda_n = lambda_n.detach()
        check = values.tolist()
    else:
        if isinstance(lambda_n, bool) or not isinstance(lambda_n, (int, float)) or not math.isfinite(lambda_n):
            raise HwsimError(f"lambda_n must be a number in [0, 1] or a 1-D tensor, got {lambda_n!r}")
        if not 0.0 <= lambda_n <= 1.0:
            raise HwsimError(f"lambda_n must lie in [0, 1], got {lambda_n!r}")
        lambda_n = float(lambda_n)
        check = [lambda_n]
    if state.film_dim > 1:
        bad = [v for v in check if not any(math.isclose(v, s, abs_tol=1e-6) for s in state.lambda_set)]
        if bad:
            raise HwsimError(f"lambda_n {bad[0]:g} is not in this model's S_lambda {state.lambda_set} (required by the "
                             f"film_dim={state.film_dim} orthogonal encoding; film_dim=1 takes any value)")
    return lambda_n


def set_knobs(model: nn.Module, *, lambda_n: Lambda | None = None, lambda_th: float | None = None,
              width: float | None = None) -> nn.Module:
    """Set inference knobs of a model built by ``create_model``; ``None`` leaves a knob unchanged.

    ``lambda_n``: float in [0, 1], or a 1-D tensor of per-sample lambdas (OAT training).
    ``lambda_th``: float in [0, 1]; BN_A is used iff ``lambda_n > lambda_th``.
    ``width``: one of ``model.hwsim_info["widths"]``. All values are validated before any is written.
    Returns ``model`` for chaining.
    """
    state = knob_state(model)
    new_lambda = state.lambda_n if lambda_n is None else _validate_lambda(state, lambda_n)
    new_th = state.lambda_th
    if lambda_th is not None:
        if isinstance(lambda_th, bool) or not isinstance(lambda_th, (int, float)) or not 0.0 <= lambda_th <= 1.0:
            raise HwsimError(f"lambda_th must lie in [0, 1], got {lambda_th!r}")
        new_th = float(lambda_th)
    new_width = state.width
    if width is not None:
        match = [w for w in state.widths if isinstance(width, (int, float)) and math.isclose(w, width)]
        if not match:
            raise HwsimError(f"width {width!r} is not one of this model's widths {state.widths}")
        new_width = match[0]
    state.lambda_n, state.lambda_th, state.width = new_lambda, new_th, new_width
    return model


@contextlib.contextmanager
def knobs(model: nn.Module, *, lambda_n: Lambda | None = None, lambda_th: float | None = None,
          width: float | None = None) -> Iterator[nn.Module]:
    """Context manager: :func:`set_knobs` on entry, the previous values restored on exit (even on error)."""
    state = knob_state(model)
    saved = (state.lambda_n, state.lambda_th, state.width)
    set_knobs(model, lambda_n=lambda_n, lambda_th=lambda_th, width=width)
    try:
        yield model
    finally:
        state.lambda_n, state.lambda_th, state.width = saved
