"""What each variant is, in one frozen record per name (SPEC 4, 4.1). Pure Python: no torch.

Every other module (the zoo in ``models``, module surgery, cost, training, reports, the CLI) looks the
record up once with :func:`get_variant` and reads its fields; no code derives what a variant does from its
name (``startswith("oat")``).

>>> v = get_variant("floats-slim")
>>> v.noise, v.masked, v.film, v.slim, v.granularity
(True, True, False, True, 'irregular')
>>> get_variant("oat").applies("film_dim"), get_variant("oat").applies("density")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hwsim.errors import HwsimError


class VariantNotApplicable(HwsimError):
    """A variant cannot be built from a model (no conv to condition, no BN for a FiLM, a layer module surgery
    cannot transform, channels slimming cannot keep consistent); the message names the layer."""


@dataclass(frozen=True)
class Variant:
    """One variant: the injections it makes into a base network.

    ``noise``: FLOAT noise-conditioned convs (alpha per conv, Eq. 8); ``masked``: FLOATS weight masks at a
    global density; ``film``: OAT FiLM modules after the body BNs (Eq. 9); ``slim``: switchable widths;
    ``granularity``: how masks are ranked (``"irregular"`` or ``"channel"``; None without masks).
    """

    name: str
    noise: bool = False
    masked: bool = False
    film: bool = False
    slim: bool = False
    granularity: str | None = None
    label: str = ""  # how the papers name it (report legends)

    @property
    def conditional(self) -> bool:
        """Whether the network has knobs (lambda, width): every variant but ``base``."""
        return self.noise or self.masked or self.film or self.slim

    def applies(self, option: str) -> bool:
        """Whether ``option`` (one of :data:`OPTIONS`) changes this variant's network."""
        try:
            return getattr(self, OPTIONS[option])
        except KeyError:
            raise HwsimError(f"unknown model option {option!r}; valid: {', '.join(OPTIONS)}") from None


#: Options that only some variants use -> the :class:`Variant` field that says whether it applies.
OPTIONS: dict[str, str] = {"density": "masked", "width": "slim", "widths": "slim", "film_dim": "film",
                           "bn": "conditional"}

_RECORDS: tuple[Variant, ...] = (
    Variant("base", label="PGD-AT"),
    Variant("float", noise=True, label="FLOAT"),
    Variant("oat", film=True, label="OAT"),
    Variant("floats-i", noise=True, masked=True, granularity="irregular", label="FLOATS-i"),
    Variant("floats-c", noise=True, masked=True, granularity="channel", label="FLOATS-c"),
    Variant("float-slim", noise=True, slim=True, label="FLOAT slim"),
    Variant("oat-slim", film=True, slim=True, label="OAT slim"),
    # FLOATS slim = slimmable FLOAT with FLOATS-i masks on top (paper Sec. 3.2)
    Variant("floats-slim", noise=True, masked=True, slim=True, granularity="irregular", label="FLOATS slim"),
)

VARIANT_RECORDS: Mapping[str, Variant] = {v.name: v for v in _RECORDS}

#: Every variant name, in the order the papers introduce them.
VARIANTS: tuple[str, ...] = tuple(VARIANT_RECORDS)


def get_variant(name: str | Variant) -> Variant:
    """The record of variant ``name``; an unknown name raises :class:`HwsimError` listing the valid ones."""
    if isinstance(name, Variant):
        return name
    try:
        return VARIANT_RECORDS[name]
    except (KeyError, TypeError):
        raise HwsimError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def users_of(option: str) -> tuple[str, ...]:
    """The variants that ``option`` applies to."""
    return tuple(v.name for v in _RECORDS if v.applies(option))


def check_options(variants: str | Variant | tuple[str | Variant, ...], given: Mapping[str, str]) -> None:
    """Refuse options that no variant in ``variants`` uses (SPEC 4.1: never silently ignored).

    ``given`` maps each option the caller set explicitly (a key of :data:`OPTIONS`) to the name it has for
    the caller (``"--density"`` on the command line). Raises :class:`HwsimError` naming the option and the
    variants it applies to.
    """
    records = [get_variant(v) for v in (variants if isinstance(variants, tuple) else (variants,))]
    for option, shown in given.items():
        if not any(v.applies(option) for v in records):
            chosen = ", ".join(v.name for v in records)
            raise HwsimError(f"{shown} applies only to variants {', '.join(users_of(option))}; "
                             f"not to {chosen}")
