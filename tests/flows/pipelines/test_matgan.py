"""The train-matgan flow: weights in a folder and in MongoDB, a second run continues the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flows.pipelines.matgan import train_matgan_flow
from flows.pipelines.training import TrainingTarget
from flows.store import Store
from generators import matgan as M


@pytest.mark.slow  # two short trainings plus 5,000-sample evaluations: ~1 min
def test_train_matgan_flow_stores_models_and_resumes(
    prefect_harness: None, store: Store, mongo_uri: str, tmp_path: Path
) -> None:
    kwargs = dict(
        gan=M.GANConfig(epochs=1000, ch=8, time_budget_s=0.05 * 60),
        ae_minutes=0.05,
        target=TrainingTarget(out=str(tmp_path), mongodb_uri=mongo_uri, database=store.db.name),
    )
    first = train_matgan_flow(**kwargs)
    assert (tmp_path / "checkpoints" / "matgan_gan.pt").exists()
    assert first["gan_history"]["runs"] == 1 and 0 < first["gan_history"]["epochs"] < 1
    second = train_matgan_flow(**kwargs)
    assert second["gan_history"]["runs"] == 2
    assert second["gan_history"]["steps"] > first["gan_history"]["steps"]
    assert second["gan_history"]["seconds"] > first["gan_history"]["seconds"]
    # the stored generator is the one in the folder, and it loads back by sha256
    sha = second["model_sha256"][M.GENERATOR_NAME]
    assert store.latest_model(M.GENERATOR_NAME) == sha
    state, meta = store.load_model(sha, kind=M.GENERATOR_NAME)
    on_disk, _ = M.load_trained(tmp_path, M.GENERATOR_NAME)
    assert all(torch.equal(state[k], v) for k, v in on_disk.state_dict().items())
    assert meta["runs"] == 2 and meta["lr_schedule"] == [[0.0, 1e-3]] and meta["n_formulas"] == first["n_formulas"]
    assert store.latest_model(M.AUTOENCODER_NAME) == second["model_sha256"][M.AUTOENCODER_NAME]
    assert 0 <= second["metrics"]["gen_validity"] <= 1
