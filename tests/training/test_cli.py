"""The ``lifecycle`` command: every subcommand has help; simulate -> validate -> demo work."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


def command_paths(group, prefix=()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the CLI, as argument paths."""
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if hasattr(command, "commands"):
            paths += command_paths(command, (*prefix, name))
    return paths


COMMANDS = sorted(command_paths(get_command(app)))


def test_top_level_help_lists_the_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("simulate", "validate", "demo"):
        assert name in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_simulate_then_validate(tmp_path):
    out = tmp_path / "data"
    result = runner.invoke(
        app, ["simulate", "--out", str(out), "--customers", "300", "--days", "60", "--seed", "3",
              "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "events.parquet").exists() and (out / "truth" / "snapshots.parquet").exists()
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "events" in result.output and "exposures" in result.output


def test_simulate_rejects_a_bad_format(tmp_path):
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--format", "xlsx"])
    assert result.exit_code != 0
    assert "parquet or csv" in result.output


def test_simulate_reads_a_yaml_config_and_names_bad_fields(tmp_path):
    bad = tmp_path / "sim.yaml"
    bad.write_text("campaign_share: 2.0\nunknown_knob: 1\n")
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path / "o"), "--config", str(bad)])
    assert result.exit_code == 2
    message = result.output
    assert "sim.yaml" in message and "campaign_share" in message and "unknown_knob" in message


def test_validate_reports_a_broken_table_and_fails(tmp_path):
    (tmp_path / "events.csv").write_text(
        "customer_id,timestamp,event_type,amount\nc1,2025-01-01,purchase,-3\n"
    )
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "amount" in result.output and "-3" in result.output


def test_validate_missing_folder_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_demo_prints_the_summary(tmp_path):
    args = ["demo", "--out", str(tmp_path / "demo"), "--customers", "800", "--no-train"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for text in ("Events by role", "True stage", "Churn rate", "Conversion by offer arm"):
        assert text in result.output
