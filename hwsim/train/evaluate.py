"""Evaluation of a run's checkpoints: clean and robust accuracy per checkpoint x knob setting x attack.

The result is the contract's evaluation table (``RUN/eval.csv``), one row per checkpoint x knob setting x
attack with columns :data:`COLUMNS`; ca and ra in percent, eps and step_size as fractions of 1.

Attack names: ``pgdK`` (our PGD-K, CE loss, random start), ``cwK`` (our PGD-K on the CW margin),
``fgsm``, ``art-pgdK`` (adversarial-robustness-toolbox's ProjectedGradientDescent, for final tables) and
``autoattack`` (ART's AutoAttack with the attacks of AutoAttack's 'rand' version, APGD-CE and APGD-DLR, as
FLOAT evaluates; extra ``hwsim[art]``). PGD
attacks use the run's eps and step size (8/255 and 2/255 by default). The model is attacked in eval mode.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hwsim.errors import HwsimError
from hwsim.variants import get_variant
from hwsim.train import _models, attacks, checkpoint, data
from hwsim.train.attacks import attack_context
from hwsim.train.trainer import build_model, progress, read_run_config, seed_everything, _resolve_device

COLUMNS = ("run", "checkpoint", "model", "variant", "dataset", "film_dim", "bn", "algorithm", "density", "width",
           "lambda_n", "lambda_th", "attack", "eps", "step_size", "steps", "n_images", "ca", "ra")
CHECKPOINTS = ("last", "best")
_KEY = ["checkpoint", "width", "lambda_n", "lambda_th", "attack"]

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name: what runs, and the eps / step / steps it reports."""

    name: str
    fn: AttackFn
    eps: float
    step_size: float
    steps: int


def parse_attack(name: str, eps: float, step_size: float) -> AttackSpec:
    """``pgd20`` / ``cw20`` / ``fgsm`` / ``art-pgd20`` / ``autoattack`` -> AttackSpec (HwsimError otherwise)."""
    match = re.fullmatch(r"(pgd|cw|art-pgd)(\d+)", name)
    if match and int(match.group(2)) >= 1:
        kind, steps = match.group(1), int(match.group(2))
        if kind == "pgd":
            fn: AttackFn = lambda m, x, y: attacks.pgd(m, x, y, eps=eps, step_size=step_size, steps=steps)
        elif kind == "cw":
            fn = lambda m, x, y: attacks.cw_pgd(m, x, y, eps=eps, step_size=step_size, steps=steps)
        else:
            fn = lambda m, x, y: art_pgd(m, x, y, eps=eps, step_size=step_size, steps=steps)
        return AttackSpec(name, fn, eps, step_size, steps)
    if name == "fgsm":
        return AttackSpec(name, lambda m, x, y: attacks.fgsm(m, x, y, eps=eps), eps, eps, 1)
    if name == "autoattack":
        _require_art("autoattack")
        return AttackSpec(name, lambda m, x, y: autoattack(m, x, y, eps=eps), eps, math.nan, 0)
    raise HwsimError(f"unknown attack {name!r}; valid: pgdK, cwK, fgsm, art-pgdK (K >= 1 steps), autoattack")


def art_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
            step_size: float = 2 / 255, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """L-inf PGD from adversarial-robustness-toolbox (one random start), for final-table numbers.

    ART runs on numpy; the model's mode and knobs are the caller's (ART's classifier evaluates in eval mode).
    """
    import numpy as np

    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        raise HwsimError("attack 'art-pgd' needs adversarial-robustness-toolbox: pip install hwsim[art]") from None
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=num_classes, clip_values=(0.0, 1.0),
                                   device_type="gpu" if x.is_cuda else "cpu")
    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=step_size, max_iter=steps,
                                      num_random_init=1, batch_size=len(x), verbose=False)
    np.random.seed(seed)  # ART draws its random start from numpy's global RNG
    x_adv = attack.generate(x=x.detach().cpu().numpy(), y=y.detach().cpu().numpy())
    return torch.from_numpy(x_adv).to(x.device)


