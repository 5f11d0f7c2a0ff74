"""The default band-gap oracle is the default everywhere, and the AGD experiment configs keep resnet-agd."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from oracles.defaults import DEFAULT_BANDGAP_ORACLE
from oracles.registry import DEFAULT_BANDGAP_ORACLE as REGISTRY_DEFAULT
from oracles.registry import known_oracles

ROOT = Path(__file__).resolve().parents[2]


def test_one_default_and_it_is_registered() -> None:
    assert DEFAULT_BANDGAP_ORACLE == REGISTRY_DEFAULT == "resnet-mp-ext"
    assert DEFAULT_BANDGAP_ORACLE in known_oracles()


def test_predict_screening_and_campaigns_default_to_it() -> None:
    from flows.cli.oracles import predict
    from flows.cli.pools import screen_pool_cmd
    from flows.config import parse_config
    from flows.deployments import screen_pool_job
    from flows.pipelines.screening import screen_pool_flow

    assert inspect.signature(predict).parameters["oracle"].default == DEFAULT_BANDGAP_ORACLE
    assert inspect.signature(screen_pool_cmd).parameters["oracle"].default.default == DEFAULT_BANDGAP_ORACLE
    assert inspect.signature(screen_pool_flow).parameters["model"].default == DEFAULT_BANDGAP_ORACLE
    assert inspect.signature(screen_pool_job.fn).parameters["model"].default == DEFAULT_BANDGAP_ORACLE
    assert parse_config({"name": "fresh"}).oracle == DEFAULT_BANDGAP_ORACLE
    deployments = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())["deployments"]
    models = [d["parameters"]["model"] for d in deployments if "model" in (d.get("parameters") or {})]
    assert models and all(m == DEFAULT_BANDGAP_ORACLE for m in models)


def test_the_agd_experiment_configs_keep_naming_resnet_agd() -> None:
    """The AGD reproductions were run with resnet-agd: each names it, so the default switch changes nothing."""
    from flows.config import load_config

    paths = sorted((ROOT / "deploy" / "campaigns").glob("agd_*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        raw = yaml.safe_load(path.read_text())
        assert raw.get("oracle") == "resnet-agd", path.name  # named explicitly, not the default
        assert load_config(path).oracle == "resnet-agd"
