"""The pair tokeniser: round trips on every MP formula, canonical order, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.composition import reduced_counts
from alcore.errors import InvalidFormulaError
from generators.complm.tokens import (
    EF_NEG,
    EOS,
    GAP_NULL,
    PAIR0,
    FormulaTokenizer,
    condition_tokens,
    gap_token,
)
from generators.matgan import known_formulas, training_formulas


def test_round_trip_on_all_mp_formulas() -> None:
    """A tokeniser over the 103 elements with MP's largest reduced count round-trips every MP formula."""
    known = sorted(known_formulas())
    max_count = max(c for f in known for _, c in reduced_counts(f))
    max_el = max(len(reduced_counts(f)) for f in known)
    tok = FormulaTokenizer("z103", max_count=max_count, max_elements=max_el)
    rows = tok.encode_batch(known)
    assert tok.decode(rows) == known
    assert len(known) > 80_000


def test_model_tokeniser_round_trips_its_training_formulas_and_orders_elements() -> None:
    tok = FormulaTokenizer()
    forms = training_formulas(valid_only=True)
    rows = tok.encode_batch(forms)
    assert tok.decode(rows) == forms
    pairs = rows[:, 2:]
    both = (pairs[:, 1:] >= PAIR0) & (pairs[:, :-1] >= PAIR0)
    rank = (pairs - PAIR0) // tok.max_count
    assert (np.diff(rank, axis=1)[both] > 0).all()  # strictly increasing: one sequence per composition
    assert tok.encode("NaCl", gap_token(6.0), EF_NEG)[-1] == EOS
    assert tok.decode(np.array([tok.encode("Mg2O2")]))[0] == "MgO"


def test_unrepresentable_formulas_and_unknown_conditions_raise() -> None:
    tok = FormulaTokenizer()
    with pytest.raises(InvalidFormulaError, match="above the tokeniser maximum"):
        tok.pairs("Fe9O")
    with pytest.raises(InvalidFormulaError, match="not in the 85-element list"):
        tok.pairs("TcO2")
    with pytest.raises(ValueError, match="unknown gap bin"):
        condition_tokens("wide")
    assert condition_tokens(None, None)[0] == GAP_NULL
    assert [gap_token(g) for g in (0.0, 1.0, 2.0, 4.0, 7.0, None)] == [3, 4, 5, 6, 7, GAP_NULL]
