"""``alflow candidates top|export`` (issue 19, findings 5, 10, 14)."""

from __future__ import annotations

import csv

import pytest

from tests.flows.cli.conftest import assert_user_error, external_campaign


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
    external_campaign(store)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = cli(*[a.format(out=out) for a in args])
    assert_user_error(code, err, "'nope'")
    assert list(out.iterdir()) == []
    assert stdout == ""


def test_candidates_export_has_the_label(cli, store, tmp_path):
    external_campaign(store)
    code, _, err = cli("candidates", "export", "ext", str(tmp_path / "c.csv"))
    assert code == 0, err
    rows = {r["formula"]: r for r in csv.DictReader((tmp_path / "c.csv").read_text().splitlines())}
    assert rows["NaCl"]["label"] == "5.0" and rows["NaCl"]["label_source"] == "external"
    assert rows["KBr"]["label"] == "" and rows["Ca"]["reasons"] == "1 elements < min"


def test_candidates_top_names_the_level_of_theory(cli, store):
    external_campaign(store)
    code, out, err = cli("candidates", "top", "ext")
    assert code == 0, err
    assert "NaCl" in out and "PBE-level DFT" in out
