"""Evaluation of a run's checkpoints: clean and robust accuracy per checkpoint x knob setting x attack.

The result is the contract's evaluation table (``RUN/eval.csv``), one row per checkpoint x knob setting x
attack with columns :data:`COLUMNS`; ca and ra in percent, eps and step_size as fractions of 1.

Attack names: ``pgdK`` (our PGD-K, CE loss, random start), ``cwK`` (our PGD-K on the CW loss), ``fgsm``,
``art-pgdK`` (adversarial-robustness-toolbox's ProjectedGradientDescent, for final tables) and ``autoattack``
(APGD-CE then APGD-DLR, 100 iterations each: ART's APGD on deterministic settings; on randomised ones
AutoAttack's 'rand' version, our APGD with EOT over 20 draws; extra ``hwsim[art]``). PGD attacks use the
run's eps and step size. The model is attacked in eval mode.

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
- ``source`` names the run whose model generated the candidates (transfer attack, FLOAT paper Table 2);
  empty for white-box rows.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.variants import get_variant
from hwsim.train import _models, attacks, checkpoint, data, trainer
from hwsim.train._checks import COUNT_LIMITS, check_count, check_seed
from hwsim.train.attacks import attack_context
from hwsim.train.config import TrainConfig
from hwsim.train.trainer import progress, read_run_config, seed_everything, _resolve_device

COLUMNS = ("run", "checkpoint", "model", "variant", "dataset", "film_dim", "bn", "algorithm", "density", "width",
           "lambda_n", "lambda_th", "attack", "eps", "step_size", "steps", "n_images", "ca", "ra",
           "restarts", "eot", "n_draws", "ca_std", "ra_std", "source")
CHECKPOINTS = ("last", "best")
_KEY = ["checkpoint", "width", "lambda_n", "lambda_th", "attack", "restarts", "source"]
#: Values of the columns added in issue 12 for rows of an older eval.csv (unknown: NaN / empty).
_NEW_COLUMN_DEFAULTS = {"restarts": 1, "eot": math.nan, "n_draws": math.nan, "ca_std": math.nan,
                        "ra_std": math.nan, "source": ""}
#: Knob values FLOAT runs are evaluated at by default (the FLOAT paper's figures).
FLOAT_LAMBDAS = (0.0, 0.2, 0.7, 1.0)
FLOAT_THRESHOLDS = (0.0, 0.5)
EOT_DEFAULT = 10  # noise draws per attack gradient on randomised settings
EOT_AUTOATTACK = 20  # AutoAttack's 'rand' version
NOISE_DRAWS = 5  # scoring passes on randomised settings
BATCH_SIZE = 256  # images per forward when scoring
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


# ------------------------------------------------------------------------------------------------ scoring

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
                 attack_eot if attacked_randomised else 0, total)


# ------------------------------------------------------------------------------------------------ knobs

def knob_settings(config_variant: str, config_lambdas: Sequence[float], film_dim: int, pgd_lambda: float,
                  lambda_n: Sequence[float] | None, lambda_th: Sequence[float] | None,
                  widths: Sequence[float] | None, model_widths: Sequence[float]) -> list[dict[str, float]]:
    """The knob settings to evaluate for a variant (keys lambda_n, lambda_th, width).

    None means the run's own values: base: one setting, lambda_n reported as the pgd-at training lambda (the
    model has no knobs); float*: lambda_n in (0, 0.2, 0.7, 1) x lambda_th in (0, 0.5); oat*: lambda_n in its
    S_lambda (``config_lambdas``), lambda_th reported as 0; *-slim: the largest width. A knob the variant
    does not have (lambda_n / lambda_th on base, lambda_th on oat, width on a non-slim variant) is refused;
    with film_dim > 1 every lambda_n must be one of the run's S_lambda.
    """
    record = get_variant(config_variant)
    has_lambda, has_threshold, slim = record.conditional, record.noise, record.slim
    for knob, given, has in (("lambda_n", lambda_n, has_lambda), ("lambda_th", lambda_th, has_threshold),
                             ("width", widths, slim)):
        if given is not None and not has:
            owners = {"lambda_n": "float*, oat*", "lambda_th": "float*", "width": "*-slim"}[knob]
            raise HwsimError(f"a {config_variant!r} run has no knob {knob} (given {list(given)}); only "
                             f"{owners} variants have it")
    if not record.conditional:
        return [{"lambda_n": pgd_lambda, "lambda_th": 0.0, "width": 1.0}]
    if lambda_n is None:
        lambda_n = FLOAT_LAMBDAS if has_threshold else tuple(config_lambdas)
    if lambda_th is None:
        lambda_th = FLOAT_THRESHOLDS if has_threshold else (0.0,)
    if not lambda_n or not lambda_th or (widths is not None and not widths):
        raise HwsimError("empty knob list: give at least one lambda_n / lambda_th / width value")
    for value in list(lambda_n) + list(lambda_th):
        if not 0 <= value <= 1:
            raise HwsimError(f"lambda values must lie in [0, 1], got {value}")
    if record.film and film_dim > 1:
        bad = [v for v in lambda_n if not any(math.isclose(v, s, abs_tol=1e-6) for s in config_lambdas)]
        if bad:
            raise HwsimError(f"lambda_n {bad[0]:g} is not in the run's training set S_lambda "
                             f"{tuple(config_lambdas)} (required with film_dim={film_dim})")
    width_list = list(widths) if widths else [max(model_widths)] if slim else [1.0]
    if slim:
        bad_w = [w for w in width_list if not any(math.isclose(w, m) for m in model_widths)]
        if bad_w:
            raise HwsimError(f"width {bad_w[0]} is not one of this model's widths {tuple(model_widths)}")
    return [{"lambda_n": float(n), "lambda_th": float(t), "width": float(w)}
            for w, t, n in itertools.product(width_list, lambda_th, lambda_n)]


def clean_setting(config: TrainConfig) -> dict[str, float]:
    """The run's plain (most accurate) knob setting: the smallest lambda_n of its set, the largest width."""
    setting = robust_setting(config)
    record = get_variant(config.variant)
    if record.conditional:
        setting["lambda_n"] = float(min(config.oat_lambdas)) if record.film else 0.0
    return setting


