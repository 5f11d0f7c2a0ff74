"""Operations layer: report PNGs and Prefect artifacts, deployment files, a served scheduled run."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from flows.campaign import run_campaign_in
from flows.config import parse_config
from tests.flows.conftest import pool_config

ROOT = Path(__file__).resolve().parents[3]


def _config(tiny_ae: Path, name: str, **overrides):
    return pool_config(tiny_ae, name, **{"iterations": 2, **overrides})


def _assert_png(path: Path, min_w: int = 300, min_h: int = 300) -> None:
    img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    h, w = img.shape
    assert w >= min_w and h >= min_h, (path, w, h)
    assert img.std() > 5.0, f"{path} looks blank (std {img.std():.2f})"
    assert (img < 128).mean() > 0.005, f"{path} has almost no dark pixels"


def test_publish_iteration_writes_plots_and_artifacts(store, tiny_ae, prefect_harness, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.reporting import discovery_series, publish_iteration, top_candidates

    result = run_campaign_in(store, _config(tiny_ae, "ops"))
    assert result["status"] == "finished"
    store.upsert_structures(
        [
            {
                "campaign": "ops",
                "formula": "MgO",
                "template_id": "mp-1265",
                "e_form": -3.0,
                "e_hull": 0.0,
                "verdict": "stable",
                "reason": None,
                "model": "SevenNet 7net-l3i5",
                "cif": "data_MgO\n_cell_length_a 4.2\n",
            }
        ]
    )

    # outside a flow run: files only
    pngs = publish_iteration(store, "ops", 2, tmp_path / "plain")
    assert sorted(p.name for p in pngs) == ["discovery.png", "latent.png", "parity.png"]
    for p in pngs:
        _assert_png(p)
    series = discovery_series(store, "ops")
    assert list(series["n_labels"]) == [40, 43, 46]
    assert np.all(np.diff(series["best_value"]) >= 0)
    rows = top_candidates(store, "ops")
    assert len(rows) == 6 and all(r["label_eV"] is not None for r in rows)

    # inside a flow run: artifacts attached to the run
    @flow(name="ops-report-test")
    def report(out: str) -> list[str]:
        return [str(p) for p in publish_iteration(store, "ops", 2, out)]

    out = tmp_path / "inrun"
    written = report(str(out))
    assert len(written) == 3
    cif = (out / "cifs" / "MgO__stable__mp-1265.cif").read_text()  # the verdict in the name, the judge in the header
    assert cif.startswith("# alflow: MgO verdict stable") and "judge: SevenNet 7net-l3i5" in cif

    async def artifacts() -> dict[str, str]:
        async with get_client() as client:
            arts = await client.read_artifacts()
            return {a.key: a.type for a in arts if a.key}

    found = asyncio.run(artifacts())
    for key, kind in {
        "ops-candidates": "table",
        "ops-structures": "table",
        "ops-summary": "markdown",
        "ops-discovery": "image",
        "ops-parity": "image",
        "ops-latent": "image",
    }.items():
        assert found.get(key) == kind, (key, found)


def test_report_cli_writes_pngs(store, tiny_ae, prefect_harness, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import ops as cli_ops

    run_campaign_in(store, _config(tiny_ae, "ops-cli", iterations=1))
    monkeypatch.setattr(cli_ops, "_store", lambda: store)
    res = CliRunner().invoke(cli_ops.app, ["report", "ops-cli", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "r").glob("*.png")} == {"discovery.png", "parity.png", "latent.png"}
    res = CliRunner().invoke(cli_ops.app, ["report", "no-such-campaign", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no campaign named" in res.output


# ---------------------------------------------------------------------------- deployment files (static)
def _flow_params(entrypoint: str):
    import importlib
    import inspect

    path, attr = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    fl = getattr(module, attr)
    return fl.name, set(inspect.signature(fl.fn).parameters)


def test_prefect_yaml_entrypoints_and_parameters_resolve():
    doc = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    assert doc["prefect-version"].startswith("3.8")
    names = {}
    for dep in doc["deployments"]:
        assert {"name", "entrypoint", "work_pool"} <= set(dep), dep
        assert dep["work_pool"]["name"] == "alflow-process"
        flow_name, params = _flow_params(dep["entrypoint"])
        assert set(dep.get("parameters") or {}) <= params, (dep["name"], params)
        for s in dep.get("schedules") or []:
            assert len(s["cron"].split()) == 5
        names[dep["name"]] = flow_name
        cfg = (dep.get("parameters") or {}).get("config_path")
        if cfg:
            parse_config(yaml.safe_load((ROOT / cfg).read_text()))
    assert {"campaign", "generate-pool", "screen-pool-job", "structures", "campaign-report"} <= set(names.values())


def test_compose_dockerfile_and_env_example_are_consistent():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mongo"]["image"] == "mongo:7"
    assert {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"} <= set(services["mongo"]["environment"])
    assert any(v.endswith(":/data/db") for v in services["mongo"]["volumes"])
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.8")
    worker = services["worker"]
    assert (
        ROOT / "deploy" / worker["build"]["context"] / worker["build"]["dockerfile"]
    ).resolve() == ROOT / "Dockerfile"
    assert "alflow-process" in worker["command"]
    assert {"PREFECT_API_URL", "ALFLOW_MONGODB_URI"} <= set(worker["environment"])
    assert set(compose["volumes"]) >= {"mongo-data", "prefect-data"}
    docker = (ROOT / "Dockerfile").read_text()
    assert docker.startswith("#") and "FROM python:3.11-slim" in docker
    assert "torch==2.13.0" in docker and "download.pytorch.org/whl/cpu" in docker
    assert "-c constraints.txt -e ." in docker
    for line in docker.splitlines():  # every COPY source exists
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"MONGO_ROOT_USERNAME", "MONGO_ROOT_PASSWORD"} <= set(env)
    assert "change-me" in env["MONGO_ROOT_PASSWORD"]
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "deploy" / "compose.yaml").read_text()))
    assert used <= set(env) | {"ALFLOW_MONGODB_URI"}, used - set(env)


# ---------------------------------------------------------------------------- a served, scheduled run
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=3)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


@pytest.mark.slow
def test_served_deployment_runs_on_schedule_and_publishes_artifacts(tiny_ae, mongo_uri, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        PREFECT_RUNNER_POLL_FREQUENCY="2",
        ALFLOW_MONGODB_URI=mongo_uri,
        ALFLOW_DATABASE="served",
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
    )
    cfg = {
        "name": "served",
        "mode": "pool",
        "iterations": 1,
        "seed": 3,
        "oracle": "lookup",
        "seeds": {"dataset": "agd_exp3_init_300", "n": 30},
        "autoencoder": str(tiny_ae),
        "acquisition": {"q": 2, "beta": 25.0},
        "gp": {"maxiter": 10},
        "screening_epochs": 6,
        "pool_size": 500,
    }
    cfg_path = tmp_path / "served.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    logs = (tmp_path / "server.log").open("w"), (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    served = None
    try:
        _wait_http(f"{api}/health", 240, server)
        served = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.cli",
                "ops",
                "serve",
                "--config",
                str(cfg_path),
                "--interval",
                "10",
                "--report-dir",
                str(tmp_path / "reports"),
            ],
            cwd=ROOT,
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        async def campaign_runs() -> list:
            async with get_client() as client:
                return await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["served"]))
                )

        with temporary_settings({PREFECT_API_URL: api}):
            t0 = time.monotonic()
            completed = []
            while time.monotonic() - t0 < 480 and not completed:
                assert served.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                runs = asyncio.run(campaign_runs())
                failed = [r for r in runs if r.state_type and r.state_type.value in {"FAILED", "CRASHED"}]
                assert not failed, (failed[0].state, (tmp_path / "serve.log").read_text()[-3000:])
                completed = [r for r in runs if r.state_type and r.state_type.value == "COMPLETED"]
                time.sleep(3)
            assert completed, (runs, (tmp_path / "serve.log").read_text()[-3000:])
            assert completed[0].auto_scheduled, "the completed run was not created by the schedule"

            async def pause_campaign() -> None:  # stop the 10-s schedule so the report run gets a slot
                async with get_client() as client:
                    dep = await client.read_deployment_by_name("campaign/served")
                    await client.pause_deployment(dep.id)
                    for r in await campaign_runs():
                        if r.state_type and r.state_type.value == "SCHEDULED":
                            await client.delete_flow_run(r.id)

            asyncio.run(pause_campaign())

            from prefect.deployments import run_deployment

            report = run_deployment("campaign-report/served", timeout=300)
            assert report.state.is_completed(), report.state

            async def artifacts() -> dict[str, str]:
                async with get_client() as client:
                    return {a.key: a.type for a in await client.read_artifacts() if a.key}

            found = asyncio.run(artifacts())
        assert found.get("served-candidates") == "table" and found.get("served-discovery") == "image", found
        assert (tmp_path / "reports" / "served" / "latent.png").exists()
    finally:
        if served is not None:
            _stop(served)
        _stop(server)
        for fh in logs:
            fh.close()
