"""Tests of the descriptor featuriser, the ResNet ensemble oracle, the registry and the screening model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alcore.errors import ConfigError, CorruptModelError, InvalidLabelError
from alcore.paths import data_file
from oracles.base import Oracle, Prediction
from oracles.descriptors import (
    EXT_DESCRIPTOR_VERSION,
    Featuriser,
    feature_names,
    featurise,
    featuriser_for_version,
    n_features,
)
from oracles.registry import (
    fit_screening_model,
    get_oracle,
    known_oracles,
    load_screening_model,
    screening_state,
)
from oracles.resnet import ResNetOracle, TrainConfig, merge_members, train_resnet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def agd() -> pd.DataFrame:
    """1,000 AGD Exp-1 rows (fixed shuffle): 800 train, 200 test."""
    df = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv"))
    return df.sample(n=1000, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def small_model(agd: pd.DataFrame) -> ResNetOracle:
    """A small ensemble trained for a few epochs on 800 rows (about 1 CPU-second)."""
    tr = agd.iloc[:800]
    return fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=0, epochs=25, hidden=48)


def test_descriptors_shape_and_cache() -> None:
    X, reasons = featurise(["MgO", "NaCl", "Fe2O3", "MgO"])
    assert X.shape == (4, n_features()) == (4, len(feature_names()))
    assert np.isfinite(X).all() and reasons == [None] * 4
    np.testing.assert_array_equal(X[0], X[3])
    # "Mg2O2" reduces to the same composition -> same descriptor; a different formula differs
    X2, _ = Featuriser().transform(["Mg2O2", "MgO2"])
    np.testing.assert_allclose(X2[0], X[0], rtol=1e-6)
    assert not np.allclose(X2[1], X[0])


def test_unsupported_element_is_nan_for_that_formula_only(small_model: ResNetOracle) -> None:
    formulas = ["MgO", "Og2O", "Xx3", "NaCl"]
    X, reasons = featurise(formulas)
    assert np.isnan(X[1]).all() and np.isnan(X[2]).all()
    assert np.isfinite(X[[0, 3]]).all()
    pred = small_model.predict(formulas)
    assert isinstance(pred, Prediction)
    assert pred.ok.tolist() == [True, False, False, True]
    assert "Og" in pred.reasons[1] and "Xx" in pred.reasons[2]
    assert pred.reasons[0] is None and pred.reasons[3] is None
    assert np.isnan(pred.std[1]) and np.isfinite(pred.std[3])


def test_learns_beats_mean_predictor(agd: pd.DataFrame, small_model: ResNetOracle) -> None:
    te = agd.iloc[800:]
    y = te.Eg.to_numpy()
    pred = small_model.predict(te.composition.tolist())
    mae = np.abs(pred.mean - y).mean()
    mae_mean = np.abs(agd.iloc[:800].Eg.mean() - y).mean()
    assert mae < 0.8 * mae_mean, (mae, mae_mean)
    assert (pred.mean >= 0).all()  # band gaps clipped at 0


def test_std_positive_and_larger_far_from_data(agd: pd.DataFrame, small_model: ResNetOracle) -> None:
    near = small_model.predict(agd.iloc[800:].composition.tolist())
    assert (near.std > 0).all()
    far = small_model.predict(["Es2Fm3", "NoLr", "Md3Es", "Fm2No"])  # heavy actinides: not in training
    assert far.ok.all()
    assert np.mean(far.std) > 1.5 * np.median(near.std), (far.std, np.median(near.std))


def test_save_load_round_trip_identical(agd: pd.DataFrame, small_model: ResNetOracle, tmp_path, store) -> None:
    formulas = agd.composition.tolist()[800:900]
    ref = small_model.predict(formulas)
    again = ResNetOracle.from_bytes(small_model.to_bytes()).predict(formulas)
    np.testing.assert_array_equal(ref.mean, again.mean)
    np.testing.assert_array_equal(ref.std, again.std)
    small_model.save(tmp_path / "m")
    np.testing.assert_array_equal(ResNetOracle.load(tmp_path / "m").predict(formulas).mean, ref.mean)
    # through the real store (GridFS, safetensors)
    sd, md = screening_state(small_model)
    sha = store.save_model("screening", sd, md)
    state, meta = store.load_model(sha, kind="screening")
    np.testing.assert_array_equal(load_screening_model(state, meta).predict(formulas).mean, ref.mean)


def test_fixed_seed_reproduces(agd: pd.DataFrame) -> None:
    tr = agd.iloc[:300]
    kw = {"epochs": 5, "hidden": 32, "n_members": 2}
    a = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=3, **kw)
    b = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=3, **kw)
    c = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=4, **kw)
    f = agd.composition.tolist()[900:]
    np.testing.assert_array_equal(a.predict(f).mean, b.predict(f).mean)
    assert not np.array_equal(a.predict(f).mean, c.predict(f).mean)


def test_bad_labels_rejected() -> None:
    with pytest.raises(InvalidLabelError, match="negative"):
        fit_screening_model(["MgO", "NaCl"], [1.0, -0.5], epochs=1)
    with pytest.raises(InvalidLabelError, match="NaN"):
        fit_screening_model(["MgO", "NaCl"], [1.0, float("nan")], epochs=1)


def test_unknown_oracle_name_is_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        get_oracle("no-such-oracle")
    for name in ("resnet-agd", "resnet-mp-gap", "eform", "lookup", "external", "roost"):
        assert name in str(err.value)
        assert name in known_oracles()


def test_lookup_and_external_oracles_by_name() -> None:
    lookup = get_oracle("lookup", table={"MgO": 7.8}, table_name="mine")
    pred = lookup.predict(["MgO", "NaCl"])
    assert lookup.name == "lookup:mine" and pred.mean[0] == 7.8 and pred.reasons[1] == "not in table lookup:mine"
    external = get_oracle("external")
    pred = external.predict(["MgO"])
    assert external.is_external and not pred.ok[0] and "alflow labels import" in pred.reasons[0]
    with pytest.raises(ConfigError, match="needs table"):
        get_oracle("lookup")
    with pytest.raises(ConfigError, match="unknown option"):
        get_oracle("external", table={})


@pytest.mark.parametrize("name,prop", [("resnet-agd", "band_gap"), ("resnet-mp-gap", "band_gap"), ("eform", "e_form")])
def test_shipped_oracles_predict(name: str, prop: str) -> None:
    oracle = get_oracle(name)
    assert isinstance(oracle, Oracle)
    assert oracle.name == name and oracle.property == prop
    pred = oracle.predict(["MgO", "Si", "LiF", "Og"])
    assert pred.ok.tolist() == [True, True, True, False]
    assert (pred.std[:3] > 0).all()
    if prop == "band_gap":
        assert pred.mean[2] > pred.mean[1]  # LiF is a wide-gap insulator, Si a small-gap one
    else:
        assert pred.mean[0] < -2.0 and pred.mean[2] < -2.0  # MgO, LiF strongly bound (~ -3 eV/atom)


@pytest.mark.slow
def test_train_oracle_flow_writes_weights(prefect_harness, tmp_path) -> None:
    from flows.pipelines.oracles import train_oracle_flow

    meta = train_oracle_flow(name="resnet-agd", epochs=1, max_train=400, out_dir=str(tmp_path))
    assert meta["split"]["n_train"] == 400 and meta["split"]["n_test"] == 500
    assert len(meta["data_sha256"]) == 64 and np.isfinite(meta["test_metrics"]["mae"])
    oracle = ResNetOracle.load(tmp_path / "bandgap_resnet_agd")
    assert oracle.predict(["MgO"]).ok.all()


def test_weights_carry_their_descriptor_version(agd: pd.DataFrame) -> None:
    tr = agd.iloc[:300]
    ext = featuriser_for_version(EXT_DESCRIPTOR_VERSION)
    model = train_resnet(
        tr.composition.tolist(), tr.Eg.to_numpy(), config=TrainConfig(hidden=32, n_members=2, epochs=3), featuriser=ext
    )
    assert model.metadata()["descriptor_version"] == EXT_DESCRIPTOR_VERSION
    again = ResNetOracle.from_bytes(model.to_bytes())
    assert again.featuriser is ext
    f = agd.composition.tolist()[900:950]
    np.testing.assert_array_equal(again.predict(f).mean, model.predict(f).mean)
    meta = {**model.metadata(), "descriptor_version": "magpie-v0"}
    with pytest.raises(CorruptModelError, match="magpie-v0.*retrain"):
        ResNetOracle.from_state(model.state_dict(), meta)


def test_merge_members_concatenates_ensembles_trained_on_the_same_rows(agd: pd.DataFrame) -> None:
    tr = agd.iloc[:300]
    kw = {"epochs": 3, "hidden": 32, "n_members": 2}
    a = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=1, **kw)
    b = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=2, **{**kw, "epochs": 4})
    merged = merge_members([a, b], name="ab")
    assert merged.config.n_members == 4 and merged.config.extra["merged_seeds"] == [1, 2] and merged.name == "ab"
    assert merged.config.extra["merged_epochs"] == [3, 4]
    X, _ = merged.featuriser.transform(agd.composition.tolist()[900:950])
    np.testing.assert_array_equal(
        merged.predict_members(X), np.concatenate([a.predict_members(X), b.predict_members(X)])
    )
    again = ResNetOracle.from_bytes(merged.to_bytes())  # a merged model saves and loads like any other
    np.testing.assert_array_equal(again.predict_members(X), merged.predict_members(X))
    other = fit_screening_model(agd.composition.tolist()[300:600], agd.Eg.to_numpy()[300:600], seed=1, **kw)
    with pytest.raises(ConfigError, match="trained on different rows"):
        merge_members([a, other])


def test_median_point_prediction_is_the_members_median_and_survives_save_load(agd: pd.DataFrame) -> None:
    tr = agd.iloc[:300]
    oracle = fit_screening_model(tr.composition.tolist(), tr.Eg.to_numpy(), seed=3, epochs=3, hidden=32, n_members=4)
    formulas = agd.composition.tolist()[900:950]
    X, _ = oracle.featuriser.transform(formulas)
    members = oracle.predict_members(X)
    meta = oracle.metadata()
    meta["config"]["point"] = "median"
    median = ResNetOracle.from_state(oracle.state_dict(), meta)
    pred = median.predict(formulas, calibrated=False)
    np.testing.assert_allclose(pred.mean, np.median(members, 0))
    assert not np.allclose(pred.mean, members.mean(0))  # the option changes the prediction
    np.testing.assert_allclose(pred.std, oracle.predict(formulas, calibrated=False).std)  # sigma: same spread
    again = ResNetOracle.from_bytes(median.to_bytes())
    assert again.config.point == "median"
    np.testing.assert_allclose(again.predict(formulas, calibrated=False).mean, pred.mean)
    meta["config"]["point"] = "mode"
    with pytest.raises(ConfigError, match="unknown point prediction 'mode'"):
        ResNetOracle.from_state(oracle.state_dict(), meta)
