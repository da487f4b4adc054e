"""Training runs end to end on CPU: run directory, exact resume, eval table, and bad input through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

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
    (["train", "--algorithm", "float", "--out", "X"], "trains float* variants"),
    (["train", "--algorithm", "bogus", "--out", "X"], "unknown; valid: float, oat, pgd-at"),
    (["train", "--model", "small_cnn"], "--out RUN is required"),
    (["eval", "NO_SUCH_RUN"], "is not a run directory"),
])
def test_bad_cli_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


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
