"""``alflow labels import|export`` (issue 19, findings 9, 14)."""

from __future__ import annotations

import csv

import pytest

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


@pytest.mark.parametrize(
    ("text", "needles", "absent"),
    [
        pytest.param(
            "formula,value\nNaCl,5.1\nKBr,4.0,0.1\n",
            ("line 3: expected 2 columns, got 3", "would be lost"),
            (),
            id="row-with-more-cells-than-the-header",
        ),
        pytest.param(
            "formula,value\nNaCl,5.1\nMgO,7.8\n",
            ("line 3: MgO is not a candidate",),
            ("line 0",),
            id="names-the-real-line",
        ),
        # a file-level error (the header) cannot be skipped row by row: no --skip-bad hint
        pytest.param(
            "formla,value\nNaCl,5.0\n",
            ("lacks a formula column",),
            ("value column", "--skip-bad"),
            id="file-level-error",
        ),
    ],
)
def test_refused_import_says_why_and_keeps_the_labels(cli, store, tmp_path, text, needles, absent):
    external_campaign(store)
    path = tmp_path / "labels.csv"
    path.write_text(text)
    code, _, err = cli("labels", "import", "ext", str(path))
    assert_user_error(code, err, *needles)
    assert not [a for a in absent if a in err], err
    assert store.labels("ext")[0]["value"] == 5.0  # unchanged
