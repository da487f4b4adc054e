"""The sanity checks share the work that is the same, and compare paired draws (issue 22)."""

from __future__ import annotations

import pytest
import torch
from test_evaluate import _quadrant_data, _trained

from hwsim.train import attacks, sanity
from hwsim.train.scoring import Score, score

pytestmark = pytest.mark.usefixtures("one_thread")


def _score(ra_draws: tuple[float, ...]) -> Score:
    mean = sum(ra_draws) / len(ra_draws)
    std = float(torch.tensor(ra_draws, dtype=torch.float64).std()) if len(ra_draws) > 1 else 0.0
    return Score(90.0, 0.0, mean, std, len(ra_draws), 2, 1000, (90.0,) * len(ra_draws), ra_draws)


def test_tolerance_is_twice_the_spread_of_the_paired_differences() -> None:
    # pass by pass the second attack is 4, 6 and 5 points lower: differences with mean 5 and std exactly 1
    pgd, fgsm = _score((10.0, 50.0, 90.0)), _score((6.0, 44.0, 85.0))
    assert pgd.ra_std > 39 and fgsm.ra_std > 39  # each alone spreads ~40 points over the draws
    assert sanity._tol(1000, pgd, fgsm) == 2.0  # max(1 point, one image = 0.1, 2 x 1)
    # so FGSM 5 points below PGD fails the check; the old tolerance 2 sqrt(40^2 + 39.5^2) = 112 let it pass
    assert not fgsm.ra >= pgd.ra - sanity._tol(1000, pgd, fgsm)
    # identical differences on every pass: no spread, the floor of one point / one image applies
    assert sanity._tol(50, _score((10.0, 50.0)), _score((5.0, 45.0))) == 2.0  # one image of 50 = 2 points
    assert sanity._tol(1000, _score((70.0,)), _score((65.0,))) == 1.0  # deterministic: one pass


def test_sanity_runs_pgd_k_inside_pgd_5k_and_the_unbounded_attack_in_k_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _quadrant_data()
    model = _trained(0, x, y)
    calls = []
    real = attacks.pgd
    monkeypatch.setattr(attacks, "pgd", lambda *a, **kw: calls.append((kw["steps"], kw["eps"])) or real(*a, **kw))
    st = sanity.SanitySettings(eps=8 / 255, step_size=2 / 255, steps=3, restarts=2, eot=1, n_draws=1, seed=4)
    table = sanity.sanity_checks(model, lambda: [(x, y)], st).set_index("check")
    k = 3
    # PGD-5K once (PGD-K is its iterate after K steps), R restarts, the sweep at 0.5, 2, 4, 8 eps, unbounded at
    # eps 1 in K steps, FGSM; no transfer source, deterministic (no eot check)
    assert sorted(calls) == sorted([(5 * k, st.eps)] + [(k, st.eps)] * 2 + [(k, f * st.eps) for f in (0.5, 2, 4, 8)]
                                   + [(k, 1.0), (1, st.eps)])
    monkeypatch.setattr(attacks, "pgd", real)
    # PGD-K as shared is PGD-K run on its own from the same seed (one batch: the same random start)
    torch.manual_seed(st.seed)
    alone = score(model, [(x, y)], [lambda a, b, eot: real(model, a, b, eps=st.eps, step_size=st.step_size, steps=k)])
    shown = dict(part.split(" ", 1) for part in table.loc["more_steps", "values"].split("; "))
    assert shown[f"pgd{k}"] == f"{alone.ra:.2f}"
    assert table.loc["unbounded", "values"].startswith(f"pgd{k} eps=1 ")
