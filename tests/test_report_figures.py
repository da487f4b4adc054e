"""What the report's figures draw (issue 22): one colour per series, no knob line between separately trained
models, error bars where spreads exist, series at one memory value drawn apart, lambda labels apart."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hwsim.report import plots


def _points() -> pd.DataFrame:
    rows = []
    # PGD-AT: three separately trained runs; FLOAT: one run at four lambdas, with spreads; OAT: one run
    for lam, ca, ra in ((0.0, 92.0, 0.0), (0.5, 88.0, 49.8), (1.0, 76.2, 52.6)):
        rows.append(dict(series="PGD-AT", run_dir=f"runs/pgd{lam}", lambda_label=lam, ca=ca, ra=ra, ca_std=0.0,
                         ra_std=0.0, origin="run", model="small_cnn", dataset="mnist", norm_memory_max=0.6))
    for lam, ca, ra, sd in ((0.0, 83.0, 23.4, 0.0), (0.2, 81.3, 44.8, 1.7), (0.7, 81.5, 49.2, 4.7),
                            (1.0, 79.9, 49.0, 4.6)):
        rows.append(dict(series="FLOAT", run_dir="runs/float", lambda_label=lam, ca=ca, ra=ra, ca_std=sd / 2,
                         ra_std=sd, origin="run", model="small_cnn", dataset="mnist", norm_memory_max=0.6))
    for lam, ca, ra in ((0.0, 87.4, 7.0), (1.0, 85.6, 43.0)):
        rows.append(dict(series="OAT", run_dir="runs/oat", lambda_label=lam, ca=ca, ra=ra, ca_std=0.0, ra_std=0.0,
                         origin="run", model="small_cnn", dataset="mnist", norm_memory_max=1.0))
    return pd.DataFrame(rows)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: kept.append(fig) or [])
    return kept


def test_sixteen_series_get_sixteen_colours() -> None:
    styles = plots._style([f"s{i}" for i in range(16)])
    assert len({colour for colour, _ in styles.values()}) == 16  # the demo's 10 series shared 2 colours before


def test_tradeoff_draws_separate_models_unjoined_error_bars_and_labels_apart(figures: list) -> None:
    plots.plot_tradeoff(_points(), Path("unused"))
    ax = figures[0].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["PGD-AT (one model per λ)"].get_linewidth() == 0  # markers only
    assert lines["FLOAT"].get_linewidth() > 0 and lines["OAT"].get_linewidth() > 0
    # error bars: FLOAT's four points have them (the one at lambda 0 of length 0), no other series
    bars = [c for c in ax.collections if c.get_segments() and len(c.get_segments()) == 4]
    assert bars and any(abs(seg[1][1] - seg[0][1] - 2 * 4.7) < 1e-9 for c in bars for seg in c.get_segments())
    texts = [t for t in ax.texts if t.get_text().startswith("λ=")]
    assert len(texts) == 3 + 4 + 2
    renderer = figures[0].canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    overlaps = sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert overlaps == 0
    plt.close(figures[0])


def test_series_sharing_a_memory_value_are_drawn_apart_around_it(figures: list) -> None:
    plots.plot_accuracy_vs_memory(_points(), Path("unused"))
    ax = figures[0].axes[0]
    xs = {}
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if coll.get_label() in ("PGD-AT", "FLOAT", "OAT") and len(offsets):
            xs[coll.get_label()] = sorted({round(float(x), 9) for x in offsets[:, 0]})
    assert len(xs["PGD-AT"]) == len(xs["FLOAT"]) == len(xs["OAT"]) == 1  # one x per series
    assert xs["PGD-AT"][0] < 0.6 < xs["FLOAT"][0]  # apart, centred on their shared 0.6
    assert abs((xs["PGD-AT"][0] + xs["FLOAT"][0]) / 2 - 0.6) < 1e-9
    assert xs["OAT"] == [1.0]  # alone at its value: where it is
    plt.close(figures[0])


def test_a_series_has_the_same_colour_in_the_bar_charts_as_in_the_scatter_plots(figures: list) -> None:
    points = _points().assign(epoch_time_s=1.0, memory_bytes=1000.0, norm_memory=1.0, norm_epoch_time=1.0,
                              network=lambda d: d["series"], variant="base", width=1.0, density=1.0)
    # a threshold series before OAT: its own colour in the scatter plots, no bar of its own
    extra = points[points["series"] == "FLOAT"].assign(series="FLOAT λth=0.5", network="FLOAT")
    points = pd.concat([points.iloc[:7], extra, points.iloc[7:]], ignore_index=True)
    plots.plot_tradeoff(points, Path("unused"))
    plots.plot_training_time(points, Path("unused"))
    scatter = {line.get_label().split(" (")[0]: line.get_color() for line in figures[0].axes[0].get_lines()}
    bars = figures[1].axes[0].patches
    names = [t.get_text().replace("\n", " ") for t in figures[1].axes[0].get_xticklabels()]
    import matplotlib.colors as mcolors

    for name, bar in zip(names, bars):
        assert mcolors.to_hex(bar.get_facecolor()) == mcolors.to_hex(scatter[name]), name
    assert names == ["PGD-AT", "FLOAT", "OAT"]
    for fig in figures:
        plt.close(fig)
