"""Evaluation work that does not depend on the attack is done once: randomness probes, the clean pass, sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_evaluate import CoinNet, make_run
from torch import nn

import models
from hwsim.train import evaluate
from hwsim.train.evaluate import evaluate_run, score

pytestmark = pytest.mark.usefixtures("one_thread")


def _float_run(path: Path) -> Path:
    torch.manual_seed(0)
    run = make_run(path, models.create_model("small_cnn", "float", dataset="cifar10"), variant="float",
                   algorithm="float")
    shutil.copy(run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt")
    return run


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[nn.Module]:
    """The models :func:`hwsim.train.evaluate.is_randomised` is asked about, in order."""
    asked: list[nn.Module] = []
    real = evaluate.is_randomised

    def spy(model: nn.Module, x: torch.Tensor) -> bool:
        asked.append(model)
        return real(model, x)

    monkeypatch.setattr(evaluate, "is_randomised", spy)
    return asked


def test_score_probes_each_model_once_and_not_when_told(probes: list[nn.Module]) -> None:
    x, y = torch.rand(10, 1, 2, 2), torch.ones(10, dtype=torch.long)
    model, other = CoinNet(), nn.Flatten()
    two_batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    identity = lambda a, b, eot: a.clone()
    noisy = score(model, two_batches, [identity], n_draws=3, eot=2)
    assert probes == [model] and (noisy.n_draws, noisy.eot) == (3, 2)  # once, though it is also the attacked one
    probes.clear()
    transfer = score(model, two_batches, [identity], n_draws=3, eot=2, attacked=other)
    assert probes == [model, other] and transfer.n_draws == 3
    probes.clear()
    told = score(model, two_batches, [identity], n_draws=3, eot=2, randomised=False, attacked_randomised=True)
    assert probes == [] and (told.n_draws, told.eot) == (1, 2)  # the caller's answer is used as given


def test_evaluation_probes_once_per_checkpoint_and_setting(tmp_path: Path, probes: list[nn.Module]) -> None:
    run = _float_run(tmp_path / "float")
    table = evaluate_run(run, ["pgd1", "cw1", "fgsm"], lambda_n=[0, 1], lambda_th=[0], checkpoints=["last", "best"],
                         n_images=8, device="cpu", noise_draws=2, eot=1, write=False)
    assert len(table) == 2 * 2 * 3
    assert len(probes) == 2 * 2  # not once per attack (nor three times, as before)
    assert list(table["n_draws"]) == [1] * 3 + [2] * 3 + [1] * 3 + [2] * 3