def _require_art(attack: str) -> None:
    try:
        import art  # noqa: F401
    except ImportError:
        raise HwsimError(f"attack {attack!r} needs adversarial-robustness-toolbox: pip install hwsim[art]") from None


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255,
               seed: int = 0) -> torch.Tensor:
    """AutoAttack's 'rand' ensemble (APGD-CE then APGD-DLR, L-inf, 100 iterations) with ART's APGD.

    The 'rand' version is the one for randomised defences that FLOAT reports. ART's APGD has no EOT
    (expectation over transformation) averaging, so on a noise-conditioned model each gradient sees one noise
    draw; numbers are therefore an upper bound on the robust accuracy the original 'rand' version reports.
    A sample counts as broken when either attack breaks it (the first success per sample is kept).
    """
    import numpy as np

    _require_art("autoattack")
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=num_classes, clip_values=(0.0, 1.0),
                                   device_type="gpu" if x.is_cuda else "cpu")
    np.random.seed(seed)  # ART draws random starts from numpy's global RNG
    x_np, y_np = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    x_adv = x_np.copy()
    robust = classifier.predict(x_np, batch_size=len(x_np)).argmax(1) == y_np
    # The ensemble as AutoAttack runs it: each attack only on the samples that every earlier one left robust.
    # (ART's own AutoAttack wrapper would do the same but imports the `multiprocess` package.)
    for loss in ("cross_entropy", "difference_logits_ratio"):
        index = np.flatnonzero(robust)
        if index.size == 0:
            break
        attack = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100,
                                              nb_random_init=1, batch_size=len(x_np), loss_type=loss,
                                              verbose=False)
        candidate = attack.generate(x=x_np[index], y=y_np[index])
        broken = classifier.predict(candidate, batch_size=len(index)).argmax(1) != y_np[index]
        x_adv[index[broken]] = candidate[broken]
        robust[index[broken]] = False
    return torch.from_numpy(x_adv).to(x.device)


def knob_settings(config_variant: str, config_lambdas: Sequence[float], film_dim: int, pgd_lambda: float,
                  lambda_n: Sequence[float], lambda_th: Sequence[float],
                  widths: Sequence[float] | None, model_widths: Sequence[float]) -> list[dict[str, float]]:
    """The knob settings to evaluate for a variant (keys lambda_n, lambda_th, width).

    base: one setting, lambda_n = the pgd-at training lambda (the model has no knobs). float*: lambda_n x
    lambda_th. oat*: lambda_n only (its BN switch has no threshold; lambda_th reported as 0); with
    film_dim > 1 every lambda_n must be one of the training lambdas. *-slim: x widths.
    """
    record = get_variant(config_variant)
    if not record.conditional:
        return [{"lambda_n": pgd_lambda, "lambda_th": 0.0, "width": 1.0}]
    for value in list(lambda_n) + list(lambda_th):
        if not 0 <= value <= 1:
            raise HwsimError(f"lambda values must lie in [0, 1], got {value}")
    if record.film:
        if film_dim > 1:
            bad = [v for v in lambda_n if not any(math.isclose(v, s, abs_tol=1e-6) for s in config_lambdas)]
            if bad:
                raise HwsimError(f"lambda_n {bad[0]:g} is not in the training set S_lambda "
                                 f"{tuple(config_lambdas)} (required with film_dim={film_dim})")
        lambda_th = [0.0]
    slim = record.slim
    width_list = list(widths) if (slim and widths) else ([max(model_widths)] if slim else [1.0])
    if slim:
        bad_w = [w for w in width_list if not any(math.isclose(w, m) for m in model_widths)]
        if bad_w:
            raise HwsimError(f"width {bad_w[0]} is not one of this model's widths {tuple(model_widths)}")
    return [{"lambda_n": float(n), "lambda_th": float(t), "width": float(w)}
            for w, t, n in itertools.product(width_list, lambda_th, lambda_n)]


