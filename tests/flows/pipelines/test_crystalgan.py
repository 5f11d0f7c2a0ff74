"""The "crystalgan" Prefect flow: load/train, generate, upsert accepted structures (idempotently); the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli.crystalgan import app
from flows.pipelines.crystalgan import crystalgan_flow, structure_documents
from generators.crystalgan.train import CrystalGANConfig, load_weights, save_weights, train_crystalgan

# a 150-epoch training plus the Prefect test harness: ~50 s of CPU, several minutes on a loaded machine
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A briefly trained model saved as safetensors + json: ``(stem, model)``."""
    cfg = CrystalGANConfig(epochs1=150, epochs2=20, lr=1e-3, gen_steps=1, seed=3)
    model = train_crystalgan(cfg)
    stem = tmp_path_factory.mktemp("cg") / "crystalgan_tiny"
    save_weights(model, stem)
    return stem, model


def test_flow_upserts_accepted_structures(prefect_harness, store, mongo_uri, tiny) -> None:
    stem, model = tiny
    # the tiny model may accept few structures: store everything it decodes through the same path
    docs = structure_documents(model, [None, 1], accepted_only=False)
    assert docs and all(d["campaign"] == "crystalgan:Pd-Ni-H" for d in docs)
    assert {d["verdict"] for d in docs} <= {"accepted", "rejected"}
    assert docs[0]["template_id"].startswith("crystalgan-3-") and "data_" in docs[0]["cif"]
    n = store.upsert_structures(docs)
    assert store.db["structures"].count_documents({}) == n == len(docs)

    res = crystalgan_flow(weights=str(stem), seeds=[0, 1], mongodb_uri=mongo_uri, database=store.db.name)
    accepted = store.db["structures"].count_documents({"verdict": "accepted"})
    assert res["campaign"] == "crystalgan:Pd-Ni-H" and res["generated"] == 140
    assert res["written"] == res["accepted"] == len(res["template_ids"])
    again = crystalgan_flow(weights=str(stem), seeds=[0, 1], mongodb_uri=mongo_uri, database=store.db.name)
    assert again["template_ids"] == res["template_ids"]  # deterministic ids
    assert store.db["structures"].count_documents({"verdict": "accepted"}) == accepted  # upsert, no duplicates
    for doc in store.db["structures"].find({"verdict": "accepted"}):
        m = doc["metrics"]
        assert 1.8 <= m["min_metal_nn"] <= m["max_metal_nn"] <= 3.0


def test_cli_export_and_generate(tmp_path, tiny) -> None:
    stem, _ = tiny
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["export", "--format", "cif", "--out", str(out), "--weights", str(stem), "--include-rejected"]
    )
    assert r.exit_code == 0, r.output
    files = list(out.glob("*.cif"))
    assert files and f"wrote {len(files)} cif files" in r.output
    r = runner.invoke(app, ["export", "--format", "xyz", "--out", str(out), "--weights", str(stem)])
    assert r.exit_code == 2
    r = runner.invoke(app, ["generate", "--weights", str(tmp_path / "nope"), "--no-store"])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output  # user error (flows.cli.common)
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert load_weights(stem).config.seed == meta["params"]["seed"] == 3


def test_product_settings_and_cli_train_use_the_measured_remedy(tmp_path) -> None:
    from flows.pipelines.crystalgan import product_config

    cfg = product_config(seed=4)
    assert (cfg.weights.div, cfg.select_every, cfg.noise_dim, cfg.seed) == (3.0, 50, 0, 4)
    stem = tmp_path / "cg_cli"
    args = ["train", "--epochs1", "20", "--epochs2", "10", "--select-every", "5", "--seed", "2", "--out", str(stem)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["params"]["select_every"] == 5 and meta["params"]["weights"]["div"] == 3.0
