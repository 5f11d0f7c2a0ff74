"""The hold-out rediscovery benchmark end to end: a tiny run that is SIGKILLed inside the pool
route's campaign, resumed through the CLI sub-app, and scored; leak checks on what it stored."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tests.flows.campaign.fault_harness import REPO, HarnessEnv

TINY = REPO / "deploy" / "benchmarks" / "rediscovery_tiny.yaml"
CHILD = (
    "import sys; from flows.pipelines.rediscovery import rediscovery_flow; "
    "rediscovery_flow(sys.argv[1], mongodb_uri=sys.argv[2], database=sys.argv[3])"
)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """The committed tiny config with its model files and caches under ``tmp_path``."""
    data = yaml.safe_load(TINY.read_text())
    data["out_dir"] = str(tmp_path / "out")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tiny_benchmark_resumes_after_a_kill_and_scores(
    mongo_uri: str, prefect_harness: None, tiny_config: Path, tmp_path: Path
) -> None:
    import prefect.settings

    from alcore.holdout import leaked, make_split
    from flows.cli.bench import app as bench_app
    from flows.pipelines.rediscovery import benchmark_universe, split_key
    from flows.pipelines.rediscovery_config import load_rediscovery_config
    from flows.store import Store

    database = f"t_{uuid.uuid4().hex[:10]}"
    henv = HarnessEnv(mongo_uri, database, prefect.settings.PREFECT_API_URL.value(), tmp_path)
    env = henv.environ()
    # killed inside the pool route's campaign: iteration 2, between the two candidate writes
    env.update({"ALFLOW_FAULT_POINT": "acquire:2:mid-candidates", "ALFLOW_FAULT_MARKER": str(tmp_path / "fired")})
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_config), mongo_uri, database],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -9, child.stderr[-3000:]
    assert (tmp_path / "fired").read_text() == "acquire:2:mid-candidates"

    cfg = load_rediscovery_config(tiny_config)
    key = split_key(cfg, 0)
    store = Store.from_uri(mongo_uri, database)
    try:
        done_before = {d["stage"]: d["finished_at"] for d in store.bench_stages(split=key)}
        assert {"split", "data", "oracle", "autoencoder", "matgan", "pool", "screening"} <= set(done_before)
        assert "pool-al" not in done_before

        out = tmp_path / "results"
        res = CliRunner().invoke(
            bench_app,
            [
                "rediscovery",
                str(tiny_config),
                "--mongodb-uri",
                mongo_uri,
                "--database",
                database,
                "--json",
                str(out / "rd.json"),
                "--proposals",
                str(out / "rd_proposals.json.gz"),
                "--png",
                str(out / "rd.png"),
            ],
            env={"ALFLOW_FAULT_POINT": ""},
        )
        assert res.exit_code == 0, res.output
        assert "rediscoveries of hidden materials" in res.output and "screen: oracle" in res.output

        # resumed, not redone: stages finished before the kill kept their result; one model per kind
        after = {d["stage"]: d["finished_at"] for d in store.bench_stages(split=key)}
        assert all(after[s] == t for s, t in done_before.items())
        for kind in ("rediscovery_oracle", "rediscovery_autoencoder", "rediscovery_matgan"):
            assert store.db["models.files"].count_documents({"metadata.kind": kind}) == 1
        campaign = f"{cfg.name}-{key}-pool"
        labels = store.labels(campaign)
        acquired = [d for d in labels if d["source"] != "seed"]
        assert len(acquired) == cfg.acquisitions == len({d["formula"] for d in acquired})
        assert all(d["source"].startswith("holdout-oracle:") for d in acquired)

        # nothing the pipeline learned from holds a hidden formula
        split = make_split(benchmark_universe(cfg), cfg.protocol, cfg.fraction, 0)
        data = next(d for d in store.bench_stages(split=key, stage="data"))["result"]
        assert leaked(data["seeds"]["formula"] + data["validation"]["formula"], split) == []
        assert leaked([d["formula"] for d in labels if d["source"] == "seed"], split) == []

        # the oracle learned something: on the seed labels it beats the constant mean predictor
        from flows.pipelines.rediscovery import SplitRun

        run = SplitRun(cfg, store, 0, split, key)
        y = np.array(data["seeds"]["value"])
        pred = run.oracle.predict(data["seeds"]["formula"]).mean
        assert np.mean(np.abs(pred - y)) < np.mean(np.abs(y - y.mean()))
    finally:
        store.client.drop_database(database)
        store.close()

    result = json.loads((out / "rd.json").read_text())
    lists = {lst["list"]: lst for lst in result["splits"][0]["score"]["lists"]}
    assert set(lists) == {
        "screening/oracle",
        "pool-AL/acquired",
        "pool-AL/screen",
        "random-pool-labels/acquired",
        "random-pool-labels/screen",
        "random-MP-labels/screen",
        "random/pool",
        "random/SMACT",
    }
    for lst in lists.values():
        assert [s["k"] for s in lst["scores"]] == [5, 10]
        top = lst["scores"][-1]
        assert 0 <= top["rediscoveries"]["ge4"] <= min(10, top["n_proposed"])
        assert top["precision"] == pytest.approx(top["rediscoveries"]["ge4"] / 10)
    assert lists["pool-AL/acquired"]["n"] <= cfg.acquisitions
    assert {r["list"] for r in result["summary"]} == set(lists)
    proposals = json.loads(gzip.decompress((out / "rd_proposals.json.gz").read_bytes()))["lists"]
    screen = next(p for p in proposals if p["list"] == "screening/oracle")
    assert screen["seed"] == 0 and screen["route"] == "screening"
    assert screen["scores"] == sorted(screen["scores"], reverse=True)  # ranked best first
    assert (out / "rd.png").stat().st_size > 1000
    assert os.environ.get("ALFLOW_FAULT_POINT") in (None, "")


def test_bad_configs_get_one_line_errors(tmp_path: Path) -> None:
    from flows.cli.bench import app as bench_app

    missing = CliRunner().invoke(bench_app, ["rediscovery", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output and "Traceback" not in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nroutes: [screening, magic]\nacquisitions: 10\npool_q: 3\n")
    res = CliRunner().invoke(bench_app, ["rediscovery", str(bad)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "unknown route" in res.output and "magic" in res.output
    bad.write_text("name: x\nacquisitions: 10\npool_q: 3\n")
    res = CliRunner().invoke(bench_app, ["rediscovery", str(bad)])
    assert res.exit_code == 2 and "multiple of pool_q" in res.output
