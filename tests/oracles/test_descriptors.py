"""Composition descriptors: the padded packing of parsed formulas."""

from __future__ import annotations

import numpy as np

from oracles.descriptors import _fractions, element_table, pad_parsed


def test_pad_parsed_zero_pads_to_the_most_elements():
    table = element_table()
    parsed = [_fractions(f, table) for f in ("NaCl", "Mg2SiO4", "Si")]
    idx, frac = pad_parsed(parsed, np.int16)
    assert idx.shape == frac.shape == (3, 3) and idx.dtype == np.int16 and frac.dtype == np.float64
    for row, (ix, fr) in enumerate(parsed):
        assert idx[row, : len(ix)].tolist() == list(ix) and np.allclose(frac[row, : len(fr)], fr)
        assert not frac[row, len(fr) :].any() and not idx[row, len(ix) :].any()
    assert np.allclose(frac.sum(axis=1), 1.0)