def robust_setting(config: TrainConfig) -> dict[str, float]:
    """The run's most robust knob setting: the largest lambda_n of its set (FLOAT: 1 at lambda_th 0) and
    the largest width; base: its only setting."""
    record = get_variant(config.variant)
    if not record.conditional:
        return {"lambda_n": config.pgd_lambda, "lambda_th": 0.0, "width": 1.0}
    lam = max(config.oat_lambdas) if record.film else 1.0
    return {"lambda_n": float(lam), "lambda_th": 0.0, "width": float(max(config.widths)) if record.slim else 1.0}


def knob_context(model: nn.Module, variant: str, setting: dict[str, float]) -> contextlib.AbstractContextManager:
    """``models.knobs`` for the knobs ``variant`` has (a null context for base)."""
    record = get_variant(variant)
    if not record.conditional:
        return contextlib.nullcontext()
    args = {"lambda_n": setting["lambda_n"]}
    if record.noise:
        args["lambda_th"] = setting["lambda_th"]
    if record.slim:
        args["width"] = setting["width"]
    return _models.knobs(model, **args)


# ------------------------------------------------------------------------------------------------ runs

@dataclass
class LoadedRun:
    """A run's config and its model (checkpoint loaded, eval mode, on ``device``)."""

    path: Path
    config: TrainConfig
    model: nn.Module


def load_run(run_dir: str | Path, checkpoint_name: str, device: torch.device) -> LoadedRun:
    """Build a run's model with :func:`hwsim.train.trainer.build_model` and load ``checkpoint_name``."""
    if checkpoint_name not in CHECKPOINTS:
        raise HwsimError(f"unknown checkpoint {checkpoint_name!r}; valid: {', '.join(CHECKPOINTS)}")
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = trainer.build_model(config)
    state = getattr(model, "hwsim_knobs", None)
    built = tuple(getattr(state, "lambda_set", ()))
    if get_variant(config.variant).film and config.film_dim > 1 and built and not (
            len(built) == len(config.oat_lambdas)
            and all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(built, config.oat_lambdas))):
        raise HwsimError(f"run {run_dir} trained with S_lambda {tuple(config.oat_lambdas)} but build_model "
                         f"built the FiLM encoding for {built}; the trainer must pass lambdas=config.oat_lambdas")
    ckpt = checkpoint.load(run_dir / "checkpoints" / f"{checkpoint_name}.pt")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise HwsimError(f"checkpoint {checkpoint_name} of {run_dir} does not fit its config: "
                         f"{str(exc).splitlines()[0]}") from None
    return LoadedRun(run_dir, config, model.to(device).eval())


