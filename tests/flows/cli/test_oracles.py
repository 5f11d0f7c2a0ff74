"""``alflow oracles``: domain notes, PBE wording, units, where training writes (issue 19, findings 10,
12, 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """One data folder for the module, so the oracle's domain is built once and then read from the cache."""
    return str(tmp_path_factory.mktemp("alflow-data"))


def test_predict_flags_formulas_outside_the_training_domain(cli, data_dir):
    """The default oracle (resnet-mp-ext since session 13) builds and caches its domain."""
    code, out, err = cli("oracles", "predict", "MgO", "H999", "UPu3Np2Am", ALFLOW_DATA_DIR=data_dir, COLUMNS="200")
    assert code == 0, err
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.split() and line.split()[0] in {"MgO", "H999", "UPu3Np2Am"}
    }
    assert "outside domain" not in rows["MgO"]
    assert "outside domain" in rows["H999"] and "999 atoms as written" in rows["H999"]
    assert "outside domain" in rows["UPu3Np2Am"] and "Am not in the training data" in rows["UPu3Np2Am"]
    assert "PBE-level DFT estimate" in out
    assert list(Path(data_dir, "cache").glob("domain-bandgap_resnet_mp_ext-*.npz"))


def test_predict_json_carries_the_domain_verdict(cli, data_dir):
    code, out, err = cli("oracles", "predict", "MgO", "H999", "--json", ALFLOW_DATA_DIR=data_dir)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["level"] == "PBE-level DFT estimate" and doc["unit"] == "eV"
    by = {r["formula"]: r for r in doc["rows"]}
    assert by["MgO"]["in_domain"] is True and by["H999"]["in_domain"] is False


def test_list_shows_units_and_full_names(cli):
    code, out, err = cli("oracles", "list")
    assert code == 0, err
    assert "resnet-mp-gap" in out and "…" not in out
    assert " eV " in out + " " and "eV/atom" in out


def test_training_writes_to_the_user_folder_by_default(tmp_path, monkeypatch):
    from alcore.paths import WEIGHTS_DIR
    from flows.cli.autoencoder import weights_target

    monkeypatch.setenv("ALFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ALFLOW_WEIGHTS_DIR", raising=False)
    assert weights_target(None, False, WEIGHTS_DIR / "a.safetensors", "a.safetensors") == tmp_path / "weights" / (
        "a.safetensors"
    )
    assert weights_target(None, True, WEIGHTS_DIR / "a.safetensors", "a.safetensors") == WEIGHTS_DIR / "a.safetensors"
    assert weights_target(tmp_path / "x", False, WEIGHTS_DIR, "") == tmp_path / "x"
    monkeypatch.setenv("ALFLOW_WEIGHTS_DIR", str(tmp_path / "w"))
    assert weights_target(None, False, WEIGHTS_DIR, "") == tmp_path / "w"


@pytest.mark.parametrize(
    "args",
    [
        ["oracles", "train", "--help"],
        ["autoencoder", "train", "--help"],
        ["pools", "train-matgan", "--help"],
        ["crystalgan", "train", "--help"],
        ["cccgan", "train", "--help"],
    ],
)
def test_training_help_says_shipped_weights_need_an_option(cli, args):
    code, out, _ = cli(*args)
    assert code == 0
    assert "--replace-shipped" in out and "default: data/weights" not in out
