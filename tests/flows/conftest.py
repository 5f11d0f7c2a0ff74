"""Fixtures shared by the flow tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.autoencoder_flow import train_and_save_autoencoder
from flows.datasets import band_gap_table


@pytest.fixture(scope="session")
def tiny_ae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small autoencoder trained for 3 epochs on 2,000 AGD formulas, once per test session."""
    from alcore.composition import CompositionEncoder

    enc = CompositionEncoder("agd87")
    corpus = [f for f in band_gap_table("agd_exp1_42k")["formula"][:4000] if enc.representable(f)[0]][:2000]
    out = tmp_path_factory.mktemp("ae") / "tiny_ae.safetensors"
    train_and_save_autoencoder(out, epochs=3, corpus=corpus, progress=False)
    return out
