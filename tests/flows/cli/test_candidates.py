"""``alflow candidates top|export`` (issue 19, findings 5, 10, 14)."""

from __future__ import annotations

import csv

import pytest

from flows.config import parse_config
from tests.flows.cli.conftest import assert_user_error


def _campaign(store, name: str = "ext") -> None:
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


@pytest.mark.parametrize(
    "args",
    [
        ["candidates", "top", "nope"],
        ["candidates", "export", "nope", "{out}/c.csv"],
        ["labels", "export", "nope", "{out}/l.csv"],
        ["structures", "export-cif", "--campaign", "nope", "--out", "{out}/cif"],
    ],
)
def test_misspelled_campaign_is_an_error_and_writes_nothing(cli, store, tmp_path, args):
    _campaign(store)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = cli(*[a.format(out=out) for a in args])
    assert_user_error(code, err, "'nope'")
    assert list(out.iterdir()) == []
    assert stdout == ""


def test_candidates_export_has_the_label(cli, store, tmp_path):
    _campaign(store)
    code, _, err = cli("candidates", "export", "ext", str(tmp_path / "c.csv"))
    assert code == 0, err
    rows = {r["formula"]: r for r in csv.DictReader((tmp_path / "c.csv").read_text().splitlines())}
    assert rows["NaCl"]["label"] == "5.0" and rows["NaCl"]["label_source"] == "external"
    assert rows["KBr"]["label"] == "" and rows["Ca"]["reasons"] == "1 elements < min"


def test_candidates_top_names_the_level_of_theory(cli, store):
    _campaign(store)
    code, out, err = cli("candidates", "top", "ext")
    assert code == 0, err
    assert "NaCl" in out and "PBE-level DFT" in out
