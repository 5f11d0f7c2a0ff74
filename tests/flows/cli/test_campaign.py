"""``alflow run`` / ``campaign``: checks before Prefect starts, Ctrl-C, 80-column tables (issue 19,
findings 7, 8, 9, 11, 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tests.flows.cli.conftest import _uri, assert_user_error

REPO = Path(__file__).resolve().parents[3]

TINY = {
    "name": "tiny",
    "mode": "pool",
    "iterations": 2,
    "seed": 1,
    "oracle": "lookup",
    "seeds": {"dataset": "agd_exp3_init_300", "n": 30},
    "pool_size": 300,
    "acquisition": {"q": 2, "num_restarts": 2, "raw_samples": 16, "maxiter": 5, "mc_samples": 16},
    "gp": {"maxiter": 10},
    "screening_epochs": 3,
}


def _yaml(tmp_path: Path, name: str = "c.yaml", **changes) -> Path:
    cfg = {**TINY}
    for k, v in changes.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def no_prefect(monkeypatch):
    """Fail the test if ``alflow run`` reaches the Prefect flow."""
    import flows.campaign

    def started(*a, **k):
        raise AssertionError("the Prefect flow was started")

    monkeypatch.setattr(flows.campaign, "campaign_flow", started)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"stuctures": {"top_k": 1}}, "stuctures: Extra inputs are not permitted"),
        ({"oracle": "resnet-adg"}, "unknown oracle 'resnet-adg'"),
        ({"acquisition": {"beta": -1.0}}, "beta must be a positive number"),
        ({"acquisition": {"q": 0}}, "q must be an integer >= 1"),
        ({"acquisition": {"q": "two"}}, "acquisition.q"),
        ({"gp": {"threads": 0}}, "gp.threads"),
        ({"seeds": {"n": -5}}, "seeds.n"),
        ({"acquisition": {"max_attempts": 0}}, "acquisition.max_attempts"),
        ({"validity": {"max_atoms": -3}}, "validity.max_atoms"),
        ({"validity": {"min_elements": 6, "max_elements": 5}}, "min_elements 6 > max_elements 5"),
    ],
)
def test_run_refuses_a_bad_config_before_prefect_starts(cli, tmp_path, no_prefect, store, changes, needle):
    code, _, err = cli("run", str(_yaml(tmp_path, **changes)))
    assert_user_error(code, err, needle)
    assert store.db.campaigns.count_documents({}) == 0


def test_run_refuses_missing_and_invalid_files(cli, tmp_path, no_prefect):
    code, _, err = cli("run", str(tmp_path / "nope.yaml"))
    assert_user_error(code, err, "not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    code, _, err = cli("run", str(bad))
    assert_user_error(code, err, "is not valid YAML")


def test_run_refuses_a_second_runner_before_prefect_starts(cli, tmp_path, no_prefect, store):
    from flows.config import load_config

    path = _yaml(tmp_path)
    store.create_campaign("tiny", load_config(path).resolved())
    store.acquire_lease("tiny", "host-a:1", 600)
    code, _, err = cli("run", str(path))
    assert_user_error(code, err, "being run by 'host-a:1'")
    assert store.get_campaign("tiny")["lease"]["owner"] == "host-a:1"  # untouched


def test_run_refuses_a_changed_config_before_prefect_starts(cli, tmp_path, no_prefect, store):
    from flows.config import load_config

    store.create_campaign("tiny", load_config(_yaml(tmp_path)).resolved())
    code, _, err = cli("run", str(_yaml(tmp_path, "d.yaml", seed=2)))
    assert_user_error(code, err, "exists with a different config")


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://user:se@cret@127.0.0.1:1/",
        "mongodb://user:se/cret@127.0.0.1:1/",
        "mongodb+srv://user:secret@nonexistent.invalid/",
    ],
)
def test_malformed_uri_is_one_line_without_the_password(cli, uri):
    code, _, err = cli("campaign", "list", ALFLOW_MONGODB_URI=uri)
    assert_user_error(code, err, "invalid ALFLOW_MONGODB_URI", "user:***@")
    assert "cret" not in err


def test_unknown_campaign_in_show(cli):
    code, _, err = cli("campaign", "show", "nope")
    assert_user_error(code, err, "no campaign named 'nope'")


def test_iteration_table_shows_best_acquired_and_fits_80_columns():
    from flows.cli import campaign

    summary = {
        "campaign": "demo",
        "iterations": [
            {
                "iteration": i,
                "n_labels": 300 + 4 * i,
                "best_value": 7.719,
                "best_formula": "BH3NF3",
                "best_acquired": [5.9, 5.9, 6.985][i - 1],
                "count_above_threshold": 48 + i,
                "acquired_above_threshold": i,
                "val_mae": 1.162,
                "fit_s": 3.2,
                "acquire_s": 20.5,
            }
            for i in (1, 2, 3)
        ],
        "top": [{"formula": "BH3NF3", "value": 7.719, "source": "seed", "iteration": 0}],
    }
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    old = campaign.console
    campaign.console = console
    try:
        campaign.print_summary(summary)
    finally:
        campaign.console = old
    text = console.export_text()
    assert "…" not in text
    assert "6.985" in text and "7.719" in text
    assert "best" in text and "acq." in text and "PBE-level DFT" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_ctrl_c_stops_at_once_with_one_line_and_a_resume_command(store, tmp_path):
    """SIGINT to the process group (what a terminal's Ctrl-C does) during a run: exit 130 within
    seconds, one line naming the resume command, campaign marked interrupted, lease released, no
    process of the group left (the temporary Prefect server included)."""
    path = _yaml(tmp_path, name="tiny.yaml")
    env = {
        **os.environ,
        "ALFLOW_MONGODB_URI": _uri(store),
        "ALFLOW_DATABASE": store.db.name,
        "ALFLOW_REPORTS": "0",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", str(path)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            doc = store.db.campaigns.find_one({"name": "tiny"})
            if doc and doc.get("status") == "running" and store.db.iterations.find_one({"campaign": "tiny"}):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert stopped_s < 10, stopped_s
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"interrupted: campaign 'tiny' stopped; resume with: alflow run {path}"
    doc = store.get_campaign("tiny")
    assert doc["status"] == "interrupted" and doc["lease"] is None
    time.sleep(2)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
