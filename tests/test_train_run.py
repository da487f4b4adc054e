"""Training runs end to end on CPU: run directory, exact resume, eval table, and bad input through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hwsim.cli import cli, main
from hwsim.errors import HwsimError
from hwsim.train.config import make_config
from hwsim.train.evaluate import COLUMNS
from hwsim.train.trainer import train

TINY = {"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 192, "val_size": 32, "batch_size": 32,
        "attack_steps": 2, "epochs": 2, "device": "cpu"}


def test_resume_after_epoch_one_equals_uninterrupted_run(tmp_path: Path) -> None:
    config = make_config({**TINY, "variant": "float", "algorithm": "float"})
    train(config, tmp_path / "full")
    train(config, tmp_path / "cut", stop_after=1)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    train(config, tmp_path / "cut", resume=True)
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert full["epoch"] == cut["epoch"] == 2
    assert full["model"].keys() == cut["model"].keys()
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    assert full["optimizer"]["state"][0]["momentum_buffer"].equal(cut["optimizer"]["state"][0]["momentum_buffer"])
    lines = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and lines[1]["lr"] == pytest.approx(0.05)
    with pytest.raises(HwsimError, match="exists and is not empty"):
        train(config, tmp_path / "full")


@pytest.mark.parametrize("variant, algorithm, extra", [
    ("floats-i", "float", {"density": 0.3}),
    ("float-slim", "float", {}),
    ("floats-slim", "pgd-at", {"density": 0.5, "noise_lambda": 0.5}),
    ("base", "fast", {"schedule": "cyclic", "early_stop": True}),
    ("base", "free", {"replays": 2, "epochs": 6}),
    ("base", "trades", {"bullettrain": True}),
    ("base", "mart", {}),
    ("oat", "oat", {"bullettrain": True, "bt_steps": "0,2,1"}),
])
def test_resume_is_bit_identical_for_sparse_and_slim_runs(tmp_path: Path, variant: str, algorithm: str,
                                                           extra: dict) -> None:
    config = make_config({**TINY, "synthetic_size": 128, "epochs": 3, "variant": variant, "algorithm": algorithm,
                          **extra})
    train(config, tmp_path / "full")
    train(config, tmp_path / "cut", stop_after=1)
    train(config, tmp_path / "cut", resume=True, stop_after=1)
    train(config, tmp_path / "cut", resume=True)
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    assert full["epoch"] == cut["epoch"] == 3
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    for a, b in zip(full["hooks"], cut["hooks"]):  # sparse learning's growth momentum too
        for key in a.get("momentum", {}):
            assert torch.equal(a["momentum"][key], b["momentum"][key])
    full_lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    cut_lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    drop = ("epoch_time_s", "images_per_s")
    assert [{k: v for k, v in json.loads(line).items() if k not in drop} for line in full_lines] == \
        [{k: v for k, v in json.loads(line).items() if k not in drop} for line in cut_lines]
    if variant.endswith("slim"):
        assert set(json.loads(full_lines[0])["ra_by_width"]) == {"0.5", "1"}


def test_cli_train_then_eval_on_synthetic(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--model", "small_cnn", "--algorithm", "float", "--variant", "float",
            "--dataset", "synthetic", "--synthetic-size", "640", "--val-size", "64", "--batch-size", "32", "--attack-steps", "2",
            "--epochs", "1", "--eps", "4/255", "--step-size", "oat", "--lr", "0.1", "--device", "cpu",
            "--out", str(run)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["eps"] == pytest.approx(4 / 255) and config["step_size"] == pytest.approx(5 / 255 / 2)
    assert config["versions"]["torch"] == torch.__version__ and config["model_dataset"] == "cifar10"
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert set(metrics) >= {"epoch", "train_loss", "ca", "ra", "epoch_time_s", "images_per_s", "lr"}
    assert (run / "checkpoints" / "best.pt").is_file()
    result = CliRunner().invoke(cli, ["eval", str(run), "--attack", "pgd5,fgsm", "--lambda-n", "0,1",
                                      "--n-images", "60", "--format", "csv", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(run / "eval.csv")
    assert tuple(table.columns) == COLUMNS and len(table) == 8  # 2 lambda_n x 2 lambda_th x 2 attacks
    assert set(table["lambda_th"]) == {0.0, 0.5} and set(table["n_images"]) == {60}
    assert set(table["film_dim"]) == {0} and set(table["bn"]) == {"dual"}  # the network as built: no FiLM
    assert (table["ca"] > 30).all()  # chance is 10 %
    assert (table["ra"] <= table["ca"]).all()
    fgsm = table[table["attack"] == "fgsm"].iloc[0]
    assert fgsm["steps"] == 1 and fgsm["step_size"] == pytest.approx(4 / 255)


def test_base_model_eval_has_one_row_per_attack(tmp_path: Path) -> None:
    run = tmp_path / "base"
    train(make_config({**TINY, "epochs": 1, "pgd_lambda": 0.5}), run)
    from hwsim.train.evaluate import evaluate_run

    table = evaluate_run(run, ["pgd3", "cw3"], n_images=40, device="cpu")
    assert table["attack"].tolist() == ["pgd3", "cw3"] and set(table["lambda_n"]) == {0.5}
    with pytest.raises(HwsimError, match="unknown attack 'pgd'"):
        evaluate_run(run, ["pgd"], device="cpu")
    auto = evaluate_run(run, ["autoattack"], n_images=40, device="cpu")
    pgd = table[table["attack"] == "pgd3"].iloc[0]
    assert auto["ra"].iloc[0] <= auto["ca"].iloc[0] == pgd["ca"]
    assert auto["ra"].iloc[0] <= pgd["ra"] + 5  # 100-step APGD is at least about as strong as PGD-3


def test_nan_loss_names_epoch_and_step(tmp_path: Path) -> None:
    config = make_config({**TINY, "lr": 1e30, "momentum": 0.0, "epochs": 1})
    with pytest.raises(HwsimError, match=r"loss is not finite at epoch 1, step \d+"):
        train(config, tmp_path / "nan")


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--eps", "8/0", "--out", "X"], "eps must be"),
    (["train", "--algorithm", "float", "--out", "X"], "trains variants with noise-conditioned weights (float, floats-i"),
    (["train", "--algorithm", "bogus", "--out", "X"], "unknown; valid: fast, float, free, mart, oat, pgd-at, trades"),
    (["train", "--model", "small_cnn"], "--out RUN is required"),
    (["eval", "NO_SUCH_RUN"], "is not a run directory"),
    # values that overflowed, hung or crashed in torch: refused with their range
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--eps", "1e309"], "eps '1e309' is beyond the range of a float"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--lr", "nan"], "lr must be a number or a fraction like 8/255, got 'nan'"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--weight-decay", "-1"], "weight_decay must be a finite number >= 0, got -1.0"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--momentum", "5"], "momentum must be a number in [0, 1), got 5.0"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--seed", str(10**20)], "seed must be an integer in [0, 2**63 - 1]"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--synthetic-size", str(10**20)], "synthetic_size must be an integer in [1, 1,000,000]"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--epochs", str(10**30)], "epochs must be an integer in [1, 100,000]"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--attack-steps", str(10**20)], "attack_steps must be an integer in [1, 10,000]"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--bullettrain", "--bt-steps", "0,1000000000000000000000,1"], "bt_steps must be in [0, 10,000]"),
    # options the variant does not use: refused, not ignored
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--widths", "0.5,1"], "widths applies only to variants float-slim, oat-slim, floats-slim, not 'base'"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--film-dim", "64"], "film_dim applies only to variants oat, oat-slim, not 'base'"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--alpha-weight-decay"], "alpha_weight_decay applies only to variants float,"),
    (["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X", "--bn", "single"], "bn applies only to variants float, oat"),
])
def test_bad_cli_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_config_file_values_are_checked_like_options(tmp_path: Path) -> None:
    from hwsim.train.config import load_config_file
    from hwsim.train.evaluate import check_transfer_source, parse_attack
    from hwsim.train.trainer import _resolve_device

    def refused(values: dict, message: str) -> None:
        with pytest.raises(HwsimError, match=message):
            make_config({**TINY, **values}, source="run.toml")

    refused({"lr": math.nan}, r"run.toml: lr must be a finite number > 0, got nan")  # it trained with lr NaN
    refused({"milestones": [5]}, "milestones apply only to schedule multistep, not cosine")
    refused({"schedule": "multistep", "epochs": 10, "milestones": [-5, 10**21]},
            r"milestones must be increasing epochs in \[1, 10\]")
    refused({"film_dim": 64}, "film_dim applies only to variants oat")
    make_config({**TINY, "schedule": "multistep", "epochs": 10, "milestones": [3, 7]})
    binary = tmp_path / "utf.toml"
    binary.write_bytes(b"epochs = 3\n# \xff\xfe\n")
    with pytest.raises(HwsimError, match=f"config file {binary} is not valid TOML"):
        load_config_file(binary)
    with pytest.raises(HwsimError, match="device 'tpu' unknown; valid: auto, cpu, cuda, cuda:N"):
        _resolve_device("tpu", 0)
    with pytest.raises(HwsimError, match=r"the steps K of pgd10000000000 must be an integer in \[1, 10,000\]"):
        parse_attack("pgd10000000000", 8 / 255, 2 / 255)
    source = tmp_path / "digits"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({**make_config({**TINY, "dataset": "mnist"}).to_dict()}))
    with pytest.raises(HwsimError, match="was trained on mnist \\(mnist inputs\\), this run on synthetic "
                                         "\\(cifar10 inputs\\): attacks do not transfer"):
        check_transfer_source(make_config(TINY), source)


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epochs = 3\nlearning_rate = 0.1\n")
    for path, message in [(bad, "is not valid TOML"), (unknown, "unknown config key(s) learning_rate")]:
        with pytest.raises(SystemExit) as exc:
            main(["train", "--config", str(path), "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and str(path) in err and message in err and err.count("\n") == 1



def test_slim_run_is_evaluated_at_every_trained_width_and_refuses_others(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "slim"
    train(make_config({**TINY, "epochs": 1, "variant": "float-slim", "algorithm": "float", "lr": 0.05}), run)
    metrics = json.loads((run / "metrics.jsonl").read_text())
    assert set(metrics["ca_by_width"]) == {"0.5", "1"} and metrics["ca"] == metrics["ca_by_width"]["1"]
    assert metrics["macs_per_image"]["0.5"] < metrics["macs_per_image"]["1"]
    result = CliRunner().invoke(cli, ["eval", str(run), "--attack", "pgd2", "--width", "0.5,1", "--lambda-n", "0",
                                      "--n-images", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(set(pd.read_csv(run / "eval.csv")["width"])) == [0.5, 1.0]
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--width", "0.75", "--device", "cpu"])
    assert exc.value.code == 2 and "width 0.75 is not one of this model's widths" in capsys.readouterr().err


@pytest.mark.parametrize("values, message", [
    ({"algorithm": "pgd-at", "replays": 4}, "replays applies only to --algorithm free, not pgd-at"),
    ({"algorithm": "free", "bullettrain": True}, "bullettrain applies only to --algorithm pgd-at or float"),
    ({"algorithm": "pgd-at", "bt_steps": "0,7,1"}, "bt_steps applies only with bullettrain"),
    ({"algorithm": "oat", "variant": "oat", "beta": 3}, "beta applies only to --algorithm trades or mart"),
    ({"algorithm": "mart", "fast_step": 2}, "fast_step applies only to --algorithm fast"),
    ({"algorithm": "float", "variant": "float", "pgd_lambda": 0.5}, "pgd_lambda applies only to --algorithm pgd-at"),
    ({"algorithm": "pgd-at", "noise_lambda": 0.5}, "noise_lambda applies only to --algorithm pgd-at on a noise"),
    ({"algorithm": "pgd-at", "prune_rate": 0.3}, "prune_rate applies only to masked variants"),
    ({"algorithm": "free", "variant": "float-slim"}, "free does not train slimmable variants"),
    ({"algorithm": "pgd-at", "bullettrain": True, "bt_steps": "0,7"}, "bt_steps must be three integers"),
])
def test_options_an_algorithm_does_not_use_are_refused(values: dict, message: str) -> None:
    with pytest.raises(HwsimError, match=message):
        make_config({**TINY, **values})


def test_paper_defaults_resolved_per_algorithm_and_model() -> None:
    from hwsim.train.attacks import oat_step_size

    assert make_config({"algorithm": "oat", "variant": "oat"}).step_size == pytest.approx(oat_step_size(8 / 255, 7))
    assert make_config({"algorithm": "float", "variant": "float"}).step_size == pytest.approx(10 / 255 / 7)
    assert make_config({"algorithm": "pgd-at"}).step_size == pytest.approx(2 / 255)
    assert make_config({"algorithm": "pgd-at", "step_size": "1/255"}).step_size == pytest.approx(1 / 255)
    assert make_config({"algorithm": "fast"}).attack_mode == "train"
    assert make_config({"algorithm": "free"}).attack_mode == "train"
    assert make_config({"algorithm": "trades"}).attack_mode == "eval"
    assert make_config({"model": "wrn16_8"}).dropout == 0.3 and make_config({"model": "resnet34"}).dropout == 0.0
    assert make_config({"algorithm": "mart", "bullettrain": True, "attack_steps": 10}).bt_steps == (0, 10, 1)


def test_no_weight_decay_on_alpha_unless_asked() -> None:
    from hwsim.train.trainer import build_model, build_optimizer

    config = make_config({**TINY, "variant": "float", "algorithm": "float"})
    model = build_model(config)
    groups = build_optimizer(config, model).param_groups
    alphas = {id(p) for n, p in model.named_parameters() if n.endswith("alpha")}
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0] and {id(p) for p in groups[1]["params"]} == alphas
    config = make_config({**TINY, "variant": "float", "algorithm": "float", "alpha_weight_decay": True})
    assert [g["weight_decay"] for g in build_optimizer(config, build_model(config)).param_groups] == [5e-4, 5e-4]


def test_cyclic_schedule_is_one_cycle_per_batch(tmp_path: Path) -> None:
    config = make_config({**TINY, "algorithm": "fast", "schedule": "cyclic", "epochs": 5, "lr": 0.2})
    run = train(config, tmp_path / "run")  # (192 - 32 held out) / 32 = 5 batches per epoch
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the lr of each epoch's first batch: interp((step + 1) / 5, [0, 2, 5], [0, 0.2, 0])
    want = [float(np.interp((5 * e + 1) / 5, [0, 2, 5], [0, 0.2, 0])) for e in range(5)]
    assert lrs == pytest.approx(want)


def test_fast_early_stop_keeps_the_previous_epoch_as_best(tmp_path: Path, monkeypatch) -> None:
    """The shipped ``Fast.end_epoch`` rule decides; only its attack is replaced: epochs 1 and 2 probe the clean
    batch, epoch 3 an attack over the whole image range (eps 1), which no model survives (catastrophic)."""
    from hwsim.train import algorithms

    real = algorithms.probe_pgd
    calls = []

    def probe(model, x, y, eps, step_size, steps):
        calls.append(model.training)
        if len(calls) < 3:
            return x.clone()
        return real(model, x, y, 1.0, 0.25, 20)

    monkeypatch.setattr(algorithms, "probe_pgd", probe)
    run = train(make_config({**TINY, "algorithm": "fast", "early_stop": True, "epochs": 4, "lr": 0.05}),
                tmp_path / "run")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    accs = [m["probe_pgd_acc"] for m in lines]
    assert calls == [True, True, True]  # train mode, once per epoch
    assert [m["epoch"] for m in lines] == [1, 2, 3] and "catastrophic" in lines[-1]["stopped"]
    assert accs[1] - accs[0] >= -20 and accs[2] - accs[1] < -20  # so epoch 3 and only it stops the run
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2
    with pytest.raises(HwsimError, match="stopped early"):
        train(make_config({**TINY}), run, resume=True)


def test_run_directory_is_locked_against_a_second_run(tmp_path: Path) -> None:
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    with (run / ".lock").open("w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(HwsimError, match=r"in use by another hwsim train \(pid 4242\)"):
            train(make_config({**TINY, "epochs": 1}), run)
    assert (run / ".lock").exists() and not (run / "config.json").exists()


def test_unwritable_out_and_failed_start_leave_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", str(blocker / "run")])
    assert exc.value.code == 2 and "cannot create run directory" in capsys.readouterr().err
    with pytest.raises(HwsimError, match="larger than the"):
        train(make_config({**TINY, "batch_size": 4096}), tmp_path / "big")
    assert not (tmp_path / "big").exists()


def test_unreadable_last_checkpoint_offers_resume_from_best(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(make_config({**TINY, "epochs": 2}), run, stop_after=1)
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(run), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "last.pt cannot be read" in err and "--resume-from best" in err
    assert "weights_only=False" not in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(run), "--resume-from", "best", "--device", "cpu"])
    assert exc.value.code == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert "epoch 2/2" in capsys.readouterr().err  # one line per epoch on stderr, terminal or not


def test_ctrl_c_says_how_to_resume(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    import hwsim.train.trainer as trainer

    run = tmp_path / "run"
    train(make_config({**TINY, "epochs": 2}), run, stop_after=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(run), "--device", "cpu"])
    assert exc.value.code == 130
    assert f"Continue with: hwsim train --resume {run}" in capsys.readouterr().err


def test_best_checkpoint_is_the_running_maximum_of_validation_ra(tmp_path: Path, monkeypatch) -> None:
    import hwsim.train.trainer as trainer

    ras = iter([50.0, 70.0, 60.0, 65.0])  # a "best = last improvement" bug would keep epoch 4 (65 > 60)
    monkeypatch.setattr(trainer, "validate", lambda *a, widths=(1.0,), **k: {w: (90.0, next(ras)) for w in widths})
    run = train(make_config({**TINY, "epochs": 4}), tmp_path / "run")
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["best_ra"] == 70.0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["best_ra"] == 70.0


def test_validation_attacks_at_the_robust_knobs_and_scores_clean_at_the_clean_knobs() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from hwsim.train.trainer import build_algorithm, validate
    from models import create_model

    torch.manual_seed(0)
    model = create_model("small_cnn", "float").eval()
    seen: list[tuple[bool, float]] = []  # (grad enabled = attack forward, lambda_n)
    model.register_forward_pre_hook(lambda m, i: seen.append((torch.is_grad_enabled(), m.hwsim_knobs.lambda_n)))
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    loader = DataLoader(TensorDataset(images, torch.randint(0, 10, (8,))), batch_size=8)
    algorithm = build_algorithm(make_config({**TINY, "variant": "float", "algorithm": "float"}))
    validate(model, algorithm, loader, torch.device("cpu"))
    assert seen[0] == (False, 0.0)  # CA: clean knobs
    assert all(lam == 1.0 for _, lam in seen[1:]) and len(seen) == 1 + 2 + 1  # RA: attack + scoring at lambda 1
    assert model.hwsim_knobs.lambda_n == 0.0


def test_oat_trains_and_evaluates_with_its_own_lambda_set_at_d128(tmp_path: Path) -> None:
    from hwsim.train.evaluate import evaluate_run

    run = train(make_config({**TINY, "epochs": 1, "variant": "oat", "algorithm": "oat", "film_dim": 128,
                             "oat_lambdas": "0,0.2,0.7,1"}), tmp_path / "oat")
    table = evaluate_run(run, ["pgd2"], n_images=32, device="cpu")
    assert sorted(table["lambda_n"]) == [0.0, 0.2, 0.7, 1.0]
    with pytest.raises(HwsimError, match="oat_lambdas must be distinct"):
        make_config({**TINY, "variant": "oat", "algorithm": "oat", "oat_lambdas": "0,1,1"})


def test_resume_refuses_a_config_file_it_would_ignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text("epochs = 9\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(tmp_path), "--config", str(config)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.strip().endswith("drop --config")