def evaluate_run(run_dir: str | Path, attack_names: Sequence[str] = ("pgd20",),
                 lambda_n: Sequence[float] = (0.0, 0.2, 0.7, 1.0), lambda_th: Sequence[float] = (0.0, 0.5),
                 widths: Sequence[float] | None = None, checkpoints: Sequence[str] = ("last",),
                 n_images: int | None = None, batch_size: int = 256, device: str = "auto",
                 data_dir: str | Path | None = None, seed: int = 0, write: bool = True) -> pd.DataFrame:
    """Evaluate a run directory and return the evaluation table (also merged into ``RUN/eval.csv``).

    ``n_images``: the first N test images (all when None). Rows already in eval.csv with the same
    (checkpoint, width, lambda_n, lambda_th, attack) are replaced; others are kept.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    bad = [c for c in checkpoints if c not in CHECKPOINTS]
    if bad:
        raise HwsimError(f"unknown checkpoint {bad[0]!r}; valid: {', '.join(CHECKPOINTS)}")
    specs = [parse_attack(name, config.eps, config.step_size) for name in attack_names]
    if not specs:
        raise HwsimError("no attacks given; valid: pgdK, cwK, fgsm, art-pgdK, autoattack")
    settings = knob_settings(config.variant, config.oat_lambdas, config.film_dim, config.pgd_lambda, lambda_n,
                             lambda_th, widths, config.widths)
    if batch_size < 1:
        raise HwsimError(f"batch_size must be >= 1, got {batch_size}")
    test = data.load_split(config.dataset, "test", data_dir if data_dir is not None else config.data_dir,
                           synthetic_size=config.synthetic_size)
    if n_images is not None:
        if n_images < 1:
            raise HwsimError(f"n_images must be >= 1, got {n_images}")
        test = test.subset(torch.arange(min(n_images, len(test))))
    dev = _resolve_device(device, 0)
    model = build_model(config).to(dev)
    info = model.hwsim_info  # the network as built: film_dim 0 without FiLM, one BN for base
    rows = []
    for name in checkpoints:
        state = checkpoint.load(run_dir / "checkpoints" / f"{name}.pt")
        model.load_state_dict(state["model"])
        for setting in settings:
            for spec in specs:
                seed_everything(seed)
                ca, ra = _accuracy(model, config.variant, setting, spec, test, batch_size, dev)
                rows.append({"run": str(run_dir), "checkpoint": name, "model": config.model,
                             "variant": config.variant, "dataset": config.dataset, "film_dim": info["film_dim"],
                             "bn": info["bn"], "algorithm": config.algorithm, "density": config.density,
                             "width": setting["width"], "lambda_n": setting["lambda_n"],
                             "lambda_th": setting["lambda_th"], "attack": spec.name, "eps": spec.eps,
                             "step_size": spec.step_size, "steps": spec.steps, "n_images": len(test),
                             "ca": ca, "ra": ra})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if write:
        path = run_dir / "eval.csv"
        if path.is_file():
            old = pd.read_csv(path)
            merged = pd.concat([old, table]).drop_duplicates(subset=_KEY, keep="last")
            merged.to_csv(path, index=False)
        else:
            table.to_csv(path, index=False)
    return table


def _accuracy(model: nn.Module, variant: str, setting: dict[str, float], spec: AttackSpec,
              test: data.ImageDataset, batch_size: int, device: torch.device) -> tuple[float, float]:
    correct_c = correct_a = 0
    loader = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False)
    knob_args: dict[str, float] = {}
    record = get_variant(variant)
    if record.conditional:
        knob_args = {"lambda_n": setting["lambda_n"]}
        if record.noise:
            knob_args["lambda_th"] = setting["lambda_th"]
        if record.slim:
            knob_args["width"] = setting["width"]
    with attack_context(model, "eval"):
        context = _models.knobs(model, **knob_args) if knob_args else contextlib.nullcontext()
        with context:
            for images, labels in progress(loader, True, desc=f"eval {spec.name}"):
                x, y = data.to_float(images.to(device)), labels.to(device)
                with torch.no_grad():
                    correct_c += int((model(x).argmax(1) == y).sum())
                x_adv = spec.fn(model, x, y)
                with torch.no_grad():
                    correct_a += int((model(x_adv).argmax(1) == y).sum())
    return 100.0 * correct_c / len(test), 100.0 * correct_a / len(test)
