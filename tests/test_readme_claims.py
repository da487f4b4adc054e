"""The README's table of output options matches what each command accepts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hwsim.cli import cli

TABLE_COMMANDS = [["models"], ["hw", "list"], ["hw", "show"], ["count"], ["delay"], ["compare"]]


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("args", TABLE_COMMANDS, ids=" ".join)
def test_table_commands_take_format_and_output(args):
    text = _help(args)
    assert "--format [table|csv|json|markdown]" in text and "--output FILE" in text


def test_sweep_also_writes_parquet():
    text = _help(["sweep"])
    assert "--format [table|csv|json|markdown|parquet]" in text and "--output FILE" in text


def test_train_eval_report_take_what_the_readme_says():
    train, evaluate, report = _help(["train"]), _help(["eval"]), _help(["report"])
    assert "--out DIR" in train and "--format" not in train and "--output" not in train
    assert "--format [table|csv|json|markdown]" in evaluate and "--output" not in evaluate
    assert "--format [table|csv|json|markdown]" in report and "--out DIR" in report


def test_readme_states_it():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "Every command takes `--format" not in readme  # the old, false claim
    for name in ("`sweep` |", "`train` |", "`eval` |", "`report` |"):
        assert name in readme
