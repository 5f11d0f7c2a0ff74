"""The default band-gap oracle of new campaigns, calibrated sigma in shipped oracles, AGD configs unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from alcore.paths import WEIGHTS_DIR
from flows.config import load_config, parse_config
from oracles.calibration import SigmaCalibration
from oracles.descriptors import EXT_DESCRIPTOR_VERSION
from oracles.registry import DEFAULT_BANDGAP_ORACLE, SHIPPED, fit_screening_model, get_oracle, known_oracles
from oracles.resnet import ResNetOracle
from oracles.training import _reduced_key, mp_gap_union

ROOT = Path(__file__).resolve().parents[2]
#: sha256 of the AGD experiments' oracle weights (unchanged since session 1)
RESNET_AGD_SHA256 = "cf691460d5d235580ea9b43738528559164bc5caac6555c70e6087a52c23a8c9"
FORMULAS = ["MgO", "Si", "LiF", "Cu", "NaCl", "GaAs"]


def test_new_campaigns_default_to_the_measured_oracle() -> None:
    assert DEFAULT_BANDGAP_ORACLE == "resnet-mp-ext"
    assert {"resnet-mp-ext", "resnet-mp-union", "resnet-agd"} <= set(known_oracles())
    assert get_oracle("default") is get_oracle("resnet-mp-ext") is get_oracle("bandgap")
    assert parse_config({"name": "fresh"}).oracle == DEFAULT_BANDGAP_ORACLE


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "campaigns").glob("agd_*.yaml")), ids=lambda p: p.name)
def test_agd_configs_keep_their_oracle(path: Path) -> None:
    # each AGD experiment names resnet-agd itself, so the new default cannot reach it
    assert yaml.safe_load(path.read_text())["oracle"] == "resnet-agd"
    assert load_config(path).oracle == "resnet-agd"


def test_resnet_agd_labels_are_unchanged() -> None:
    """Same weights file as before, and the calibration only changes std: the labels (means) the AGD
    campaigns record are what they were."""
    st = WEIGHTS_DIR / "bandgap_resnet_agd.safetensors"
    assert hashlib.sha256(st.read_bytes()).hexdigest() == RESNET_AGD_SHA256
    oracle = get_oracle("resnet-agd")
    cal, raw = oracle.predict(FORMULAS), oracle.predict(FORMULAS, calibrated=False)
    np.testing.assert_array_equal(cal.mean, raw.mean)
    np.testing.assert_allclose(cal.std, oracle.calibration.apply(raw.std))
    assert oracle.calibration.method != "identity"


@pytest.mark.parametrize("name", ["resnet-agd", "resnet-mp-gap", "eform", "resnet-mp-union", "resnet-mp-ext"])
def test_shipped_oracles_carry_a_calibration(name: str) -> None:
    oracle = get_oracle(name)
    meta = json.loads((WEIGHTS_DIR / f"{SHIPPED[name][0]}.json").read_text())
    assert meta["calibration"] == oracle.info["calibration"]
    rep = meta["calibration_report"]
    assert rep["fit_rows"] > 0 and rep["report_rows"] > 0  # fitted and reported on different rows
    if name in ("resnet-mp-union", "resnet-mp-ext", "eform"):  # two-quantile map, scored cross-fitted
        assert "cross_fit" in rep and oracle.calibration.family.endswith("@68")
        assert 0.63 <= rep["calibrated"]["cov68"] <= 0.73 and 0.92 <= rep["calibrated"]["cov95"] <= 0.98
        assert rep["calibrated"]["miscal_area"] < rep["raw"]["miscal_area"]
    else:
        assert rep["calibrated"]["nll"] < rep["raw"]["nll"]
    pred = oracle.predict(FORMULAS)
    assert (pred.std > 0).all() and np.isfinite(pred.std).all()


@pytest.mark.parametrize("name", ["resnet-mp-ext", "resnet-mp-union"])
def test_default_oracle_predictions_are_sensible(name: str) -> None:
    oracle = get_oracle(name)
    pred = oracle.predict(FORMULAS)
    mgo, si, lif, cu, nacl, _gaas = pred.mean
    assert lif > 4 and mgo > 3 and nacl > 3 and si < 2 and cu < 0.3
    assert oracle.config.n_members == {"resnet-mp-ext": 15, "resnet-mp-union": 10}[name]
    st = WEIGHTS_DIR / f"{SHIPPED[name][0]}.safetensors"
    params = sum(p.numel() for p in oracle.model.parameters())
    assert st.stat().st_size < 2.1 * params  # float16 weights: 2 bytes per parameter
    meta = json.loads(st.with_suffix(".json").read_text())
    assert meta["training"]["cv_5fold_matbench"]["mae"] < 0.24
    assert len(meta["training"]["data_sha256"]) == 64
    assert oracle.featuriser.version == meta["descriptor_version"]


def test_union_extra_rows_share_no_formula_with_matbench() -> None:
    """The AGD rows added to matbench_mp_gap have formulas absent from matbench, hence from every test fold."""
    df, n_mb = mp_gap_union()
    keys = df.formula.map(_reduced_key)
    extra = set(keys.iloc[n_mb:])
    assert len(extra) == len(df) - n_mb > 5000
    assert not extra & set(keys.iloc[:n_mb])
    assert (df.source.iloc[n_mb:] == "agd_exp1_42k").all()


def test_calibration_and_float16_survive_save_and_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    formulas = ["MgO", "LiF", "NaCl", "KCl", "Si", "Ge", "GaAs", "Cu", "Al", "ZnO"] * 8
    values = rng.uniform(0, 6, len(formulas))
    model = fit_screening_model(formulas, values, seed=0, epochs=3, hidden=16)
    model.info["calibration"] = SigmaCalibration("scale", 3.0, family="laplace").to_dict()
    model.save(tmp_path / "m", weights_dtype=torch.float16)
    again = ResNetOracle.load(tmp_path / "m")
    a, b = model.predict(FORMULAS), again.predict(FORMULAS)
    np.testing.assert_allclose(b.mean, a.mean, atol=2e-2)
    np.testing.assert_allclose(b.std, 3.0 * again.predict(FORMULAS, calibrated=False).std)
    assert again.calibration.family == "laplace"
    assert json.loads((tmp_path / "m.json").read_text())["calibration"]["scale"] == 3.0


@pytest.mark.slow
def test_union_recipe_trains_calibrates_and_saves_half_precision(tmp_path: Path) -> None:
    """The training entry point of the default oracle (the function behind the Prefect flow); ~30 s."""
    from safetensors import safe_open

    from flows.pipelines.oracles import train_and_save

    meta = train_and_save("resnet-mp-union", epochs=1, max_train=300, out_dir=tmp_path, log=lambda _m: None)
    assert meta["split"]["kind"] == "mp_union_val10" and meta["split"]["n_test"] == 10611
    assert meta["split"]["seed"] == 1005 and len(meta["extra_data"]["sha256"]) == 64
    stem = tmp_path / "bandgap_resnet_mp_union"
    with safe_open(str(stem.with_suffix(".safetensors")), "pt") as fh:
        assert fh.get_tensor("model.inp.weight").dtype == torch.float16
        assert fh.get_tensor("scaler.x_mean").dtype == torch.float32
    oracle = ResNetOracle.load(stem)
    assert oracle.calibration.method == "isotonic" and oracle.calibration.fitted_on["n"] > 5000
    assert meta["calibration_report"]["report_rows"] > 5000
    assert oracle.predict(["MgO"]).ok.all()


@pytest.mark.slow
def test_ext_recipe_merges_one_run_per_seed_on_the_ext_descriptor(tmp_path: Path) -> None:
    """`alflow oracles train resnet-mp-ext` in miniature: three seeded 5-member runs, merged, saved, reloaded."""
    from flows.pipelines.oracles import train_and_save

    meta = train_and_save("resnet-mp-ext", epochs=1, max_train=300, out_dir=tmp_path, log=lambda _m: None)
    assert meta["split"]["kind"] == "mp_gap_val10" and meta["split"]["n_test"] == 10611
    assert meta["seeds"] == [18012019, 18012020, 18012021] and "extra_data" not in meta
    assert meta["run_epochs"] == [1, 1, 1]  # the quick run's override; the recipe's are 80, 80, 120
    oracle = ResNetOracle.load(tmp_path / "bandgap_resnet_mp_ext")
    assert oracle.config.n_members == 15 and oracle.featuriser.version == EXT_DESCRIPTOR_VERSION
    assert oracle.config.point == "median"
    assert oracle.calibration.fitted_on["n"] > 5000
    assert oracle.predict(["MgO", "Cu"]).ok.all()
