"""One error path and exit code for the whole CLI (issue 19, findings 6, 12, 14)."""

from __future__ import annotations

import os
import re

import pytest

from tests.flows.cli.conftest import assert_user_error


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["oracles", "predict", "MgO", "-o", "nope"], "unknown oracle 'nope'"),
        (["oracles", "train", "nope"], "unknown recipe 'nope'"),
        (["pools", "top", "--pool", "nope"], "no pool named 'nope'"),
        (["report", "nope"], "no campaign named 'nope'"),
        (["ops", "report", "nope"], "no campaign named 'nope'"),
        (["cccgan", "generate", "Xx2O", "--max-relax", "0"], "Xx"),
        (["crystalgan", "generate", "--weights", "/nonexistent/w", "--no-store"], "nonexistent"),
        (["crystalgan", "export", "--out", "x", "--format", "xyz"], "poscar or cif"),
        (["structures", "run", "--campaign", "nope", "--no-hull"], "no campaign named 'nope'"),
        (["oracles", "predict", "NaCl)"], "none of the 1 formula(s) could be predicted"),
        (["autoencoder", "train", "--element-list", "nope"], "unknown element list 'nope'"),
        (["autoencoder", "train", "--out", "x.safetensors", "--replace-shipped"], "not both"),
    ],
)
def test_every_group_exits_2_with_one_error_line(cli, args, needle):
    code, _, err = cli(*args)
    assert_user_error(code, err, needle)


def test_usage_errors_exit_2(cli):
    code, _, err = cli("candidates", "top", "demo", "-k", "-3")
    assert code == 2 and "Traceback" not in err and "-k" in err


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and re.fullmatch(r"alflow \S+\n", out), out


def test_prefect_telemetry_off_for_the_ephemeral_server_only():
    from flows.cli import prefect_environment

    env: dict[str, str] = {}
    prefect_environment(env)
    assert env["DO_NOT_TRACK"] == "1" and env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    mine = {"DO_NOT_TRACK": "0"}
    prefect_environment(mine)
    assert mine["DO_NOT_TRACK"] == "0"  # an explicit user setting is kept
    remote = {"PREFECT_API_URL": "http://prefect:4200/api"}
    assert prefect_environment(remote) == {} and "DO_NOT_TRACK" not in remote


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_help_has_examples_and_fits_80_columns():
    import typer.main

    from flows import cli
    from flows.cli import _mount_generator_apps

    _mount_generator_apps()
    root = typer.main.get_command(cli.app)
    seen = 0
    for path, _cmd in _commands(root):
        from typer.testing import CliRunner

        res = CliRunner().invoke(cli.app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        text = res.output
        where = " ".join(path) or "alflow"
        assert res.exit_code == 0, (where, text)
        assert "Examples:" in text, where
        assert "…" not in text, where
        assert "``" not in text and "get_oracle" not in text and "get_generator" not in text, where
        long = [line for line in text.splitlines() if len(line) > 80]
        assert not long, (where, long)
        seen += 1
    assert seen >= 45


def test_no_prefect_import_before_a_command_needs_it():
    """``alflow run`` with a bad config must answer before Prefect starts (finding 7)."""
    import subprocess
    import sys

    code = "import sys, flows.cli; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd(), timeout=120)
    assert out.stdout.strip() == "False", out
