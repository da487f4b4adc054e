"""Argument checks shared by the attacks, the evaluation and the sanity checks (no torch: importable anywhere)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hwsim.errors import HwsimError


#: Upper bounds of the counts an evaluation takes (generous and finite: a typo of 10**20 would run forever).
COUNT_LIMITS = {"steps": 10_000, "restarts": 1_000, "eot": 1_000, "noise_draws": 1_000, "batch_size": 2**20,
                "n_images": 10**9}
#: Seeds torch.manual_seed takes.
SEED_RANGE = (0, 2**63 - 1)


def check_count(name: str, value: object, high: int | None = None) -> None:
    """Raise HwsimError unless ``value`` is an integer in [1, ``high``] (a count: steps, restarts, draws, images,
    batch size); ``high`` defaults to :data:`COUNT_LIMITS` of ``name`` (no bound for other names).

    ``bool`` is refused although it is an ``int``: ``eot=True`` is a mistake, not one draw.
    """
    high = COUNT_LIMITS.get(name.replace(" ", "_")) if high is None else high
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HwsimError(f"{name} must be an integer >= 1, got {value!r}")
    if high is not None and value > high:
        raise HwsimError(f"{name} must be an integer in [1, {high:,}], got {value!r}")


def check_seed(seed: object) -> None:
    """Raise HwsimError unless ``seed`` is an integer torch can seed with."""
    low, high = SEED_RANGE
    if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
        raise HwsimError(f"seed must be an integer in [{low}, 2**63 - 1], got {seed!r}")


@dataclass(frozen=True)
class Option:
    """One option an algorithm or an extension uses, declared on its class (``OPTIONS``): the TrainConfig field
    (``--flag`` on the command line, the key in a config file), the keyword its constructor takes, the default
    and the allowed range. The config's defaults, the refusal of options the chosen algorithm does not use, the
    range checks and the trainer's construction all read these declarations.

    ``low`` / ``high``: the allowed closed range (``low_open`` / ``high_open``: open at that end); None: no
    bound (a list or an optional value is checked by its owner).
    """

    field: str
    default: Any
    keyword: str | None = None  # the constructor's keyword (None: the field name)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def kwarg(self) -> str:
        return self.keyword or self.field

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range, naming the field and the range (None when it is allowed)."""
        if self.low is None or self.high is None or value is None or isinstance(value, (bool, tuple, list)):
            return None
        low_ok = self.low < value if self.low_open else self.low <= value
        high_ok = value < self.high if self.high_open else value <= self.high
        if isinstance(value, float) and not math.isfinite(value) or not (low_ok and high_ok):
            kind = "an integer" if isinstance(self.default, int) else "a number"
            bounds = (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
                      if not isinstance(self.default, int) else f"[{int(self.low)}, {int(self.high):,}]")
            return f"{self.field} must be {kind} in {bounds}, got {value}"
        return None


def declared(owners: Iterable[Any]) -> dict[str, Option]:
    """field -> :class:`Option` over the ``OPTIONS`` of ``owners`` (classes); one field declared twice must agree."""
    found: dict[str, Option] = {}
    for owner in owners:
        for option in getattr(owner, "OPTIONS", ()):
            if found.setdefault(option.field, option) != option:
                raise ValueError(f"option {option.field} declared twice with different settings")
    return found
