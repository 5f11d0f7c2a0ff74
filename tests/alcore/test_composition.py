"""Composition encoding: canonical formulas, one-hot round trip, every bad input's clear error."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.composition import (
    AGD87,
    ELEMENT_LISTS,
    MATGAN85,
    Z103,
    CompositionEncoder,
    InvalidFormulaError,
    canonical_formula,
    reduced_counts,
)
from flows.datasets import band_gap_table


def test_element_lists_have_documented_sizes():
    assert (len(MATGAN85), len(AGD87), len(Z103)) == (85, 87, 103)
    assert set(MATGAN85) < set(AGD87) < set(Z103)
    assert ELEMENT_LISTS["agd87"] == AGD87


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Mg2O2", "MgO"),
        ("SrYF5", "SrYF5"),
        ("Fe0.5O0.75", "Fe2O3"),
        ("O3Fe2", "Fe2O3"),
        ("Ca(OH)2", "Ca(HO)2"),
        ("  NaCl ", "NaCl"),
    ],
)
def test_canonical_formula(raw, canonical):
    assert canonical_formula(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Xx2O", "unknown element 'Xx'"),
        ("NaCl)(", "cannot parse"),
        ("Fe0.3333O", "not a ratio of small integers"),
        (42, "expected a string"),
    ],
)
def test_malformed_formulas_raise_clear_errors(raw, reason):
    with pytest.raises(InvalidFormulaError, match=reason) as info:
        reduced_counts(raw) if isinstance(raw, str) else canonical_formula(raw)
    assert repr(raw) in str(info.value)


def test_encoder_limits_give_clear_errors():
    enc = CompositionEncoder("agd87", max_count=8, max_elements=4)
    with pytest.raises(InvalidFormulaError, match="above the encoding maximum of 8"):
        enc.encode("Mg1Mn6O12")
    with pytest.raises(InvalidFormulaError, match="5 elements, more than the maximum of 4"):
        enc.encode("LiNaKRbCs")
    with pytest.raises(InvalidFormulaError, match="He not in the 87-element list"):
        enc.encode("HeO")
    with pytest.raises(InvalidFormulaError, match="unknown element"):
        enc.encode("Qq")


def test_encode_decode_round_trip_on_all_representable_agd_formulas():
    enc = CompositionEncoder("agd87")
    formulas = list(band_gap_table("agd_exp1_42k")["formula"])
    result = enc.encode_batch(formulas, errors="mask")
    assert result.matrices.shape == (len(formulas), 87, 8)
    ok = np.flatnonzero(result.valid)
    assert len(ok) > 25_000
    assert all(result.reasons[i] for i in np.flatnonzero(~result.valid))
    decoded = enc.decode(result.matrices[ok])
    assert decoded == [formulas[i] for i in ok]
    # each present element has exactly one 1, absent ones none
    assert np.all(result.matrices[ok].sum(axis=2) <= 1)


def test_batch_encoding_raises_on_first_bad_formula_by_default():
    with pytest.raises(InvalidFormulaError, match="Zz"):
        CompositionEncoder().encode_batch(["NaCl", "Zz3"])


def test_decode_counts_thresholds_probabilities():
    enc = CompositionEncoder("agd87")
    m = np.zeros((87, 8), dtype=np.float32)
    m[enc.index["Na"], 0] = 0.9
    m[enc.index["Cl"], 0] = 0.7
    m[enc.index["K"], 2] = 0.3  # below threshold: absent
    assert enc.decode(m[None])[0] == "NaCl"


def test_canonical_set_reads_str_and_skips_the_unparsable():
    from alcore.composition import canonical_set

    assert canonical_set(["Mg2O2", "MgO", "Na(Cl", "", "XyO2", 7, "NaCl"]) == {"MgO", "NaCl"}
