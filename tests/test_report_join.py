"""The join of eval tables with cost: right rows, each cost computed once, reference CSV checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from report_helpers import FakeCostFn, standard_runs, write_run

from hwsim.errors import HwsimError
from hwsim.report.join import (COST_AXES, check_cost_axis, join, read_reference, select_points, series_costs)

HW = object()  # any hardware object: the join passes it through untouched


def test_cost_columns_attached_to_the_right_rows(tmp_path: Path):
    fake = FakeCostFn()
    df = join(standard_runs(tmp_path), hw=HW, cost_fn=fake)
    assert len(df) == 1 + 1 + 4 + 4
    by_variant = df.groupby("variant")["memory_bytes"].unique()
    assert list(by_variant["base"]) == [1000]
    assert list(by_variant["float"]) == [1010]
    assert list(by_variant["oat"]) == [1500]
    oat = df[df["variant"] == "oat"]
    assert (oat["norm_memory"] == 1.5).all()
    assert (oat["norm_memory_max"] == 1.0).all()
    assert (df[df["variant"] == "float"]["norm_delay"] == 1.2).all()
    assert df["macs"].dtype == "int64"
    assert set(df["series"]) == {"PGD-AT", "FLOAT", "OAT"}


def test_each_distinct_cost_computed_once_with_the_exact_key(tmp_path: Path):
    fake = FakeCostFn()
    runs = standard_runs(tmp_path)
    runs.append(write_run(tmp_path, "slim", variant="float-slim", algorithm="float", width=0.5,
                          points=[(0.0, 90.0, 10.0), (1.0, 85.0, 40.0)]))
    df = join(runs, hw=HW, cost_fn=fake)
    keys = [c[:7] for c in fake.calls]
    assert len(keys) == len(set(keys))  # no key twice
    assert set(keys) == {
        ("small_cnn", "base", "mnist", 1, "single", 1.0, 1.0),  # the PGD-AT runs and every norm_memory base
        ("small_cnn", "float", "mnist", 1, "dual", 1.0, 1.0),
        ("small_cnn", "oat", "mnist", 1, "dual", 1.0, 1.0),
        ("small_cnn", "float-slim", "mnist", 1, "dual", 0.5, 1.0),
    }
    assert all(c[7] is HW for c in fake.calls)
    slim = df[df["variant"] == "float-slim"]
    assert (slim["memory_bytes"] == 252).all()  # int(1010 * 0.25)
    assert (slim["norm_memory"] == 0.252).all()
    assert set(slim["series"]) == {"FLOAT slim w=0.5"}


def test_pgd_rows_labelled_by_training_lambda_and_epoch_time(tmp_path: Path):
    df = join(standard_runs(tmp_path), cost_fn=FakeCostFn())
    pgd = df[df["algorithm"] == "pgd-at"].set_index("run")
    assert pgd.loc["pgd1", "lambda_label"] == 1.0 and pgd.loc["pgd1", "lambda_n"] == 0.0
    oat = df[df["run"] == "oat"]
    assert list(oat["lambda_label"]) == [0.0, 0.2, 0.7, 1.0]
    assert (oat["epoch_time_s"] == 1.5).all()
    assert (oat["norm_epoch_time"] == 1.5).all()  # the PGD-AT runs (1.0 s) are the fastest
    assert set(df["attack_label"]) == {"pgd7 eps=8/255"}


def test_reference_rows_get_costs_and_keep_published_ones(tmp_path: Path):
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"label": ["A", "B"], "variant": ["oat", "float"], "model": ["small_cnn", "small_cnn"],
                  "dataset": ["mnist", "mnist"], "ca": [90.0, 91.0], "ra": [50.0, 51.0],
                  "memory_bytes": [None, 4242], "source": ["Table 9", "Table 9"]}).to_csv(ref, index=False)
    df = join(standard_runs(tmp_path), reference=ref, cost_fn=FakeCostFn())
    refs = df[df["origin"] == "reference"].set_index("label")
    assert refs.loc["A", "memory_bytes"] == 1500  # computed by the cost function
    assert refs.loc["B", "memory_bytes"] == 4242  # the published value stays
    assert refs.loc["A", "series"] == "OAT"


def test_reference_missing_columns_names_file_and_columns(tmp_path: Path):
    ref = tmp_path / "bad.csv"
    pd.DataFrame({"label": ["A"], "ca": [1.0]}).to_csv(ref, index=False)
    with pytest.raises(HwsimError, match=r"bad\.csv lacks column\(s\) variant, ra, source"):
        read_reference(ref)


def test_run_without_eval_csv_is_an_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HwsimError, match="has no eval.csv"):
        join([tmp_path / "empty"], cost_fn=FakeCostFn())


def test_eval_csv_missing_contract_columns(tmp_path: Path):
    run = write_run(tmp_path, "r", variant="float", algorithm="float", points=[(0.0, 1.0, 1.0)])
    pd.read_csv(run / "eval.csv").drop(columns=["ra", "lambda_th"]).to_csv(run / "eval.csv", index=False)
    with pytest.raises(HwsimError, match=r"lacks column\(s\) lambda_th, ra"):
        join([run], cost_fn=FakeCostFn())


def test_unknown_cost_axis_lists_valid_ones():
    with pytest.raises(HwsimError, match="valid: params, nonzero_params, memory_bytes"):
        check_cost_axis("energy")
    assert check_cost_axis("norm_delay") == "norm_delay"
    assert "norm_memory" in COST_AXES


def test_select_points_prefers_best_and_one_attack(tmp_path: Path):
    runs = [write_run(tmp_path, "f", variant="float", algorithm="float", points=[(0.0, 90.0, 40.0)],
                      checkpoints=("last", "best"), attacks=("pgd7", "fgsm", "fgsm"))]
    df = join(runs, cost_fn=FakeCostFn())
    chosen = select_points(df)
    assert set(chosen["checkpoint"]) == {"best"}
    assert set(chosen["attack_label"]) == {"fgsm eps=8/255"}  # the most common attack
    assert list(chosen["ca"]) == [91.0, 91.0]
    last_pgd = select_points(df, checkpoint="last", attack="pgd7 eps=8/255")
    assert list(last_pgd["ca"]) == [90.0]
    with pytest.raises(HwsimError, match="the runs have: best, last"):
        select_points(df, checkpoint="epoch3")


def test_series_costs_one_row_per_series(tmp_path: Path):
    df = join(standard_runs(tmp_path), cost_fn=FakeCostFn())
    table = series_costs(df)
    assert list(table["series"]) == ["PGD-AT", "FLOAT", "OAT"]
    assert list(table["memory_bytes"]) == [1000, 1010, 1500]


def test_a_series_of_several_runs_gets_their_mean_epoch_time(tmp_path: Path):
    runs = standard_runs(tmp_path)
    runs[1] = write_run(tmp_path, "pgd1b", variant="base", algorithm="pgd-at", bn="single", train_lambda=1.0,
                        points=[(0.0, 90.0, 60.0)], epoch_times=(3.0, 3.0))  # the lambda = 1 run attacks: slower
    table = series_costs(join(runs, cost_fn=FakeCostFn())).set_index("series")
    assert table.loc["PGD-AT", "epoch_time_s"] == 2.0  # mean of 1.0 (lambda = 0, no attack) and 3.0
    assert table.loc["FLOAT", "norm_epoch_time"] == 1.1 / 1.1 and table.loc["OAT", "epoch_time_s"] == 1.5
    assert table.loc["PGD-AT", "norm_epoch_time"] == 2.0 / 1.1


def test_threshold_rows_form_their_own_series_but_one_network(tmp_path: Path):
    run = write_run(tmp_path, "f", variant="float", algorithm="float", points=[(0.0, 90.0, 40.0), (1.0, 80.0, 50.0)])
    eval_csv = pd.read_csv(run / "eval.csv")
    pd.concat([eval_csv, eval_csv.assign(lambda_th=0.5, ca=eval_csv["ca"] + 2)]).to_csv(run / "eval.csv", index=False)
    df = join([run], cost_fn=FakeCostFn())
    assert sorted(set(df["series"])) == ["FLOAT", "FLOAT λth=0.5"]
    assert set(df["network"]) == {"FLOAT"}
    assert list(df.loc[df["series"] == "FLOAT λth=0.5", "ca"]) == [92.0, 82.0]
    assert list(series_costs(df)["series"]) == ["FLOAT"]
    assert set(df["run_name"]) == {"f"}


def test_uncostable_reference_row_keeps_accuracy_and_says_why(tmp_path: Path):
    class Refusing(FakeCostFn):
        def __call__(self, model, variant="base", **kw):
            if variant == "floats-c":
                raise HwsimError("invalid layer 'layer4.0.conv2': c_in=0")
            return super().__call__(model, variant, **kw)

    ref = tmp_path / "ref.csv"
    pd.DataFrame({"label": ["C", "F"], "variant": ["floats-c", "float"], "model": ["small_cnn"] * 2,
                  "dataset": ["mnist"] * 2, "density": [0.34, 1.0], "ca": [93.8, 94.8], "ra": [17.2, 22.5],
                  "source": ["Table 1"] * 2}).to_csv(ref, index=False)
    df = join(standard_runs(tmp_path), reference=ref, cost_fn=Refusing())
    refs = df[df["origin"] == "reference"].set_index("label")
    assert pd.isna(refs.loc["C", "memory_bytes"]) and refs.loc["C", "ca"] == 93.8
    assert refs.loc["C", "cost_note"] == "no hwsim cost: invalid layer 'layer4.0.conv2': c_in=0"
    assert refs.loc["F", "memory_bytes"] == 1010 and refs.loc["F", "cost_note"] == ""
    # the same failure on a measured run is an error naming the setting
    run = write_run(tmp_path, "c", variant="floats-c", algorithm="float", density=0.34, points=[(0.0, 1.0, 1.0)])
    with pytest.raises(HwsimError, match=r"cost of small_cnn floats-c \(width 1, density 0.34\): invalid layer"):
        join([run], cost_fn=Refusing())


def test_cost_columns_equal_model_cost(tmp_path: Path):
    """With the real cost function: every cost column is exactly what hwsim.cost.model_cost gives."""
    from hwsim.cost import model_cost
    from hwsim.hardware import get_preset

    hw = get_preset("asic65")
    runs = [write_run(tmp_path, "oat", variant="oat", algorithm="oat", film_dim=1, bn="single",
                      points=[(0.0, 90.0, 10.0), (1.0, 80.0, 40.0)]),
            write_run(tmp_path, "pgd", variant="base", algorithm="pgd-at", bn="single", points=[(1.0, 85.0, 45.0)])]
    df = join(runs, hw=hw)
    from hwsim.report.join import _key_of

    for row in df.to_dict("records"):
        key = _key_of(row)
        expected = model_cost(row["model"], row["variant"], dataset=row["dataset"], hw=hw, **key.options())
        # nonzero_params left out: an untrained model's count depends on its random init
        for field in ("params", "memory_bytes", "macs", "delay_ns", "base_delay_ns", "norm_delay",
                      "conv_norm_delay_min", "conv_norm_delay_mean", "conv_norm_delay_max"):
            assert row[field] == getattr(expected, field), field
    base = model_cost("small_cnn", "base", dataset="mnist", hw=hw)
    oat = df[df["variant"] == "oat"].iloc[0]
    assert oat["norm_memory"] == oat["memory_bytes"] / base.memory_bytes
    assert oat["memory_bytes"] > base.memory_bytes


def test_pruned_runs_hand_their_checkpoint_to_the_cost(tmp_path: Path):
    run = write_run(tmp_path, "floats", variant="floats-c", algorithm="float", density=0.5,
                    points=[(0.0, 90.0, 10.0)], checkpoints=("last", "best"))
    (run / "checkpoints").mkdir()
    for name in ("last", "best"):
        (run / "checkpoints" / f"{name}.pt").write_bytes(b"")
    fake = FakeCostFn()
    join([run], hw=HW, cost_fn=fake)
    pruned = sorted(m for (call, m) in zip(fake.calls, fake.masks) if call[1] == "floats-c")
    assert pruned == [str(run / "checkpoints" / "best.pt"), str(run / "checkpoints" / "last.pt")]
    assert all(m is None for (call, m) in zip(fake.calls, fake.masks) if call[1] == "base")


def test_bullettrain_fast_step_and_noisy_pgd_runs_are_series_of_their_own(tmp_path: Path) -> None:
    import json

    from hwsim.report.join import read_runs

    runs = [write_run(tmp_path, "pgd", variant="base", algorithm="pgd-at", points=[(1.0, 80.0, 50.0)], train_lambda=1.0),
            write_run(tmp_path, "bt", variant="base", algorithm="pgd-at", points=[(1.0, 85.0, 52.0)], train_lambda=1.0),
            write_run(tmp_path, "fast2", variant="base", algorithm="fast", points=[(1.0, 84.0, 50.0)]),
            write_run(tmp_path, "noisy", variant="float", algorithm="pgd-at", points=[(1.0, 70.0, 50.0)])]
    for run, extra in zip(runs[1:], ({"bullettrain": True}, {"fast_step": 2.0}, {"noise_lambda": 0.5})):
        config = json.loads((run / "config.json").read_text()) | extra
        (run / "config.json").write_text(json.dumps(config))
    table = join(runs, cost_fn=FakeCostFn())
    series = dict(zip(table["run_name"], table["series"]))
    assert series["pgd"] == "PGD-AT" and series["bt"] == "PGD-AT +BulletTrain"
    assert series["fast2"] == "FAST step 2ε" and series["noisy"].endswith("noise λn=0.5")
    assert len(read_runs(runs)) == 4


def test_plot_styles_never_repeat_colour_and_marker_together() -> None:
    from hwsim.report.plots import _style

    styles = _style([f"s{i}" for i in range(20)])
    assert len(set(styles.values())) == 20


def test_a_slim_run_is_costed_at_the_widths_it_trained(tmp_path: Path):
    """Old: the cost key had no widths, so a slim run trained at S_f = {0.25, 1.0} was costed as built with
    the default {0.5, 1.0}, and a width 0.25 point stopped the report (0.25 not among the widths)."""
    run = write_run(tmp_path, "slim", variant="float-slim", algorithm="float", width=0.25,
                    points=[(0.0, 90.0, 10.0)])
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "widths": [0.25, 1.0]}))
    fake = FakeCostFn()
    join([run], hw=HW, cost_fn=fake)
    assert [w for call, w in zip(fake.calls, fake.widths) if call[1] == "float-slim"] == [(0.25, 1.0)]
    assert [w for call, w in zip(fake.calls, fake.widths) if call[1] == "base"] == [None]


def test_cost_options_a_variant_does_not_use_are_refused_by_model_cost():
    """Old: model_cost(width=...) on a non-slim variant was silently ignored."""
    from hwsim.cost import model_cost

    with pytest.raises(HwsimError, match="width= applies only to variants .*-slim"):
        model_cost("small_cnn", "float", dataset="mnist", width=0.5)
    with pytest.raises(HwsimError, match="density= applies only to variants floats"):
        model_cost("small_cnn", "oat", dataset="mnist", density=0.5)
    with pytest.raises(HwsimError, match="film_dim= applies only"):
        model_cost("small_cnn", "float", dataset="mnist", film_dim=128)