def load_test_set(config: TrainConfig, n_images: int | None, data_dir: str | Path | None) -> data.ImageDataset:
    """The run's test split, its first ``n_images`` images when given."""
    test = data.load_split(config.dataset, "test", data_dir if data_dir is not None else config.data_dir,
                           synthetic_size=config.synthetic_size)
    if n_images is not None:
        check_count("n_images", n_images)
        test = test.subset(torch.arange(min(n_images, len(test))))
    return test


def batches(test: data.ImageDataset, batch_size: int, device: torch.device,
            desc: str = "eval") -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(float images in [0, 1], labels) on ``device``, in order."""
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False)
    for images, labels in progress(loader, True, desc=desc):
        yield data.to_float(images.to(device)), labels.to(device)


def evaluate_run(run_dir: str | Path, attack_names: Sequence[str] = ("pgd20",),
                 lambda_n: Sequence[float] | None = None, lambda_th: Sequence[float] | None = None,
                 widths: Sequence[float] | None = None, checkpoints: Sequence[str] = ("last",),
                 n_images: int | None = None, batch_size: int = BATCH_SIZE, device: str = "auto",
                 data_dir: str | Path | None = None, seed: int = 0, write: bool = True, *,
                 restarts: int = 1, eot: int | None = None, noise_draws: int = NOISE_DRAWS,
                 transfer_from: str | Path | None = None) -> pd.DataFrame:
    """Evaluate a run directory and return the evaluation table (also merged into ``RUN/eval.csv``).

    Knob lists left None take the run's own values (:func:`knob_settings`). ``n_images``: the first N test
    images (all when None). ``restarts``: random starts of pgdK / cwK / art-pgdK (per-sample worst case).
    ``eot``: noise draws per attack gradient on randomised settings (None: 10, autoattack 20).
    ``noise_draws``: scoring passes on randomised settings. ``transfer_from``: a run directory whose model
    (same checkpoint name, at its most robust setting, :func:`robust_setting`) generates the attacks.
    Rows already in eval.csv with the same (checkpoint, width, lambda_n, lambda_th, attack, restarts,
    source) are replaced; others are kept. The file is replaced atomically, after every row is computed.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    bad = [c for c in checkpoints if c not in CHECKPOINTS]
    if bad or not checkpoints:
        raise HwsimError(f"unknown checkpoint {bad[0] if bad else ''!r}; valid: {', '.join(CHECKPOINTS)}")
    for name, value in (("batch_size", batch_size), ("noise_draws", noise_draws), ("restarts", restarts)):
        check_count(name, value)
    if eot is not None:  # None: each attack's own default
        check_count("eot", eot)
    check_seed(seed)
    specs = [parse_attack(name, config.eps, config.step_size, restarts) for name in attack_names]
    if not specs:
        raise HwsimError(f"no attacks given; valid: {_ATTACKS_HELP}")
    settings = knob_settings(config.variant, config.oat_lambdas, config.film_dim, config.pgd_lambda, lambda_n,
                             lambda_th, widths, config.widths)
    if transfer_from is not None:
        check_transfer_source(config, transfer_from)  # a bad source fails before any work
    test = load_test_set(config, n_images, data_dir)
    dev = _resolve_device(device, 0)
    probe = data.to_float(test.images[:8].to(dev))  # the images that decide whether a model is randomised
    sources: dict[str, _Source] = {}  # by checkpoint name: loaded once, whichever of ours transfer from it
    rows = []
    for name in checkpoints:
        run = load_run(run_dir, name, dev)
        source = None
        if transfer_from is not None:
            available = [c for c in (name, "last") if (Path(transfer_from) / "checkpoints" / f"{c}.pt").is_file()]
            source_name = available[0] if available else name
            if source_name not in sources:
                sources[source_name] = _transfer_source(transfer_from, source_name, probe, dev)
            source = sources[source_name]
        info = run.model.hwsim_info  # the network as built: film_dim 0 without FiLM, one BN for base
        for setting in settings:
            scores = _score_setting(run, setting, specs, source, test, batch_size, dev, eot, noise_draws, seed, probe)
            for spec, result in zip(specs, scores):
                rows.append({"run": str(run_dir), "checkpoint": name, "model": config.model,
                             "variant": config.variant, "dataset": config.dataset, "film_dim": info["film_dim"],
                             "bn": info["bn"], "algorithm": config.algorithm, "density": config.density,
                             "width": setting["width"], "lambda_n": setting["lambda_n"],
                             "lambda_th": setting["lambda_th"], "attack": spec.name, "eps": spec.eps,
                             "step_size": spec.step_size, "steps": spec.steps, "n_images": result.n_images,
                             "ca": result.ca, "ra": result.ra, "restarts": spec.restarts, "eot": result.eot,
                             "n_draws": result.n_draws, "ca_std": result.ca_std, "ra_std": result.ra_std,
                             "source": source.run.path.name if source is not None else ""})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if write:
        path = run_dir / "eval.csv"
        merged = table
        if path.is_file():
            old = pd.read_csv(path, keep_default_na=False, na_values=[""])
            for column, default in _NEW_COLUMN_DEFAULTS.items():
                if column not in old.columns:
                    old[column] = default
            old["source"] = ["" if pd.isna(v) else str(v) for v in old["source"]]
            merged = pd.concat([old, table]).drop_duplicates(subset=_KEY, keep="last")
        write_csv_atomic(merged, path)
    return table


