"""Roost (aviary-models) matches Goodall & Lee 2020 and trains through our loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alcore.errors import CorruptModelError
from alcore.paths import data_file
from oracles.registry import get_oracle
from oracles.roost import _import_roost, roost_inputs, train_roost

torch.set_num_threads(1)


def test_roost_architecture_matches_paper() -> None:
    Roost = _import_roost()
    from aviary.segments import MessageLayer, WeightedAttentionPooling

    torch.manual_seed(0)
    model = Roost(robust=True, n_targets=[1], task_dict={"y": "regression"})  # the paper's defaults
    net = model.material_nn
    assert model.elem_embedding.weight.shape[1] == 200  # matscholar200 element embedding
    assert net.embedding.in_features == 200 and net.embedding.out_features == 64 - 1  # + weight = 64
    assert len(net.graphs) == 3 and all(isinstance(g, MessageLayer) for g in net.graphs)
    assert all(len(g.pooling) == 3 and isinstance(g.pooling[0], WeightedAttentionPooling) for g in net.graphs)
    assert len(net.cry_pool) == 3 and all(isinstance(p, WeightedAttentionPooling) for p in net.cry_pool)
    model.eval()
    # the dense weighted graph: every element pair (self-edges included) of each formula
    (w, z, s_idx, n_idx, cry), reasons = roost_inputs(["Fe2O3", "O3Fe2", "Fe3O4", "NaCl2Mg"])
    assert reasons == [None] * 4 and len(s_idx) == 4 + 4 + 4 + 9
    assert torch.allclose(w[:2].sum(), torch.tensor(1.0))
    with torch.no_grad():
        out = model(w, z, s_idx, n_idx, cry)[0]
    assert out.shape == (4, 2)  # robust head: mean and log-std per formula
    assert torch.allclose(out[0], out[1], atol=1e-5)  # permutation invariant
    assert not torch.allclose(out[0], out[2])  # stoichiometry-weighted: Fe2O3 != Fe3O4


def test_roost_small_training_learns() -> None:
    df = pd.read_csv(data_file("bandgap", "agd_exp1_42k.csv")).sample(n=700, random_state=1)
    losses: list[float] = []
    oracle = train_roost(
        df.composition.tolist()[:600],
        df.Eg.to_numpy()[:600],
        epochs=4,
        lr=2e-3,
        progress=lambda s, e, loss: losses.append(loss),
    )
    assert losses[-1] < losses[0]
    pred = oracle.predict(df.composition.tolist()[600:] + ["Og2"])
    y = df.Eg.to_numpy()[600:]
    assert np.nanmean(np.abs(pred.mean[:-1] - y)) < np.abs(df.Eg.to_numpy()[:600].mean() - y).mean()
    assert (pred.std[:-1] > 0).all() and not pred.ok[-1] and pred.reasons[-1]


def test_roost_saved_ensemble_is_reachable_by_name(tmp_path) -> None:
    oracle = train_roost(["NaCl", "MgO", "Fe2O3", "Si", "GaN", "LiF"], [5.0, 4.5, 2.0, 0.6, 1.7, 8.7], epochs=1)
    oracle.save(tmp_path / "r")
    again = get_oracle("roost", weights=tmp_path / "r")
    assert again.name == "roost" and again.property == "band_gap"
    np.testing.assert_allclose(again.predict(["KCl", "ZnO"]).mean, oracle.predict(["KCl", "ZnO"]).mean, rtol=1e-6)
    with pytest.raises(CorruptModelError, match="missing"):
        get_oracle("roost", weights=tmp_path / "absent")
