"""Options that cannot apply are refused in one line (exit 2), before any work (issue 22, new user's findings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from report_helpers import write_run
from test_evaluate import make_run

import models
from hwsim.cli import main
from hwsim.errors import HwsimError
from hwsim.report import build_report

pytestmark = pytest.mark.usefixtures("one_thread")


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    return err


def test_noise_options_on_deterministic_settings_and_names_given_twice(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    base = make_run(tmp_path / "base", models.create_model("small_cnn", "base", dataset="cifar10"))
    flt = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"), variant="float",
                   algorithm="float")
    common = ["--device", "cpu", "--n-images", "4"]
    for run, extra, message in (
            (base, ["--eot", "3"], "--eot applies to randomised settings (float* variants at lambda_n > 0); a 'base' "
                                   "run is deterministic: drop --eot"),
            (base, ["--noise-draws", "3"], "a 'base' run is deterministic: drop --noise-draws"),
            (base, ["--sanity", "--eot", "3"], "a 'base' run is deterministic: drop --eot"),
            (flt, ["--lambda-n", "0", "--lambda-th", "0", "--eot", "2"],
             "lambda_n 0 of a 'float' run is deterministic: drop --eot"),
            (base, ["--checkpoint", "last,last"], "checkpoint 'last' is given twice"),
            (base, ["--attack", "fgsm,pgd1,fgsm"], "attack 'fgsm' is given twice"),
            (base, ["--transfer-from", str(base)], "is the evaluated run itself"),
            (flt, ["--sanity", "--transfer-from", str(flt)], "is the evaluated run itself")):
        assert message in _refused(["eval", str(run), *common, *extra], capsys), extra
    assert not (base / "eval.csv").exists() and not (flt / "eval.csv").exists() and not (flt / "sanity.csv").exists()
    # where a setting is randomised, or the transfer source is, --eot applies
    for run, extra in ((flt, ["--lambda-n", "0,1", "--lambda-th", "0", "--eot", "1", "--noise-draws", "2"]),
                       (base, ["--eot", "1", "--transfer-from", str(flt)])):
        with pytest.raises(SystemExit) as exc:
            main(["eval", str(run), *common, "--attack", "fgsm", *extra])
        assert exc.value.code == 0, capsys.readouterr().err


def test_report_refuses_a_run_given_twice(tmp_path: Path) -> None:
    run = write_run(tmp_path, "pgd", variant="base", algorithm="pgd-at", points=[(1.0, 80.0, 40.0)], train_lambda=1.0)
    with pytest.raises(HwsimError, match=r"run '.*pgd/' is given twice \(also as '.*pgd'\)"):
        build_report([str(run), str(run) + "/"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
