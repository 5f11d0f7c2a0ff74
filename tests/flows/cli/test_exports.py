"""``candidates``, ``labels`` and ``structures`` read/export commands (issue 19, findings 5, 9, 14)."""

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


def test_labels_export_has_property_and_unit(cli, store, tmp_path):
    _campaign(store)
    code, _, err = cli("labels", "export", "ext", str(tmp_path / "l.csv"))
    assert code == 0, err
    (row,) = list(csv.DictReader((tmp_path / "l.csv").read_text().splitlines()))
    assert row["property"] == "band_gap" and row["unit"] == "eV" and row["value"] == "5.0"


def test_export_into_a_missing_folder_is_refused(cli, store, tmp_path):
    _campaign(store)
    code, _, err = cli("labels", "export", "ext", str(tmp_path / "no" / "l.csv"))
    assert_user_error(code, err, "does not exist")


def test_candidates_top_names_the_level_of_theory(cli, store):
    _campaign(store)
    code, out, err = cli("candidates", "top", "ext")
    assert code == 0, err
    assert "NaCl" in out and "PBE-level DFT" in out


def test_label_row_with_more_cells_than_the_header_is_refused(cli, store, tmp_path):
    _campaign(store)
    path = tmp_path / "three.csv"
    path.write_text("formula,value\nNaCl,5.1\nKBr,4.0,0.1\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "line 3: expected 2 columns, got 3", "would be lost")
    assert store.labels("ext")[0]["value"] == 5.0  # unchanged


def test_import_messages_name_the_real_line(cli, store, tmp_path):
    _campaign(store)
    path = tmp_path / "l.csv"
    path.write_text("formula,value\nNaCl,5.1\nMgO,7.8\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "line 3: MgO is not a candidate")
    assert "line 0" not in err


def test_file_level_import_errors_do_not_suggest_skip_bad(cli, store, tmp_path):
    _campaign(store)
    path = tmp_path / "typo.csv"
    path.write_text("formla,value\nNaCl,5.0\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "lacks a formula column")
    assert "value column" not in err and "--skip-bad" not in err


def test_cif_export_names_the_verdict_and_leaves_failed_trials_out(cli, store, tmp_path):
    docs = [
        {"campaign": "s", "formula": "MgO", "template_id": "T1", "verdict": "stable", "cif": "data_x\n", "e_hull": 0.0},
        {"campaign": "s", "formula": "MgO", "template_id": "T2", "verdict": "failed", "cif": "data_y\n"},
    ]
    store.db.structures.insert_many(docs)
    code, out, err = cli("structures", "export-cif", "--campaign", "s", "--out", str(tmp_path / "cif"))
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "cif").iterdir())
    assert files == ["MgO__stable__T1.cif"]
    assert "verdict stable" in (tmp_path / "cif" / files[0]).read_text()
    code, out, err = cli(
        "structures", "export-cif", "--campaign", "s", "--out", str(tmp_path / "all"), "--include-failed"
    )
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["MgO__failed__T2.cif", "MgO__stable__T1.cif"]
