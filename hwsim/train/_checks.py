"""Argument checks shared by the attacks, the evaluation and the sanity checks (no torch: importable anywhere)."""

from __future__ import annotations

from hwsim.errors import HwsimError
from hwsim.train.options import Option, declared  # noqa: F401  (re-exported: where they lived before)


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
