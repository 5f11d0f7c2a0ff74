"""``alflow structures export-cif`` (issue 19, findings 5, 14)."""

from __future__ import annotations


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
