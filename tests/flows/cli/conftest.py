"""Run ``alflow`` through the real entry point (``flows.cli.main``) against a test store."""

from __future__ import annotations

import pytest

from flows.config import parse_config
from tests.flows.conftest import run_cli, store_uri

_uri = store_uri  # the name the CLI tests import


@pytest.fixture
def cli(store, monkeypatch, capsys, tmp_path):
    """``cli(*args, **env) -> (exit status, stdout, stderr)`` of ``alflow ARGS`` on ``store``'s database."""

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        base = {"ALFLOW_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "80"}
        return run_cli(list(args), store, monkeypatch, capsys, **{**base, **env})

    return run


def assert_user_error(code: int, err: str, *needles: str) -> None:
    """Exit status 2, one ``error:`` line on stderr, no traceback, containing ``needles``."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in err, (n, err)


def external_campaign(store, name: str = "ext") -> None:
    """A stored external-label campaign with a labelled, an awaiting and a rejected candidate."""
    cfg = parse_config(
        {"name": name, "mode": "pool", "oracle": "external", "seeds": {"n": 10}, "pool_size": 100, "iterations": 1}
    )
    store.create_campaign(name, cfg.resolved())
    store.upsert_candidates(
        name,
        1,
        [
            {"formula": "NaCl", "status": "labelled", "valid": True, "rank": 0, "gp_mean": 4.0, "gp_std": 0.5},
            {"formula": "KBr", "status": "awaiting_label", "valid": True, "rank": 1},
            {"formula": "Ca", "status": "rejected", "valid": False, "rank": 2, "reasons": ["1 elements < min"]},
        ],
    )
    store.upsert_labels(name, [{"formula": "NaCl", "value": 5.0, "source": "external", "iteration": 1}])
