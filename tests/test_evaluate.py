"""Evaluation you can trust: draws decide and score success, restarts, transfer, knob defaults, OAT lambda sets."""

from __future__ import annotations

import itertools
import json
import shutil
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import models
from hwsim.cli import cli, main
from hwsim.errors import HwsimError
from hwsim.train import attacks, trainer
from hwsim.train.config import make_config
from hwsim.train.evaluate import COLUMNS, evaluate_run, knob_settings, parse_attack, score

pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(path: Path, model: nn.Module, **config: object) -> Path:
    """A run directory (config.json + checkpoints/last.pt) around ``model``, without training."""
    cfg = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 128, "device": "cpu",
                       "eps": 8 / 255, "step_size": 2 / 255, **config})
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.save({"format": 1, "model": model.state_dict()}, path / "checkpoints" / "last.pt")
    return path


class CoinNet(nn.Module):
    """Randomised: at each forward one coin decides whether every image is called class 1 or class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = float(torch.rand(()) < 0.5)
        logits = torch.zeros(len(x), 2, device=x.device)
        logits[:, 1] = 2 * heads - 1
        return logits + 0 * x.flatten(1).sum(1, keepdim=True)


def test_success_is_decided_on_the_draws_that_score_it() -> None:
    x, y = torch.rand(10, 1, 2, 2), torch.ones(10, dtype=torch.long)
    model = CoinNet()
    # the identity "attack": a sample is broken exactly on the draws where it is already wrong, so RA = CA
    # draw by draw; deciding success on another draw than the scoring one would make RA differ from CA.
    torch.manual_seed(0)
    s = score(model, [(x, y)], [lambda a, b, eot: a.clone()], n_draws=16, eot=3)
    assert s.n_draws == 16 and s.eot == 3
    assert s.ra == s.ca and s.ra_std == s.ca_std
    assert 0 < s.ca < 100 and s.ca_std > 40  # every draw scores 0 or 100: a large spread
    assert (s.ca * 16 / 100) == round(s.ca * 16 / 100)
    det = score(nn.Flatten(), [(x, y)], [], n_draws=16, eot=3)  # deterministic: one pass, no EOT
    assert (det.n_draws, det.eot, det.ca_std, det.ra_std) == (1, 0, 0.0, 0.0)


def test_eot_says_what_the_attack_did_and_is_0_only_for_a_deterministic_attacked_model(tmp_path: Path) -> None:
    x, y = torch.rand(10, 1, 2, 2), torch.ones(10, dtype=torch.long)
    identity = lambda a, b, eot: a.clone()
    one_pass = score(CoinNet(), [(x, y)], [identity], n_draws=1, eot=1)
    assert (one_pass.n_draws, one_pass.eot) == (1, 1)  # randomised, attacked with one draw per gradient: not 0
    assert score(CoinNet(), [(x, y)], [identity], n_draws=1, eot=4).eot == 4
    assert score(nn.Flatten(), [(x, y)], [identity], n_draws=5, eot=4).eot == 0
    transfer = score(CoinNet(), [(x, y)], [identity], n_draws=3, eot=4, attacked=nn.Flatten())
    assert (transfer.n_draws, transfer.eot) == (3, 0)  # scored over draws, but the attack drew no noise
    torch.manual_seed(0)
    run = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"),
                   variant="float", algorithm="float")
    table = evaluate_run(run, ["pgd1"], lambda_n=[0, 1], lambda_th=[0], n_images=8, device="cpu", noise_draws=1,
                         eot=1, write=False)
    assert list(table["n_draws"]) == [1, 1] and list(table["eot"]) == [0, 1]


def _quadrant_data(n: int = 160, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.5
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 0.08
    return x, y


def _trained(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval().requires_grad_(False)


class NoisyLogits(nn.Module):
    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + self.scale * torch.randn_like(out)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_restarts_never_raise_ra(noise: float) -> None:
    x, y = _quadrant_data()
    model = NoisyLogits(_trained(0, x, y), noise)
    ras = []
    for restarts in (1, 2, 4):
        generators = parse_attack("pgd3", 4 / 255, 1 / 255, restarts).generators(model, noise > 0)
        torch.manual_seed(0)
        ras.append(score(model, [(x[:80], y[:80]), (x[80:], y[80:])], generators, n_draws=3, eot=2))
    assert all(b.ra <= a.ra for a, b in zip(ras, ras[1:])), [s.ra for s in ras]
    assert ras[0].ra < ras[0].ca  # the attack does something
    assert ras[0].n_draws == (3 if noise else 1)


@pytest.mark.parametrize("name", ["pgd1", "cw1", "art-pgd1"])
def test_each_restart_starts_afresh_and_restarts_lower_ra_sample_by_sample(name: str) -> None:
    x, y = _quadrant_data()
    model = _trained(0, x, y)
    single = parse_attack(name, 8 / 255, 2 / 255).generators(model, False)
    restarts = parse_attack(name, 8 / 255, 2 / 255, restarts=4).generators(model, False)
    assert len(single) == 1 and len(restarts) == 4
    torch.manual_seed(0)
    candidates = [generate(x[:8], y[:8], 1) for generate in restarts]
    for a, b in itertools.combinations(candidates, 2):  # a restart that reused a start would repeat its candidate
        assert not torch.equal(a, b)
    if name.startswith("art"):
        return  # ART runs on numpy, one call per sample would take seconds: its starts differing is the point
    lowered = 0
    for i in range(len(x)):  # each sample on its own, both from the same seed: the first start is shared
        ras = []
        for generators in (single, restarts):
            torch.manual_seed(i)
            ras.append(score(model, [(x[i:i + 1], y[i:i + 1])], generators).ra)
        assert ras[1] <= ras[0], i
        lowered += ras[1] < ras[0]
    assert lowered >= 3  # samples that survive one start but not four (4 of 160 on this seeded case)


def test_evaluate_runs_every_restart_from_its_own_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    run = make_run(tmp_path / "base", models.create_model("small_cnn", "base", dataset="cifar10"),
                   step_size="1/255000")  # a step too small to break anything: every correct sample stays robust
    candidates = []
    real = attacks.pgd
    monkeypatch.setattr(attacks, "pgd", lambda *a, **kw: candidates.append(real(*a, **kw)) or candidates[-1])
    table = evaluate_run(run, ["pgd1"], n_images=64, device="cpu", restarts=3, write=False)
    assert table["ra"].iloc[0] == table["ca"].iloc[0] > 0 and table["restarts"].iloc[0] == 3
    assert len(candidates) == 3  # one batch, three starts, each on the still robust samples
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(candidates, 2))


def test_sanity_checks_flag_a_masked_model_and_pass_a_plain_one() -> None:
    from hwsim.train.sanity import SanitySettings, sanity_checks

    x, y = _quadrant_data()
    plain, other = _trained(0, x, y), _trained(1, x, y)
    masked = nn.Sequential(_Quantise(), plain)  # a non-differentiable quantiser in front: zero input gradient
    st = SanitySettings(eps=8 / 255, step_size=2 / 255, steps=5, restarts=2, eot=2, n_draws=2)
    transfer = lambda a, b, eot: attacks.pgd(other, a, b, eps=st.eps, step_size=st.step_size, steps=st.steps)
    verdicts = {}
    for name, model in (("plain", plain), ("masked", masked)):
        table = sanity_checks(model, lambda: [(x, y)], st, surrogate=transfer, surrogate_model=other)
        verdicts[name] = dict(zip(table["check"], table["verdict"]))
    assert list(verdicts["plain"]) == ["more_steps", "restarts", "eps_sweep", "unbounded", "transfer", "eot",
                                       "fgsm"]
    assert verdicts["plain"] == {**{c: "pass" for c in verdicts["plain"]}, "eot": "skip"}
    for check in ("eps_sweep", "unbounded", "transfer"):
        assert verdicts["masked"][check] == "FAIL", (check, verdicts["masked"])


class _Quantise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 16) / 16


# ------------------------------------------------------------------------------------------------ runs

def test_float_run_rows_carry_draws_and_spreads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models.create_model("small_cnn", "float", dataset="cifar10")
    run = make_run(tmp_path / "float", model, variant="float", algorithm="float")
    table = evaluate_run(run, ["pgd2"], lambda_n=[0, 1], lambda_th=[0], n_images=24, device="cpu",
                         noise_draws=3, eot=2)
    assert tuple(table.columns) == COLUMNS
    clean, noisy = table.iloc[0], table.iloc[1]
    assert (clean["n_draws"], clean["eot"], clean["ca_std"], clean["ra_std"]) == (1, 0, 0.0, 0.0)
    assert (noisy["n_draws"], noisy["eot"]) == (3, 2)
    assert (table["ra"] <= table["ca"]).all() and set(table["source"]) == {""}
    saved = pd.read_csv(run / "eval.csv")
    assert list(saved["n_draws"]) == [1, 3]
    # restarts add rows (key includes restarts) and never raise RA
    more = evaluate_run(run, ["pgd2"], lambda_n=[1], lambda_th=[0], n_images=24, device="cpu", noise_draws=3,
                        eot=2, restarts=3)
    assert more["ra"].iloc[0] <= noisy["ra"] and more["restarts"].iloc[0] == 3
    assert len(pd.read_csv(run / "eval.csv")) == 3


def test_old_eval_csv_merges_with_new_columns(tmp_path: Path) -> None:
    torch.manual_seed(0)
    run = make_run(tmp_path / "base", models.create_model("small_cnn", "base", dataset="cifar10"))
    old = evaluate_run(run, ["fgsm"], n_images=8, device="cpu", write=False)
    old[list(COLUMNS[:19])].to_csv(run / "eval.csv", index=False)  # an eval.csv written before issue 12
    evaluate_run(run, ["pgd1"], n_images=8, device="cpu")
    merged = pd.read_csv(run / "eval.csv")
    assert list(merged["attack"]) == ["fgsm", "pgd1"] and tuple(merged.columns) == COLUMNS
    assert math.isnan(merged["n_draws"].iloc[0]) and merged["n_draws"].iloc[1] == 1


def test_transfer_attacks_come_from_the_source_not_the_target(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models.create_model("small_cnn", "base", dataset="cifar10")
    target = make_run(tmp_path / "target", model, synthetic_size=512)  # 128 test images
    twin = make_run(tmp_path / "twin", model)
    blind_model = models.create_model("small_cnn", "base", dataset="cifar10")
    with torch.no_grad():
        for p in blind_model.parameters():
            p.zero_()  # constant logits: zero input gradient, so PGD on it never leaves its random start
    blind = make_run(tmp_path / "blind", blind_model)
    white = evaluate_run(target, ["pgd3"], device="cpu")
    same = evaluate_run(target, ["pgd3"], device="cpu", transfer_from=twin)
    far = evaluate_run(target, ["pgd3"], device="cpu", transfer_from=blind)
    assert white["n_images"].iloc[0] == 128 and white["ra"].iloc[0] < white["ca"].iloc[0]
    assert same["ra"].iloc[0] == white["ra"].iloc[0] and same["source"].iloc[0] == "twin"
    # noise in the eps ball breaks none of the images that white-box PGD breaks: the source made the attack
    assert far["ra"].iloc[0] == far["ca"].iloc[0] > white["ra"].iloc[0] and far["source"].iloc[0] == "blind"
    assert len(pd.read_csv(target / "eval.csv")) == 3  # one row per source


def test_a_transfer_source_runs_at_its_most_robust_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hwsim.train import evaluate

    torch.manual_seed(0)
    target = make_run(tmp_path / "target", models.create_model("small_cnn", "base", dataset="cifar10"))
    source = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"),
                      variant="float", algorithm="float")
    knobs_seen = []
    real = evaluate.load_run

    def load(run_dir: Path, name: str, device: torch.device) -> evaluate.LoadedRun:
        loaded = real(run_dir, name, device)
        if Path(run_dir).name == "float":
            state = loaded.model.hwsim_knobs
            loaded.model.register_forward_pre_hook(lambda m, i: knobs_seen.append((state.lambda_n, state.lambda_th)))
        return loaded

    monkeypatch.setattr(evaluate, "load_run", load)
    table = evaluate_run(target, ["pgd2"], n_images=8, device="cpu", eot=3, transfer_from=source, write=False)
    assert knobs_seen and set(knobs_seen) == {(1.0, 0.0)}  # FLOAT's robust setting: lambda_n 1 at lambda_th 0
    assert (table["eot"].iloc[0], table["n_draws"].iloc[0]) == (3, 1)  # a noisy source, a deterministic target


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hwsim.train import checkpoint
    from hwsim.train.evaluate import write_csv_atomic

    ckpt, csv = tmp_path / "last.pt", tmp_path / "eval.csv"
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "epoch": 1}, ckpt)
    with pytest.raises(Exception):  # torch.save cannot pickle a lambda: it fails after opening the file
        checkpoint.save_atomic({"format": checkpoint.FORMAT, "epoch": 2, "hook": lambda: 0}, ckpt)
    assert checkpoint.load(ckpt)["epoch"] == 1
    write_csv_atomic(pd.DataFrame({"ra": [50.0]}), csv)

    def half_written(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_text("ra\n")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_csv_atomic(pd.DataFrame({"ra": [40.0]}), csv)
    monkeypatch.undo()
    assert pd.read_csv(csv)["ra"].tolist() == [50.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "last.pt"]


def test_counts_refuse_zero_bools_and_floats() -> None:
    from hwsim.train.evaluate import parse_attack

    x, y = torch.rand(2, 1, 2, 2), torch.ones(2, dtype=torch.long)
    for value in (0, True, 2.0):
        with pytest.raises(HwsimError, match=f"restarts must be an integer >= 1, got {value!r}"):
            parse_attack("pgd1", 0.1, 0.1, value)
        with pytest.raises(HwsimError, match=f"noise draws must be an integer >= 1, got {value!r}"):
            score(nn.Flatten(), [(x, y)], [], n_draws=value)
        with pytest.raises(HwsimError, match=r"eot \(noise draws per gradient\) must be an integer >= 1"):
            attacks.pgd(nn.Flatten(), x, y, eot=value)


def test_knob_defaults_are_the_runs_own_and_missing_knobs_are_refused() -> None:
    s_lambda = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
    oat = knob_settings("oat", s_lambda, 128, 1.0, None, None, None, (1.0,))
    assert [k["lambda_n"] for k in oat] == list(s_lambda) and {k["lambda_th"] for k in oat} == {0.0}
    custom = knob_settings("oat", (0.0, 0.2, 0.7, 1.0), 128, 1.0, None, None, None, (1.0,))
    assert [k["lambda_n"] for k in custom] == [0.0, 0.2, 0.7, 1.0]
    flt = knob_settings("float", s_lambda, 128, 1.0, None, None, None, (1.0,))
    assert [(k["lambda_n"], k["lambda_th"]) for k in flt][:5] == [(0, 0), (0.2, 0), (0.7, 0), (1, 0), (0, 0.5)]
    assert len(flt) == 8
    slim = knob_settings("float-slim", s_lambda, 128, 1.0, [1], [0], [0.5, 1.0], (0.5, 1.0))
    assert [k["width"] for k in slim] == [0.5, 1.0]
    assert knob_settings("base", s_lambda, 128, 0.5, None, None, None, (1.0,)) == [
        {"lambda_n": 0.5, "lambda_th": 0.0, "width": 1.0}]
    with pytest.raises(HwsimError, match=r"lambda_n 0.7 is not in the run's training set S_lambda"):
        knob_settings("oat", s_lambda, 128, 1.0, [0, 0.7], None, None, (1.0,))
    assert len(knob_settings("oat", s_lambda, 1, 1.0, [0, 0.7], None, None, (1.0,))) == 2  # d = 1: any value
    for args, knob in ((("base", [0, 1], None, None), "lambda_n"), (("oat", None, [0.5], None), "lambda_th"),
                       (("float", None, None, [0.5]), "width")):
        variant, lam, th, width = args
        with pytest.raises(HwsimError, match=f"a '{variant}' run has no knob {knob}"):
            knob_settings(variant, s_lambda, 128, 1.0, lam, th, width, (1.0,))


def test_cli_refuses_a_knob_the_run_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "base", models.create_model("small_cnn", "base", dataset="cifar10"))
    for args, message in ((["--lambda-n", "0.5"], "'base' run has no knob lambda_n"),
                          (["--eot", "0"], "--eot must be >= 1"),
                          (["--sanity", "--lambda-n", "1"], "drop --lambda-n"),
                          (["--sanity", "--attack", "pgd5"], "drop --attack"),
                          (["--steps", "5"], "--steps applies to --sanity only"),
                          (["--attack", "pgd2,fgsm", "--restarts", "3"], "'fgsm' takes none")):
        with pytest.raises(SystemExit) as exc:
            main(["eval", str(run), "--device", "cpu", *args])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert not (run / "eval.csv").exists() and not (run / "sanity.csv").exists()


def test_cli_leaves_every_default_to_the_library_and_its_help_states_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    from hwsim.cli.evaluate import eval_command
    from hwsim.train import evaluate, sanity

    ev = inspect.signature(evaluate.evaluate_run).parameters
    sa = inspect.signature(sanity.sanity_run).parameters
    helps = {p.name: " ".join((p.help or "").split()) for p in eval_command.params}
    # noise_draws and eot default to None in the library (None: "not given", refused on deterministic runs) and
    # resolve to NOISE_DRAWS / EOT_DEFAULT there
    assert ev["noise_draws"].default is None and sa["eot"].default is None
    for option, default in (("batch_size", ev["batch_size"].default), ("noise_draws", evaluate.NOISE_DRAWS),
                            ("seed", ev["seed"].default), ("device", ev["device"].default),
                            ("checkpoint", ev["checkpoints"].default[0]), ("attack", ev["attack_names"].default[0]),
                            ("steps", sa["steps"].default),
                            ("restarts", f"{ev['restarts'].default}; --sanity: {sa['restarts'].default}"),
                            ("eot", f"{evaluate.EOT_DEFAULT}; autoattack {evaluate.EOT_AUTOATTACK}")):
        assert f"[default: {default}]" in helps[option], (option, helps[option])
    for name in ("batch_size", "noise_draws", "seed", "device"):
        assert sa[name].default == ev[name].default, name
    assert sa["checkpoint_name"].default == "last"

    calls = []
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *a, **kw: calls.append((a, kw)) or pd.DataFrame())
    monkeypatch.setattr(sanity, "sanity_run", lambda *a, **kw: calls.append((a, kw)) or pd.DataFrame())
    given = ["--restarts", "2", "--eot", "3", "--noise-draws", "4", "--batch-size", "7", "--seed", "9",
             "--device", "cpu", "--checkpoint", "best", "--n-images", "6"]
    for args in (["eval", "RUN"], ["eval", "RUN", "--sanity"], ["eval", "RUN", "--attack", "fgsm,pgd1", *given],
                 ["eval", "RUN", "--sanity", "--steps", "6", *given]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    options = {"restarts": 2, "eot": 3, "noise_draws": 4, "batch_size": 7, "seed": 9, "device": "cpu", "n_images": 6}
    assert calls == [(("RUN",), {"lambda_n": None, "lambda_th": None, "widths": None}),  # no default of its own
                     (("RUN",), {}),
                     (("RUN",), {"lambda_n": None, "lambda_th": None, "widths": None, "attack_names": ["fgsm", "pgd1"],
                                 "checkpoints": ["best"], **options}),
                     (("RUN",), {"checkpoint_name": "best", "steps": 6, **options})]


def test_cli_sanity_writes_the_table(tmp_path: Path) -> None:
    torch.manual_seed(0)
    run = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"),
                   variant="float", algorithm="float")
    result = CliRunner().invoke(cli, ["eval", str(run), "--sanity", "--steps", "1", "--restarts", "2", "--eot", "2",
                                      "--noise-draws", "2", "--n-images", "8", "--device", "cpu", "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(run / "sanity.csv")
    assert list(table["check"]) == ["more_steps", "restarts", "eps_sweep", "unbounded", "transfer", "eot", "fgsm"]
    assert set(table["verdict"]) <= {"pass", "FAIL", "skip"} and set(table["lambda_n"]) == {1.0}
    assert "this model at its plain setting" in table.set_index("check").loc["transfer", "values"]
    assert table.set_index("check").loc["eot", "verdict"] != "skip"  # lambda_n = 1 is randomised


# ------------------------------------------------------------------------------------------------ OAT sets

def test_oat_with_a_custom_lambda_set_at_d128_trains_and_evaluates(tmp_path: Path, monkeypatch) -> None:
    lambdas = (0.0, 0.2, 0.7, 1.0)  # FLOAT's OAT baseline: 0.7 is not in OAT's default set
    torch.manual_seed(0)
    model = models.create_model("small_cnn", "oat", dataset="cifar10", film_dim=128, lambdas=lambdas)
    film = next(m for m in model.modules() if hasattr(m, "encoding"))
    assert film.encoding.shape == (4, 128)
    assert torch.allclose(film.encoding @ film.encoding.T, torch.eye(4), atol=1e-5)
    # the default set keeps the encoding it always had (old checkpoints still load)
    default = models.create_model("small_cnn", "oat", dataset="cifar10", film_dim=128)
    assert torch.equal(next(m for m in default.modules() if hasattr(m, "encoding")).encoding[:1], film.encoding[:1])
    # one manual OAT step with per-sample lambdas from the custom set
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    lam = torch.tensor(lambdas).repeat(2)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with models.knobs(model, lambda_n=lam):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert math.isfinite(float(loss.detach()))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(HwsimError, match=r"lambda_n 0.1 is not in this model's S_lambda \(0.0, 0.2, 0.7, 1.0\)"):
        models.set_knobs(model, lambda_n=0.1)

    run = make_run(tmp_path / "oat", model, variant="oat", algorithm="oat", oat_lambdas=lambdas, film_dim=128)
    # build_model without the run's set cannot hold the checkpoint: a clear error, not a traceback
    with pytest.raises(HwsimError, match="the trainer must pass lambdas=config.oat_lambdas"):
        monkeypatch.setattr(trainer, "build_model", lambda c: models.create_model("small_cnn", "oat", film_dim=128))
        evaluate_run(run, ["pgd1"], n_images=8, device="cpu")
    # what the trainer's build_model does once it passes the run's S_lambda
    monkeypatch.setattr(trainer, "build_model", lambda c: models.create_model(
        c.model, c.variant, film_dim=c.film_dim, lambdas=c.oat_lambdas))
    table = evaluate_run(run, ["pgd1"], n_images=8, device="cpu")
    assert table["lambda_n"].tolist() == list(lambdas)  # defaults to the run's own set
    assert (table["n_draws"] == 1).all() and (table["ra"] <= table["ca"]).all()


def test_autoattack_on_a_randomised_setting_is_the_rand_version(tmp_path: Path, monkeypatch) -> None:
    from hwsim.train.evaluate import parse_attack

    assert parse_attack("autoattack", 0.1, 0.01).default_eot() == 20
    assert parse_attack("pgd5", 0.1, 0.01).default_eot() == 10
    torch.manual_seed(0)
    run = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"),
                   variant="float", algorithm="float")
    calls = []
    real = attacks.apgd

    def spy(*args, **kwargs):
        calls.append((kwargs["loss"], kwargs["eot"], kwargs["steps"]))
        return real(*args, **{**kwargs, "steps": 2})  # the same attack, cut short for the test

    monkeypatch.setattr(attacks, "apgd", spy)
    table = evaluate_run(run, ["autoattack"], lambda_n=[0, 1], lambda_th=[0], n_images=12, device="cpu",
                         noise_draws=2, eot=3)
    assert calls and calls[0] == ("ce", 3, 100)  # our APGD with EOT only on the randomised setting
    assert len(calls) <= 2 and all(c[1:] == (3, 100) for c in calls)
    assert list(table["eot"]) == [0, 3] and list(table["n_draws"]) == [1, 2]
    assert (table["ra"] <= table["ca"]).all()


def test_art_pgd_is_refused_on_a_randomised_setting_it_cannot_attack_with_eot(tmp_path) -> None:
    from hwsim.errors import HwsimError
    from hwsim.train.config import make_config
    from hwsim.train.evaluate import evaluate_run
    from hwsim.train.trainer import train

    run = train(make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 96, "val_size": 32,
                             "batch_size": 32, "attack_steps": 1, "epochs": 1, "device": "cpu",
                             "variant": "float", "algorithm": "float"}), tmp_path / "float")
    rows = evaluate_run(run, ["art-pgd2"], lambda_n=[0.0], lambda_th=[0.0], n_images=16, device="cpu")
    assert list(rows["eot"]) == [0]  # noise off: deterministic, ART's PGD is fine
    with pytest.raises(HwsimError, match="art-pgd2 has no EOT, so it cannot attack the randomised setting lambda_n=1"):
        evaluate_run(run, ["art-pgd2"], lambda_n=[1.0], lambda_th=[0.0], n_images=16, device="cpu")
    with pytest.raises(HwsimError, match="cannot attack the transfer source .*randomised at its most robust"):
        evaluate_run(run, ["art-pgd2"], lambda_n=[0.0], lambda_th=[0.0], n_images=16, device="cpu",
                     transfer_from=shutil.copytree(run, tmp_path / "copy"))  # ours deterministic, the source not
    with pytest.raises(HwsimError, match="is the evaluated run itself"):
        evaluate_run(run, ["pgd1"], lambda_n=[0.0], lambda_th=[0.0], n_images=16, device="cpu", transfer_from=run)
