"""What the training flows share: storing trained models in the target's database."""

from __future__ import annotations

import torch

from flows.pipelines.training import TrainingTarget, store_trained


def test_store_trained_saves_each_model_in_the_targets_store(store, mongo_uri) -> None:
    torch.manual_seed(0)
    nets = {"tiny_a": torch.nn.Linear(3, 2), "tiny_b": torch.nn.Linear(2, 1)}
    target = TrainingTarget(out="/nowhere", mongodb_uri=mongo_uri, database=store.db.name)
    shas = store_trained(target, {kind: (net, {"note": kind}) for kind, net in nets.items()})
    assert set(shas) == set(nets)
    for kind, net in nets.items():
        assert store.latest_model(kind) == shas[kind]
        state, meta = store.load_model(shas[kind], kind=kind)
        assert meta["note"] == kind and all(torch.equal(state[k], v) for k, v in net.state_dict().items())
