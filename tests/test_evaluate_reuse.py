"""Evaluation work that does not depend on the attack is done once: randomness probes, the clean pass, sources."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_evaluate import CoinNet, make_run
from torch import nn

import models
from hwsim.train import evaluate, scoring
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

    monkeypatch.setattr(evaluate, "is_randomised", spy)  # where the run evaluation looks it up
    monkeypatch.setattr(scoring, "is_randomised", spy)  # where score() looks it up
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


class _Forwards:
    """Counts the forwards of every model :func:`hwsim.train.evaluate.load_run` loads, and those of them that
    are clean predictions (no gradient, input exactly one of ``clean_batches``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, clean_batches: list[torch.Tensor]) -> None:
        self.total = self.clean = 0
        self.clean_batches = clean_batches
        real = evaluate.load_run

        def load(*args: object, **kwargs: object) -> evaluate.LoadedRun:
            loaded = real(*args, **kwargs)
            loaded.model.register_forward_pre_hook(self._count)
            return loaded

        monkeypatch.setattr(evaluate, "load_run", load)

    def _count(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.total += 1
        x = inputs[0]
        self.clean += not torch.is_grad_enabled() and any(x.shape == c.shape and torch.equal(x, c)
                                                           for c in self.clean_batches)

    def run(self, *args: object, **kwargs: object) -> tuple[object, int, int]:
        self.total = self.clean = 0
        return evaluate_run(*args, **kwargs), self.total, self.clean


def test_the_clean_pass_is_computed_once_per_setting_and_shared_by_its_attacks(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from hwsim.train import data

    run = _float_run(tmp_path / "float")
    test = evaluate.load_test_set(evaluate.read_run_config(run), 12, None)
    forwards = _Forwards(monkeypatch, [data.to_float(test.images[:6]), data.to_float(test.images[6:])])
    options = dict(lambda_n=[0, 1], lambda_th=[0], n_images=12, batch_size=6, device="cpu", noise_draws=3, eot=2,
                   write=False)
    both, total, clean = forwards.run(run, ["pgd1", "cw1"], **options)
    (pgd, pgd_total, pgd_clean), (cw, cw_total, cw_clean) = (forwards.run(run, [a], **options) for a in ("pgd1", "cw1"))
    assert clean == pgd_clean == cw_clean == 2 * (1 + 3)  # two batches x (1 draw at lambda_n 0, 3 at lambda_n 1)
    assert total <= pgd_total + cw_total - clean  # the second attack recomputed no clean prediction
    for setting in (0, 1):  # CA the same number in every attack's row of a setting, as when scored alone
        rows = both[both["lambda_n"] == setting]
        assert rows["ca"].nunique() == 1 and rows["ca_std"].nunique() == 1
        assert rows["ca"].iloc[0] == pgd[pgd["lambda_n"] == setting]["ca"].iloc[0]
    assert both[both["lambda_n"] == 1]["ca_std"].iloc[0] > 0  # the randomised setting: its draws differ
    assert list(both["ra"]) == [pgd["ra"].iloc[0], cw["ra"].iloc[0], pgd["ra"].iloc[1], cw["ra"].iloc[1]]


def test_a_transfer_source_checkpoint_is_loaded_and_probed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 probes: list[nn.Module]) -> None:
    target = _float_run(tmp_path / "float")
    torch.manual_seed(1)
    source = make_run(tmp_path / "plain", models.create_model("small_cnn", "base", dataset="cifar10"))  # last.pt only
    loads = []
    real = evaluate.load_run
    monkeypatch.setattr(evaluate, "load_run", lambda run_dir, name, device: loads.append((Path(run_dir).name, name))
                        or real(run_dir, name, device))
    options = dict(lambda_n=[0, 1], lambda_th=[0], n_images=8, device="cpu", noise_draws=2, eot=1, write=False,
                   transfer_from=source)
    both = evaluate_run(target, ["pgd1", "fgsm"], checkpoints=["last", "best"], **options)
    assert loads == [("float", "last"), ("plain", "last"), ("float", "best")]  # its last.pt serves both of ours
    assert len(probes) == 2 * 2 + 1  # each checkpoint x setting of ours, and the source once
    assert set(both["source"]) == {"plain"} and set(both["eot"]) == {0}  # a deterministic source: no EOT
    alone = evaluate_run(target, ["pgd1", "fgsm"], checkpoints=["best"], **options)
    best = both[both["checkpoint"] == "best"].reset_index(drop=True)
    assert best[["ca", "ra", "ca_std", "ra_std"]].equals(alone[["ca", "ra", "ca_std", "ra_std"]])

    shutil.copy(source / "checkpoints" / "last.pt", source / "checkpoints" / "best.pt")
    loads.clear()
    evaluate_run(target, ["pgd1"], checkpoints=["last", "best"], **options)
    assert loads == [("float", "last"), ("plain", "last"), ("float", "best"), ("plain", "best")]


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_sanity_runs_one_clean_pass_and_reuses_base_at_eps_0_and_eps(noise: float,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from test_evaluate import NoisyLogits, _quadrant_data, _trained

    from hwsim.train import sanity

    x, y = _quadrant_data()
    model = NoisyLogits(_trained(0, x, y), noise)
    two_batches = [(x[:80], y[:80]), (x[80:], y[80:])]
    clean_forwards = []
    model.register_forward_pre_hook(lambda m, inputs: clean_forwards.append(1) if not torch.is_grad_enabled() and any(
        inputs[0].shape == b.shape and torch.equal(inputs[0], b) for b, _ in two_batches) else None)
    scored = []
    real = sanity.score
    monkeypatch.setattr(sanity, "score", lambda *a, **kw: scored.append(a[2]) or real(*a, **kw))
    st = sanity.SanitySettings(eps=8 / 255, step_size=2 / 255, steps=2, restarts=2, eot=2, n_draws=3)
    table = sanity.sanity_checks(model, lambda: two_batches, st).set_index("check")
    draws = 3 if noise else 1
    assert len(clean_forwards) == draws * 2  # once, not once per check
    # base, 5K steps, restarts, eps sweep at 0.5, 2, 4, 8 eps (0 and eps are base's), unbounded, eot, fgsm
    assert len(scored) == 3 + 4 + 1 + (1 if noise else 0) + 1
    sweep = dict(part.split(" ", 1) for part in table.loc["eps_sweep", "values"].split("; "))
    base = dict(part.split(" ", 1) for part in table.loc["more_steps", "values"].split("; "))
    assert list(sweep)[:3] == ["eps=0", "eps=0.01569", "eps=0.03137"] and sweep["eps=0.03137"] == base["pgd2"]
    assert float(sweep["eps=0"].split("±")[0]) > float(base["pgd2"].split("±")[0])  # CA, above RA
