"""One source for the training options: what each algorithm and extension uses (no torch: importable anywhere).

Every algorithm (:data:`ALGORITHM_DECLARATIONS`) and extension (:data:`BULLETTRAIN_OPTIONS`,
:data:`SPARSE_OPTIONS`) names the TrainConfig fields it uses as :class:`Option` entries: the field, the
constructor keyword, the default, the type, the allowed range and the help. An algorithm also declares the
defaults of its training attack (:class:`AttackDefaults`; trades and mart take their papers' eps 0.031, step
0.007, PGD-10) and whether BulletTrain composes with it.

The algorithm classes (``Algorithm.OPTIONS``, ``BULLETTRAIN``, ``ATTACK``) reference these entries; TrainConfig's
defaults, the range checks, the refusal of an option the chosen algorithm does not use and the trainer's
construction read them from the classes; ``hwsim train``'s flags (their help, the defaults shown and the range
checked when the flag is parsed) are built from this module, so that ``hwsim train --help`` never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field as _field
from fractions import Fraction
from typing import Any

from hwsim.errors import HwsimError

#: The types an option can have: ``number`` (a float; "8/255" on the command line), ``integer``, ``switch``
#: (true / false; ``--x/--no-x``), ``numbers`` (a comma-separated list of numbers), ``integers`` (one of them).
TYPES = ("number", "integer", "switch", "numbers", "integers")


def parse_fraction(value: str | float | int, name: str) -> float:
    """``"8/255"``, ``"0.03"`` or a number -> float; anything else raises HwsimError naming ``name``."""
    if isinstance(value, bool):
        raise HwsimError(f"{name} must be a number or a fraction like 8/255, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise HwsimError(f"{name} must be a number or a fraction like 8/255, got {value!r}") from None
    except OverflowError:  # "1e400": beyond any float
        raise HwsimError(f"{name} {value!r} is beyond the range of a float") from None


def show(value: Any) -> str:
    """A default as the help shows it: ``8/255`` for a multiple of 1/255, ``6`` for 6.0, lists comma-separated,
    switches on / off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(show(v) for v in value)
    if isinstance(value, float) and len(f"{value:g}") > 6 and math.isclose(value * 255, round(value * 255),
                                                                           rel_tol=0, abs_tol=1e-9):
        return f"{round(value * 255)}/255"  # 8/255, not 0.0313725
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Option:
    """One option an algorithm or an extension uses: the TrainConfig field (``--flag`` on the command line, the
    key in a config file), the keyword its constructor takes, the default, the type (:data:`TYPES`; None: from
    the default), the allowed range, the help text and the flag when it is not the field's name.

    ``low`` / ``high``: the allowed closed range (``low_open`` / ``high_open``: open at that end); None: no
    bound (a list or an optional value is checked by its owner). ``default_text``: how the help states a
    default that is not a value (None: "noise off").
    """

    field: str
    default: Any
    keyword: str | None = None  # the constructor's keyword (None: the field name)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    type: str | None = None
    help: str = _field(default="", compare=False)
    flag: str | None = None  # the command line's --flag without the dashes (None: the field, dashed)
    default_text: str | None = _field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in TYPES:
            raise ValueError(f"option {self.field}: type {self.type!r} unknown; valid: {', '.join(TYPES)}")

    @property
    def kwarg(self) -> str:
        return self.keyword or self.field

    @property
    def kind(self) -> str:
        """The option's type (:data:`TYPES`), given or read from the default."""
        if self.type is not None:
            return self.type
        if isinstance(self.default, bool):
            return "switch"
        if isinstance(self.default, int):
            return "integer"
        if isinstance(self.default, tuple):
            return "numbers"
        return "number"

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.field).replace("_", "-")

    def range_text(self) -> str | None:
        """The allowed range as the messages and the help write it: ``[0, 1000]``, ``(0, 100]``, ``[1, 1,000]``."""
        if self.low is None or self.high is None:
            return None
        if self.kind == "integer":
            return f"[{int(self.low)}, {int(self.high):,}]"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range, naming the field and the range (None when it is allowed)."""
        if self.low is None or self.high is None or value is None or isinstance(value, (bool, tuple, list)):
            return None
        low_ok = self.low < value if self.low_open else self.low <= value
        high_ok = value < self.high if self.high_open else value <= self.high
        if isinstance(value, float) and not math.isfinite(value) or not (low_ok and high_ok):
            kind = "an integer" if self.kind == "integer" else "a number"
            return f"{self.field} must be {kind} in {self.range_text()}, got {value}"
        return None

    def shown_default(self) -> str:
        return self.default_text if self.default_text is not None else show(self.default)


@dataclass(frozen=True)
class AttackDefaults:
    """The training attack an algorithm takes when the user gives none: L-inf radius, step (``"oat"``: OAT's
    ``min(1.25 eps, eps + 4/255) / k``), PGD steps k and the model's mode while attacking."""

    eps: float = 8 / 255  # FLOAT supplement 1.1, OAT reference
    step_size: float | str = 2 / 255
    steps: int = 7  # FLOAT: PGD-7
    mode: str = "eval"  # OAT reference


@dataclass(frozen=True)
class Declaration:
    """What one algorithm declares: the options it uses, its attack defaults, whether BulletTrain composes."""

    options: tuple[Option, ...] = ()
    attack: AttackDefaults = AttackDefaults()
    bullettrain: bool = False


