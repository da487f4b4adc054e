"""The bad inputs of issue 20: each exits 2 with one line naming the value and what is allowed, or is told."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hwsim.cli import main
from hwsim.errors import HwsimError
from hwsim.train.config import make_config

BASE = ["train", "--model", "small_cnn", "--dataset", "synthetic", "--out", "X"]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.mark.parametrize("extra, message", [
    # given by the user: refused even at the default value (click's parameter source, not the value)
    (["--beta", "6"], "beta applies only to --algorithm trades or mart, not pgd-at"),
    (["--replays", "8"], "replays applies only to --algorithm free, not pgd-at"),
    (["--no-early-stop"], "early_stop applies only to --algorithm fast, not pgd-at"),
    (["--bt-p", "0.9"], "bt_p applies only with bullettrain"),
    (["--algorithm", "fast", "--lambda", "1"], "pgd_lambda applies only to --algorithm pgd-at, not fast"),
    # values beyond float32 / that attack nothing / that cannot split
    (["--lr", "1e308"], "lr must be a number in (0, 1e+30], got 1e+308"),
    (["--algorithm", "trades", "--beta", "1e308"], "beta must be a number in [0, 1000], got 1e+308"),
    (["--bullettrain", "--bt-steps", "0,0,0"], "bt_steps 0,0,0 attacks no sample: at least one of N_O, N_B, N_R"),
    (["--synthetic-size", "1"], "synthetic_size must be an integer in [5, 1,000,000], got 1"),
    (["--data-dir", "data"], "data_dir applies only to the data sets read from files (cifar10, cifar100, svhn, "
                             "stl10), not synthetic"),
    (["--synthetic-size", "200", "--val-size", "41"], "val_size 41 is more than a fifth of the 200 training "
                                                      "images of synthetic; give at most 40"),
    (["--stop-after", "0"], "stop_after must be an integer in [1, 100,000]"),
])
def test_bad_train_input_exits_2_with_one_line(extra: list[str], message: str, tmp_path: Path, monkeypatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli([*BASE, *extra], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "X").exists()


def test_config_file_options_are_refused_at_their_default_and_milestones_must_be_whole(tmp_path: Path) -> None:
    from hwsim.train.trainer import train_from_options

    for text, message in [("beta = 6.0\n", "beta applies only to --algorithm trades or mart, not pgd-at"),
                          ('schedule = "multistep"\nmilestones = [1.7]\n', "milestones must be a list of integers"),
                          ('schedule = "multistep"\nmilestones = ["2.5"]\n', "milestones must be a list of integers"),
                          ("milestones = [50, 150]\n", "milestones apply only to schedule multistep, not cosine")]:
        (tmp_path / "run.toml").write_text(text)
        with pytest.raises(HwsimError, match=message.replace("[", r"\[")):
            train_from_options({"model": "small_cnn", "dataset": "synthetic"}, tmp_path / "run",
                               config_file=tmp_path / "run.toml")
        assert not (tmp_path / "run").exists()
    config = make_config({"schedule": "multistep", "milestones": [2, "3"], "epochs": 4}, given=True)
    assert config.milestones == (2, 3)


def test_default_val_size_is_capped_and_recorded_truly(tmp_path: Path) -> None:
    from hwsim.train.trainer import train

    config = make_config({"model": "small_cnn", "dataset": "synthetic", "synthetic_size": 160, "batch_size": 32,
                          "attack_steps": 1, "epochs": 1, "device": "cpu"}, given=True)
    assert config.val_size == 32  # 160 // 5, not the default 1000
    train(config, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["val_size"] == 32
    # a saved config of an older run (val_size 1000 recorded) still loads, capped
    assert make_config({"dataset": "synthetic", "synthetic_size": 160, "val_size": 1000}).val_size == 32


def test_masks_mismatch_says_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models import create_model

    own = create_model("small_cnn", "floats-i").state_dict()  # masks features.4 (32x16x3x3), features.8
    path = tmp_path / "other.pt"
    torch.save({"model": {**own, "features.8.weight_mask": torch.ones(64, 16, 3, 3)}}, path)
    code, _, err = cli(["count", "small_cnn", "--variant", "floats-i", "--masks", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "mask features.8.weight_mask has shape (64, 16, 3, 3), the model's (64, 32, 3, 3) (1 of 2 masks" in err
    renamed = {k.replace("features.4", "features.5"): v for k, v in own.items()}  # 2 masks each, named apart
    torch.save({"model": renamed}, path)
    code, _, err = cli(["count", "small_cnn", "--variant", "floats-i", "--masks", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert ("1 of its 2 masks are not in the model (features.5.weight_mask); 1 of the model's 2 masks are "
            "missing (features.4.weight_mask)") in err


FACTORY = "import torch\n\ndef make():\n{body}    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), " \
          "torch.nn.LazyLinear(10))\n"


def run_hwsim(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """hwsim in its own process: a factory that ends the process must not end the test session."""
    return subprocess.run([sys.executable, "-c", "from hwsim.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_a_directory_as_the_factory_file_is_named_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nets.py").mkdir()
    code, _, err = cli(["count", f"{tmp_path / 'nets.py'}:make"], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a directory; give a Python file: FILE.py:make" in err


def test_a_factory_calling_os_exit_is_one_line_and_its_prints_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "quits.py").write_text(FACTORY.format(body="    import os\n    os._exit(3)\n"))
    done = run_hwsim(["count", "quits.py:make"], tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "os._exit(3) called inside hwsim's process" in done.stderr and "quits.py:make" in done.stderr
    (tmp_path / "chatty.py").write_text("print('loading chatty')\n" + FACTORY.format(
        body="    print('building', flush=True)\n    import os\n    os.write(1, b'from C\\n')\n"))
    done = run_hwsim(["count", "chatty.py:make", "--format", "json"], tmp_path)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)  # stdout is the result alone
    assert parsed and "loading chatty" in done.stderr and "building" in done.stderr and "from C" in done.stderr


# ------------------------------------------------------------------------------------------------ declarations

def test_an_algorithms_declared_options_decide_what_it_accepts_and_receives() -> None:
    from hwsim.train._checks import Option
    from hwsim.train.algorithms import ALGORITHMS, Algorithm, AttackSettings, register_algorithm
    from hwsim.train.trainer import build_algorithm

    @register_algorithm("replayer-test")
    class Replayer(Algorithm):  # declares one option another algorithm (free) uses too
        OPTIONS = (Option("replays", 8, low=1, high=1_000),)

        def __init__(self, attack: AttackSettings, replays: int = 8) -> None:
            super().__init__(attack)
            self.replays = replays

    try:
        config = make_config({"algorithm": "replayer-test", "replays": 3}, given=True)
        assert build_algorithm(config).replays == 3  # the trainer passes what the class declares
        with pytest.raises(HwsimError, match="replays applies only to --algorithm free or replayer-test, not "
                                             "pgd-at"):
            make_config({"algorithm": "pgd-at", "replays": 8}, given=True)
        with pytest.raises(HwsimError, match=r"replays must be an integer in \[1, 1,000\], got 0"):
            make_config({"algorithm": "replayer-test", "replays": 0}, given=True)
        with pytest.raises(HwsimError, match="beta applies only to --algorithm trades or mart, not replayer-test"):
            make_config({"algorithm": "replayer-test", "beta": 6}, given=True)
    finally:
        del ALGORITHMS["replayer-test"]


def test_an_algorithms_declared_attack_defaults_fill_the_config() -> None:
    from hwsim.train.algorithms import ALGORITHMS, Algorithm, register_algorithm
    from hwsim.train.options import AttackDefaults

    @register_algorithm("attack-defaults-test")
    class Declares(Algorithm):
        ATTACK = AttackDefaults(eps=0.05, step_size="oat", steps=4, mode="train")

    try:
        config = make_config({"algorithm": "attack-defaults-test"})
        # OAT's step min(1.25 * 0.05, 0.05 + 4/255) / 4 = 0.0625 / 4 (1.25 eps is the smaller)
        assert (config.eps, config.attack_steps, config.attack_mode) == (0.05, 4, "train")
        assert config.step_size == pytest.approx(0.015625)
        given = make_config({"algorithm": "attack-defaults-test", "eps": "8/255", "step_size": 0.01})
        assert (given.eps, given.step_size, given.attack_steps) == (8 / 255, 0.01, 4)
        assert make_config({}).attack_steps == 7 and make_config({}).eps == 8 / 255  # pgd-at keeps the usual
    finally:
        del ALGORITHMS["attack-defaults-test"]


def test_import_and_help_of_hwsim_train_do_not_import_torch() -> None:
    # the flags are built from hwsim.train.options, which must stay torch-free (hwsim --help is fast)
    import subprocess
    import sys

    code = ("import sys\n"
            "import hwsim.cli.train\n"
            "assert 'torch' not in sys.modules, 'import hwsim.cli.train imported torch'\n"
            "from hwsim.cli import main\n"
            "try:\n"
            "    main(['train', '--help'])\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "try:\n"
            "    main(['--help'])\n"  # lists every command, importing each command's module
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "TORCH False" in done.stderr and "--bt-gamma" in done.stdout and "\n  train " in done.stdout, (
        done.stdout[-500:], done.stderr)


def _train_help() -> dict[str, str]:
    from hwsim.cli.train import train_command

    return {p.opts[0]: " ".join((p.help or "").split()) for p in train_command.params}


def test_the_cli_help_states_each_declared_default_range_and_user() -> None:
    # expected values written from the papers (TRADES / MART: beta 6, eps 0.031, step 0.007, PGD-10; Free: m 8;
    # Fast: 1.25 eps; BulletTrain: p 0.9, gamma 0.8; OAT reference --lambda_choices), not read from the module
    helps = _train_help()
    expected = {
        "--lambda": "pgd-at: weight of the adversarial loss in FLOAT Eq. 3, 1 being Madry's PGD-AT (default 1; in "
                    "[0, 1]).",
        "--beta": "trades, mart: weight of the KL term (default 6; in [0, 1000]).",
        "--replays": "free: minibatch replays m; --epochs E runs ceil(E/m) passes (default 8; in [1, 1,000]).",
        "--fast-step": "fast: FGSM step as a multiple of eps (default 1.25; in (0, 100]).",
        "--early-stop": "(default off).",
        "--noise-lambda": "(default noise off; in [0, 1]).",
        "--bt-steps": "(default 0,k,1).",
        "--bt-p": "(default 0.9; in [0, 1)).",
        "--bt-gamma": "(default 0.8; in (0, 1]).",
        "--prune-rate": "(default 0.5; in [0, 1]).",
        "--oat-lambdas": "oat: comma-separated S_lambda (default 0,0.1,0.2,0.3,0.4,1).",
        "--eps": "(default 0.031 for trades and mart, 8/255 otherwise).",
        "--step-size": "(default oat for float and oat, 0.007 for trades and mart, 2/255 otherwise).",
        "--attack-steps": "(default 10 for trades and mart, 7 otherwise).",
        "--attack-mode": "(default train for fast and free, eval otherwise).",
        "--algorithm": "pgd-at, float, oat, fast, free, trades, mart (default pgd-at).",
        "--bullettrain": "for pgd-at, float, oat, trades, mart.",
    }
    for flag, text in expected.items():
        assert helps[flag].endswith(text), (flag, helps[flag])


def test_every_declared_option_has_its_flag_and_the_flag_checks_its_range(tmp_path: Path, monkeypatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from hwsim.train.algorithms import ALGORITHMS
    from hwsim.train.bullettrain import BulletTrain
    from hwsim.train.options import declared
    from hwsim.train.sparse import SparseLearning

    helps = _train_help()
    # what the classes read (the config loader's source) is what the CLI offers, flag by flag
    for option in declared([*ALGORITHMS.values(), BulletTrain, SparseLearning]).values():
        assert f"(default {option.shown_default()}" in helps[option.cli_flag], option
    monkeypatch.chdir(tmp_path)
    for extra, message in [
            (["--algorithm", "free", "--replays", "0"], "replays must be an integer in [1, 1,000], got 0"),
            (["--algorithm", "free", "--replays", "many"], "replays must be an integer, got 'many'"),
            (["--bullettrain", "--bt-p", "1"], "bt_p must be a number in [0, 1), got 1.0"),
            (["--algorithm", "trades", "--beta", "x/2"], "beta must be a number or a fraction like 8/255, got 'x/2'"),
            (["--algorithm", "fast", "--fast-step", "0"], "fast_step must be a number in (0, 100], got 0.0")]:
        code, _, err = cli([*BASE, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)
        assert not (tmp_path / "X").exists()
    # checked when the flag is parsed (the message names the flag), not only when the config is built
    code, _, err = cli([*BASE, "--algorithm", "free", "--replays", "0"], capsys)
    assert "Invalid value for '--replays': replays must be an integer in [1, 1,000], got 0" in err, err
    # the flag --lambda sets the field pgd_lambda; --resume names the flag the user gave
    code, _, err = cli(["train", "--resume", "R", "--lambda", "0.5"], capsys)
    assert code == 2 and "--resume reads the config from the run directory; drop --lambda" in err, err


def test_synthetic_size_on_a_data_set_of_files_is_refused_when_given(tmp_path: Path, monkeypatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["train", "--model", "small_cnn", "--dataset", "mnist", "--synthetic-size", "2000", "--out",
                        "X"], capsys)
    assert code == 2 and err.count("\n") == 1 and "synthetic_size applies only to dataset synthetic, not mnist" in err


def test_a_declared_number_in_a_config_file_takes_a_fraction_like_a_flag() -> None:
    # the loader reads which options are numbers from their declarations (type "number")
    assert make_config({"algorithm": "trades", "beta": "12/2"}, given=True).beta == 6.0
    config = make_config({"bullettrain": True, "bt_p": "1/2", "bt_gamma": "3/4"}, given=True)
    assert (config.bt_p, config.bt_gamma) == (0.5, 0.75)
    with pytest.raises(HwsimError, match="fast_step must be a number or a fraction like 8/255, got 'x'"):
        make_config({"algorithm": "fast", "fast_step": "x"}, given=True)
