"""The autoencoder training flow's floor on held-out reconstruction: restarts from a new
initialisation, and a one-line error (nothing saved) when no attempt reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from alcore.composition import CompositionEncoder
from flows.datasets import band_gap_table
from flows.pipelines import autoencoder as ae_flow


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    enc = CompositionEncoder("agd87")
    return [f for f in band_gap_table("agd_exp1_42k")["formula"][:1000] if enc.representable(f)[0]][:400]


def test_a_run_below_the_floor_is_redone_from_a_new_initialisation(
    corpus: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ae_flow.train_autoencoder
    seeds: list[int] = []

    def first_run_stuck(*args, seed: int, **kwargs):  # the first initialisation "plateaus"
        seeds.append(seed)
        result = real(*args, seed=seed, **kwargs)
        result.metrics["val_exact"] = 0.0 if len(seeds) == 1 else 0.9
        return result

    monkeypatch.setattr(ae_flow, "train_autoencoder", first_run_stuck)
    meta = ae_flow.train_and_save_autoencoder(
        tmp_path / "ae.safetensors", epochs=2, corpus=corpus, seed=3, progress=False, min_val_exact=0.5, restarts=2
    )
    assert seeds == [3, 1003]
    assert [a["seed"] for a in meta["attempts"]] == [3, 1003] and meta["attempts"][0]["val_exact"] == 0.0
    assert meta["metrics"]["seed"] == 1003 and meta["metrics"]["val_exact"] == 0.9
    assert meta["loss_history"][-1] < meta["loss_history"][0]  # the kept run learned something
    assert (tmp_path / "ae.safetensors").exists()


def test_no_attempt_reaching_the_floor_is_a_one_line_error_and_saves_nothing(corpus: list[str], tmp_path: Path) -> None:
    from alcore.errors import AlflowError

    out = tmp_path / "ae.safetensors"
    with pytest.raises(AlflowError, match=r"in 2 attempts \(floor 100.0 %\); train more epochs") as err:
        ae_flow.train_and_save_autoencoder(out, epochs=1, corpus=corpus, progress=False, min_val_exact=1.0, restarts=1)
    assert "\n" not in str(err.value)
    assert not out.exists()