def check_transfer_source(config: TrainConfig, transfer_from: str | Path) -> TrainConfig:
    """The config of a transfer attack's source run, refused (naming both) when its inputs differ from the
    attacked run's: its adversarial images would not be images of this run's test set."""
    source = read_run_config(transfer_from)
    ours, theirs = (data.get_source(c.dataset).model_dataset for c in (config, source))
    if ours != theirs:
        raise HwsimError(f"transfer source {str(transfer_from)!r} was trained on {source.dataset} ({theirs} "
                         f"inputs), this run on {config.dataset} ({ours} inputs): attacks do not transfer between them")
    return source


def write_csv_atomic(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` to ``path`` as CSV with :func:`hwsim.train.checkpoint.write_atomic`."""
    checkpoint.write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


@dataclass(frozen=True)
class _Source:
    """The source of a transfer attack: its run, its model at its most robust setting (what the attacks are
    generated on) and whether that model is randomised."""

    run: LoadedRun
    model: SettingView
    randomised: bool


def _transfer_source(run_dir: str | Path, checkpoint_name: str, probe: torch.Tensor,
                     device: torch.device) -> _Source:
    """Load a transfer source and decide once whether it is randomised (its setting never changes)."""
    run = load_run(run_dir, checkpoint_name, device)
    view = SettingView(run)
    with attack_context(run.model, "eval"):
        return _Source(run, view, is_randomised(view, probe))


def _score_setting(run: LoadedRun, setting: dict[str, float], specs: Sequence[AttackSpec], source: _Source | None,
                   test: data.ImageDataset, batch_size: int, device: torch.device, eot: int | None,
                   noise_draws: int, seed: int, probe: torch.Tensor) -> list[Score]:
    """The score of each attack of ``specs`` on ``run`` at ``setting``, each from the same seeds.

    What does not depend on the attack is computed once here for all of them: whether the setting is randomised
    (on ``probe``) and the clean predictions, so CA is the same number in every attack's row.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(attack_context(run.model, "eval"))
        stack.enter_context(knob_context(run.model, run.config.variant, setting))
        if source is not None:
            stack.enter_context(attack_context(source.run.model, "eval"))
        randomised = is_randomised(run.model, probe)
        attacked, attacked_randomised = ((source.model, source.randomised) if source is not None
                                         else (run.model, randomised))
        art = [spec.name for spec in specs if spec.kind == "art-pgd"]
        if attacked_randomised and art:  # ART's PGD cannot average noise draws: no EOT
            target = (f"the transfer source {str(source.run.path)!r}, randomised at its most robust setting"
                      if source is not None else f"the randomised setting lambda_n={setting['lambda_n']:g} of this run")
            raise HwsimError(f"{art[0]} has no EOT, so it cannot attack {target}; use pgdK (with --eot) or autoattack")
        clean = clean_pass(run.model, batches(test, batch_size, device, desc="eval clean"), n_draws=noise_draws,
                           seed=seed, randomised=randomised)
        scores = []
        for spec in specs:
            seed_everything(seed)
            scores.append(score(run.model, batches(test, batch_size, device, desc=f"eval {spec.name}"),
                                spec.generators(attacked, attacked_randomised, seed=seed), n_draws=noise_draws,
                                eot=eot if eot is not None else spec.default_eot(), seed=seed, attacked=attacked,
                                randomised=randomised, attacked_randomised=attacked_randomised, clean=clean))
        return scores


class SettingView(nn.Module):
    """A run's model that always runs at one knob setting (default its most robust one,
    :func:`robust_setting`), e.g. the source model of a transfer attack."""

    def __init__(self, run: LoadedRun, setting: dict[str, float] | None = None) -> None:
        super().__init__()
        self.run = run
        self.setting = setting if setting is not None else robust_setting(run.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with knob_context(self.run.model, self.run.config.variant, self.setting):
            return self.run.model(x)
