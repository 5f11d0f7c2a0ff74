"""Readers for the committed data sets (file I/O lives here, not in the pure packages)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import pandas as pd

from alcore.composition import CompositionEncoder, InvalidFormulaError, canonical_formula
from alcore.paths import data_file

BANDGAP_FILES = {
    "agd_exp1_42k": ("bandgap", "agd_exp1_42k.csv", "composition", "Eg"),
    "agd_exp2_init_1k": ("bandgap", "agd_exp2_init_1k.csv", "composition", "Eg"),
    "agd_exp3_init_300": ("bandgap", "agd_exp3_init_300.csv", "composition", "Eg"),
    "agd_test_500": ("bandgap", "agd_test_500.csv", "composition", "Eg"),
    "matbench_mp_gap": ("bandgap", "matbench_mp_gap.csv", "formula", "target"),
}


def file_sha256(*parts: str) -> str:
    """sha256 (hex) of a committed data file, for model metadata."""
    return hashlib.sha256(data_file(*parts).read_bytes()).hexdigest()


@lru_cache(maxsize=16)
def band_gap_table(name: str) -> pd.DataFrame:
    """A band-gap data set as a DataFrame with columns ``formula`` (canonical) and ``value`` (eV).

    Duplicated canonical formulas keep their first row (the AGD sets have none; matbench has
    polymorphs, for which the first listed is kept). ``name`` is a key of :data:`BANDGAP_FILES`.
    """
    if name not in BANDGAP_FILES:
        raise KeyError(f"unknown band-gap data set {name!r}; known: {sorted(BANDGAP_FILES)}")
    folder, fname, fcol, vcol = BANDGAP_FILES[name]
    df = pd.read_csv(data_file(folder, fname))
    formulas = []
    for f in df[fcol]:
        try:
            formulas.append(canonical_formula(str(f)))
        except InvalidFormulaError:
            formulas.append(None)
    out = pd.DataFrame({"formula": formulas, "value": df[vcol].astype(float)})
    return out.dropna().drop_duplicates("formula").reset_index(drop=True)


@lru_cache(maxsize=1)
def known_formulas() -> frozenset[str]:
    """Canonical formulas of every Materials Project material (the novelty reference set)."""
    df = pd.read_csv(data_file("known", "mp_formulas_spacegroups.csv"))
    out = set()
    for f in df["pretty_formula"].astype(str):
        try:
            out.add(canonical_formula(f))
        except InvalidFormulaError:
            continue
    return frozenset(out)


def autoencoder_corpus(encoder: CompositionEncoder) -> list[str]:
    """Sorted canonical MP formulas representable by ``encoder``: the autoencoder's training corpus.

    Union of all MP formulas (known set) and the band-gap sets, restricted to what the one-hot
    matrix can hold.
    """
    pool = set(known_formulas())
    for name in ("agd_exp1_42k", "matbench_mp_gap"):
        pool.update(band_gap_table(name)["formula"])
    return sorted(f for f in pool if encoder.representable(f)[0])


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic shuffled ``(train_idx, val_idx)`` of ``range(n)``."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
