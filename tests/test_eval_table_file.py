"""eval.csv on disk: a damaged file is refused in one line, a row cut short is dropped (eval) or named (report),
and rows of evaluations with other EOT draws, scoring passes or images are kept side by side, the report taking
the strongest (issues 20 and 22)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from report_helpers import write_run
from test_evaluate import make_run

import models
from hwsim.errors import HwsimError
from hwsim.report.join import read_run
from hwsim.train.evaluate import evaluate_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _base_run(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return make_run(tmp_path / "base", models.create_model("small_cnn", "base", dataset="cifar10"))


def test_random_bytes_in_eval_csv_are_refused_before_any_work_and_left_alone(tmp_path: Path) -> None:
    run = _base_run(tmp_path)
    junk = os.urandom(3000) + b"\x00\xff\xfe"
    (run / "eval.csv").write_bytes(junk)
    with pytest.raises(HwsimError, match=r"eval\.csv is not (a readable )?(an )?evaluation table.*move it aside") as err:
        evaluate_run(run, ["fgsm"], n_images=4, device="cpu")
    assert "\n" not in str(err.value)
    assert (run / "eval.csv").read_bytes() == junk  # nothing written over it


def test_a_row_cut_short_is_dropped_with_a_line_and_the_rest_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _base_run(tmp_path)
    evaluate_run(run, ["fgsm", "pgd1"], n_images=4, device="cpu")
    text = (run / "eval.csv").read_text()
    (run / "eval.csv").write_text(text[: text.rindex(",pgd1,") + 30])  # the pgd1 row cut after a few cells
    capsys.readouterr()
    evaluate_run(run, ["cw1"], n_images=4, device="cpu")
    err = capsys.readouterr().err
    assert "dropped 1 incomplete or damaged row(s) (2;" in err
    saved = pd.read_csv(run / "eval.csv")
    assert list(saved["attack"]) == ["fgsm", "cw1"] and saved["ra"].notna().all()


def test_the_report_names_a_row_cut_short_instead_of_an_empty_frontier(tmp_path: Path) -> None:
    run = write_run(tmp_path, "float", variant="float", algorithm="float", points=[(0.0, 90.0, 10.0), (1.0, 70.0, 40.0)])
    text = (run / "eval.csv").read_text().rstrip("\n")
    (run / "eval.csv").write_text(text[: text.rindex(",")] + "\n")  # the last cell (ra) of the last row gone
    with pytest.raises(HwsimError, match=r"row 2: column ra is empty"):
        read_run(run)


def test_rows_of_another_eot_are_kept_and_the_report_takes_the_strongest(tmp_path: Path) -> None:
    torch.manual_seed(0)
    run = make_run(tmp_path / "float", models.create_model("small_cnn", "float", dataset="cifar10"), variant="float",
                   algorithm="float")
    options = dict(lambda_n=[1], lambda_th=[0], n_images=6, device="cpu", noise_draws=2)
    evaluate_run(run, ["pgd1"], eot=3, **options)
    evaluate_run(run, ["pgd1"], eot=1, **options)
    evaluate_run(run, ["pgd1"], eot=1, **options)  # the same evaluation again replaces its own row
    saved = pd.read_csv(run / "eval.csv")
    assert sorted(saved["eot"]) == [1, 3]
    # the report: one row, the eot = 3 one, whatever the order in the file
    saved.loc[saved["eot"] == 3, "ra"] = 12.5  # mark it
    saved.loc[saved["eot"] == 1, "ra"] = 30.0
    for order in (saved, saved.iloc[::-1]):
        order.to_csv(run / "eval.csv", index=False)
        rows = read_run(run)
        assert list(rows["ra"]) == [12.5] and list(rows["eot"]) == [3]
