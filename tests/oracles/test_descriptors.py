"""Composition descriptors: the padded packing of parsed formulas, the versioned ``ext`` layout."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.descriptors import (
    _NEUTRAL_EDGES,
    DESCRIPTOR_VERSION,
    EXT_DESCRIPTOR_VERSION,
    ExtendedFeaturiser,
    Featuriser,
    _fractions,
    band_edge_features,
    element_table,
    featuriser_for_version,
    pad_parsed,
)


def test_pad_parsed_zero_pads_to_the_most_elements():
    table = element_table()
    parsed = [_fractions(f, table) for f in ("NaCl", "Mg2SiO4", "Si")]
    idx, frac = pad_parsed(parsed, np.int16)
    assert idx.shape == frac.shape == (3, 3) and idx.dtype == np.int16 and frac.dtype == np.float64
    for row, (ix, fr) in enumerate(parsed):
        assert idx[row, : len(ix)].tolist() == list(ix) and np.allclose(frac[row, : len(fr)], fr)
        assert not frac[row, len(fr) :].any() and not idx[row, len(ix) :].any()
    assert np.allclose(frac.sum(axis=1), 1.0)


def test_extended_descriptor_appends_fractions_band_edges_and_homo_stats():
    base, ext = Featuriser(), ExtendedFeaturiser()
    X, reasons = ext.transform(["SrTiO3", "HLi", "Og"])
    B, _ = base.transform(["SrTiO3", "HLi"])
    assert X.shape == (3, 413) == (3, ext.n_features) and reasons[:2] == [None, None] and "Og" in reasons[2]
    assert np.isnan(X[2]).all()
    np.testing.assert_array_equal(X[:2, :301], B)  # the base block is unchanged
    table = element_table()
    fractions = X[:, 301:404]
    assert np.isclose(fractions[0, table.index["O"]], 0.6) and np.isclose(fractions[0, table.index["Sr"]], 0.2)
    # H is element 0, where zero padding also points: its fraction must survive the padding
    assert np.isclose(fractions[1, table.index["H"]], 0.5) and np.isclose(fractions[1].sum(), 1.0)
    # pymatgen's own example: SrTiO3 HOMO = O 2p (-0.338381 Ha), LUMO = Ti 3d (-0.17001 Ha), not a metal
    homo, lumo, gap, metal = X[0, 404:408]
    assert np.isclose(homo, -0.338381, atol=1e-6) and np.isclose(lumo, -0.17001, atol=1e-5)
    assert np.isclose(gap, lumo - homo, atol=1e-6) and metal == 0.0
    mean, std, lo, hi, spread = X[0, 408:]
    assert lo <= mean <= hi and std > 0 and np.isclose(spread, hi - lo, atol=1e-6)
    assert band_edge_features("Fe0.5O0.5") == _NEUTRAL_EDGES  # fractional counts: neutral, no crash


def test_featuriser_for_version_is_shared_and_rejects_unknown_layouts():
    assert featuriser_for_version(EXT_DESCRIPTOR_VERSION) is featuriser_for_version(EXT_DESCRIPTOR_VERSION)
    assert isinstance(featuriser_for_version(EXT_DESCRIPTOR_VERSION), ExtendedFeaturiser)
    assert featuriser_for_version(DESCRIPTOR_VERSION).version == DESCRIPTOR_VERSION
    with pytest.raises(KeyError, match="not computed by this code"):
        featuriser_for_version("magpie-v0")
