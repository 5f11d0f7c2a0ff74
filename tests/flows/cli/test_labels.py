"""``alflow labels import|export`` (issue 19, findings 9, 14)."""

from __future__ import annotations

import csv

from tests.flows.cli.conftest import assert_user_error, external_campaign


def test_labels_export_has_property_and_unit(cli, store, tmp_path):
    external_campaign(store)
    code, _, err = cli("labels", "export", "ext", str(tmp_path / "l.csv"))
    assert code == 0, err
    (row,) = list(csv.DictReader((tmp_path / "l.csv").read_text().splitlines()))
    assert row["property"] == "band_gap" and row["unit"] == "eV" and row["value"] == "5.0"


def test_export_into_a_missing_folder_is_refused(cli, store, tmp_path):
    external_campaign(store)
    code, _, err = cli("labels", "export", "ext", str(tmp_path / "no" / "l.csv"))
    assert_user_error(code, err, "does not exist")


def test_label_row_with_more_cells_than_the_header_is_refused(cli, store, tmp_path):
    external_campaign(store)
    path = tmp_path / "three.csv"
    path.write_text("formula,value\nNaCl,5.1\nKBr,4.0,0.1\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "line 3: expected 2 columns, got 3", "would be lost")
    assert store.labels("ext")[0]["value"] == 5.0  # unchanged


def test_import_messages_name_the_real_line(cli, store, tmp_path):
    external_campaign(store)
    path = tmp_path / "l.csv"
    path.write_text("formula,value\nNaCl,5.1\nMgO,7.8\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "line 3: MgO is not a candidate")
    assert "line 0" not in err


def test_file_level_import_errors_do_not_suggest_skip_bad(cli, store, tmp_path):
    external_campaign(store)
    path = tmp_path / "typo.csv"
    path.write_text("formla,value\nNaCl,5.0\n")
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, "lacks a formula column")
    assert "value column" not in err and "--skip-bad" not in err
