"""Argument checks shared by the attacks, the evaluation and the sanity checks (no torch: importable anywhere)."""

from __future__ import annotations

from hwsim.errors import HwsimError


def check_count(name: str, value: object) -> None:
    """Raise HwsimError unless ``value`` is an integer >= 1 (a count: steps, restarts, draws, images, batch size).

    ``bool`` is refused although it is an ``int``: ``eot=True`` is a mistake, not one draw.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HwsimError(f"{name} must be an integer >= 1, got {value!r}")
