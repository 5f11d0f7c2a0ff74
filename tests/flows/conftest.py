"""Fixtures shared by the flow tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows.config import CampaignConfig, parse_config
from flows.datasets import band_gap_table
from flows.pipelines.autoencoder import train_and_save_autoencoder


@pytest.fixture(scope="session")
def tiny_ae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small autoencoder trained for 3 epochs on 2,000 AGD formulas, once per test session."""
    from alcore.composition import CompositionEncoder

    enc = CompositionEncoder("agd87")
    corpus = [f for f in band_gap_table("agd_exp1_42k")["formula"][:4000] if enc.representable(f)[0]][:2000]
    out = tmp_path_factory.mktemp("ae") / "tiny_ae.safetensors"
    train_and_save_autoencoder(out, epochs=3, corpus=corpus, progress=False)
    return out


def store_uri(store) -> str:
    """A mongodb:// URI of the test ``store``'s server (direct connection)."""
    host, port = store.client.address
    return f"mongodb://{host}:{port}/?directConnection=true"


def run_cli(args: list[str], store, monkeypatch, capsys, **env: str) -> tuple[int, str, str]:
    """Run ``alflow ARGS`` through the real entry point (``flows.cli.main``) against ``store``'s
    database with the environment ``env``; returns ``(exit status, stdout, stderr)``."""
    from flows import cli

    monkeypatch.setenv("ALFLOW_MONGODB_URI", store_uri(store))
    monkeypatch.setenv("ALFLOW_DATABASE", store.db.name)
    monkeypatch.setenv("ALFLOW_SERVER_TIMEOUT_S", "10")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["alflow", *args])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def pool_config(tiny_ae: Path, name: str, **overrides: object) -> CampaignConfig:
    """A small seeded pool-mode campaign (lookup oracle, 40 seeds, q = 3, 2,000-formula pool)."""
    return parse_config(pool_config_dict(tiny_ae, name, **overrides))


def pool_config_dict(tiny_ae: Path, name: str, **overrides: object) -> dict[str, object]:
    """The mapping behind :func:`pool_config`; ``overrides`` replace top-level keys."""
    base: dict[str, object] = {
        "name": name,
        "mode": "pool",
        "iterations": 3,
        "seed": 7,
        "oracle": "lookup",
        "seeds": {"dataset": "agd_exp3_init_300", "n": 40},
        "autoencoder": str(tiny_ae),
        "acquisition": {"q": 3, "beta": 25.0, "num_restarts": 2, "raw_samples": 32, "maxiter": 10, "mc_samples": 32},
        "gp": {"maxiter": 15},
        "screening_epochs": 20,
        "pool_size": 2000,
        "validation": "agd_test_500",
    }
    base.update(overrides)
    return base
