"""The Prefect flow "cccgan": tiny training into a temporary folder, generation for two compositions
(one absent from the data), storage into `structures` and idempotent reruns."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli.cccgan import app
from flows.pipelines.cccgan import CAMPAIGN, Evaluation, cccgan_flow
from flows.store import Store
from tests.conftest import CCCGAN_SMALL_NET

TINY = {"max_steps": 30, "per_composition": 5, **CCCGAN_SMALL_NET}


@pytest.mark.slow
def test_flow_trains_generates_and_stores(prefect_harness, store: Store, mongo_uri: str, tmp_path: Path) -> None:
    kwargs = dict(
        compositions=["Mg2Mn4O8", "Mg2Mn3O7"],
        evaluation=Evaluation(n=4, seed=3, max_relax=0),
        weights="cccgan_tiny",
        weights_dir=str(tmp_path),
        retrain=True,
        train_config=TINY,
        mongodb_uri=mongo_uri,
        database=store.db.name,
    )
    out = cccgan_flow(**kwargs)
    assert (tmp_path / "cccgan_tiny.safetensors").exists() and (tmp_path / "cccgan_tiny.json").exists()
    assert out["campaign"] == CAMPAIGN and out["written"] == 8
    assert set(out["summary"]) == {"Mg2Mn4O8", "Mg2Mn3O7"}
    assert out["summary"]["Mg2Mn4O8"]["in_training"] and not out["summary"]["Mg2Mn3O7"]["in_training"]
    docs = list(store.db.structures.find({"campaign": CAMPAIGN}))
    assert len(docs) == 8
    assert {d["formula"] for d in docs} == {"MgMn2O4", "Mg2Mn3O7"}
    assert all(d["template_id"].startswith("cccgan-3-") for d in docs)
    assert all(d["verdict"] in {"invalid", "known", "unrelaxed"} for d in docs)
    for d in docs:
        if d["validity"]["valid"]:
            assert d["cif"] and d["validity"]["min_dist"] >= 1.0
    # rerun (loading the saved weights): same keys, rewritten, not duplicated
    kwargs["retrain"] = False
    cccgan_flow(**kwargs)
    assert store.db.structures.count_documents({"campaign": CAMPAIGN}) == 8


def test_cli_rejects_bad_composition() -> None:
    result = CliRunner().invoke(app, ["generate", "Mg9MnO4", "--max-relax", "0"])
    assert result.exit_code == 2  # user errors exit with 2 (flows.cli.common)
    assert "outside 1..8" in result.output
