"""Table oracles: ``LookupOracle`` (a known table, the closed-world benchmark's stand-in for DFT) and
``ExternalOracle`` (labels come from outside alflow, imported through the CLI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from alcore.composition import InvalidFormulaError, canonical_formula
from oracles.base import Prediction


class LookupOracle:
    """Returns the tabulated value of each formula (std 0); formulas not in the table get NaN and
    the reason ``"not in table <name>"``. ``table`` maps canonical formulas to values."""

    property = "band_gap"

    def __init__(self, table: Mapping[str, float], name: str = "lookup", property: str = "band_gap") -> None:
        self.table = dict(table)
        self.name = name
        self.property = property

    def predict(self, formulas: Sequence[str]) -> Prediction:
        """Look up each formula (canonicalised first); returns a :class:`Prediction`."""
        mean = np.full(len(formulas), np.nan)
        reasons: list[str | None] = [None] * len(formulas)
        for i, f in enumerate(formulas):
            try:
                key = canonical_formula(f)
            except InvalidFormulaError as exc:
                reasons[i] = exc.reason
                continue
            if key in self.table:
                mean[i] = self.table[key]
            else:
                reasons[i] = f"not in table {self.name}"
        std = np.where(np.isfinite(mean), 0.0, np.nan)
        return Prediction(mean, std, reasons)


class ExternalOracle:
    """Labels made outside alflow (DFT, experiment) and imported with ``alflow labels import``.

    ``predict`` never invents a value: every formula gets NaN and a reason saying how to supply it.
    The campaign's label stage sees ``is_external`` and waits for imported labels instead.
    """

    is_external = True

    def __init__(self, name: str = "external", property: str = "band_gap") -> None:
        self.name = name
        self.property = property

    def predict(self, formulas: Sequence[str]) -> Prediction:
        """NaN for every formula with the reason "awaiting an external label"."""
        n = len(formulas)
        reason = "awaiting an external label: import it with `alflow labels import`"
        return Prediction(np.full(n, np.nan), np.full(n, np.nan), [reason] * n)