_PAPER_ATTACK = AttackDefaults(eps=0.031, step_size=0.007, steps=10)  # TRADES and MART: both papers' CIFAR-10
_BETA = Option("beta", 6.0, low=0.0, high=1000.0,  # both papers' CIFAR-10 setting; beyond 1000 the loss
               help="weight of the KL term")  # overflows from the start

#: The shipped algorithms, in the order the help lists them (each class in hwsim.train.algorithms reads its
#: entry). Algorithms registered later declare theirs on their class.
ALGORITHM_DECLARATIONS: dict[str, Declaration] = {
    "pgd-at": Declaration(options=(
        Option("pgd_lambda", 1.0, keyword="lambda_", low=0.0, high=1.0, flag="lambda",
               help="weight of the adversarial loss in FLOAT Eq. 3, 1 being Madry's PGD-AT"),
        Option("noise_lambda", None, low=0.0, high=1.0, type="number", default_text="noise off",
               help="on a float* variant, train with the weight noise on at this lambda_n as in FLOAT's Fig. 3")),
        bullettrain=True),
    "float": Declaration(attack=AttackDefaults(step_size="oat"), bullettrain=True),
    "oat": Declaration(options=(
        Option("oat_lambdas", (0.0, 0.1, 0.2, 0.3, 0.4, 1.0), keyword="lambdas",  # OAT reference --lambda_choices
               help="comma-separated S_lambda"),),
        attack=AttackDefaults(step_size="oat"), bullettrain=True),
    "fast": Declaration(options=(
        Option("fast_step", 1.25, keyword="step_factor", low=0.0, high=100.0, low_open=True,
               help="FGSM step as a multiple of eps"),  # Wong et al.: 1.25
        Option("early_stop", False,
               help="stop at catastrophic overfitting (PGD accuracy on a training batch -20 points)")),
        attack=AttackDefaults(mode="train")),  # fast_adversarial attacks in train mode
    "free": Declaration(options=(
        Option("replays", 8, low=1, high=1_000,  # Shafahi et al.: m = 8 on CIFAR-10
               help="minibatch replays m; --epochs E runs ceil(E/m) passes"),),
        attack=AttackDefaults(mode="train")),  # Free's one forward serves the attack and the step
    "trades": Declaration(options=(_BETA,), attack=_PAPER_ATTACK, bullettrain=True),
    "mart": Declaration(options=(_BETA,), attack=_PAPER_ATTACK, bullettrain=True),
}

#: BulletTrain's options (with ``bullettrain`` on); ``bt_steps`` None means (0, k, 1).
BULLETTRAIN_OPTIONS: tuple[Option, ...] = (
    Option("bt_steps", None, type="integers", default_text="0,k,1",
           help="BulletTrain steps N_O,N_B,N_R of outlier, boundary and robust samples"),
    Option("bt_p", 0.9, keyword="p", low=0.0, high=1.0, high_open=True,
           help="BulletTrain momentum p of the F_R estimate"),
    Option("bt_gamma", 0.8, keyword="gamma", low=0.0, high=1.0, low_open=True,
           help="BulletTrain scaling gamma of the F_R estimate"))

#: Sparse learning's options (masked variants).
SPARSE_OPTIONS: tuple[Option, ...] = (
    Option("prune_rate", 0.5, low=0.0, high=1.0,
           help="floats variants: initial prune rate p of sparse learning, cosine-decayed"),)


def declared(owners: Iterable[Any]) -> dict[str, Option]:
    """field -> :class:`Option` over the ``OPTIONS`` of ``owners`` (classes, or :class:`Declaration` s, or
    tuples of options); one field declared twice must agree."""
    found: dict[str, Option] = {}
    for owner in owners:
        options = owner if isinstance(owner, tuple) else getattr(owner, "OPTIONS", getattr(owner, "options", ()))
        for option in options:
            if found.setdefault(option.field, option) != option:
                raise ValueError(f"option {option.field} declared twice with different settings")
    return found


#: field -> :class:`Option` over the shipped algorithms and the extensions (what ``hwsim train`` offers).
DECLARED: dict[str, Option] = declared([*ALGORITHM_DECLARATIONS.values(), BULLETTRAIN_OPTIONS, SPARSE_OPTIONS])


def default(field: str) -> Any:
    """The declared default of ``field`` (for the constructors' keyword defaults: written once, here)."""
    return DECLARED[field].default


def users(field: str) -> tuple[str, ...]:
    """The shipped algorithms that declare ``field``, in declaration order."""
    return tuple(name for name, d in ALGORITHM_DECLARATIONS.items() if any(o.field == field for o in d.options))


def per_algorithm(attribute: str) -> str:
    """How an attack default (an :class:`AttackDefaults` attribute) depends on the algorithm, as the help says
    it: ``0.031 for trades and mart, 8/255 otherwise`` (the most common value is "otherwise")."""
    groups: dict[Any, list[str]] = {}
    for name, declaration in ALGORITHM_DECLARATIONS.items():
        groups.setdefault(getattr(declaration.attack, attribute), []).append(name)
    usual = getattr(AttackDefaults(), attribute)
    parts = [f"{show(value)} for {' and '.join(names)}" for value, names in groups.items() if value != usual]
    return ", ".join([*parts, f"{show(usual)} otherwise"]) if parts else show(usual)
