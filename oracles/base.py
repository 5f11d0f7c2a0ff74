"""The oracle interface: anything that labels formulas with a property mean and uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Prediction:
    """Predictions for N formulas: ``mean`` and ``std`` (N,) float64 in the property's unit (eV for
    band gaps, eV/atom for formation energies); a formula that could not be predicted has NaN in both
    and its reason in ``reasons[i]`` (None where the prediction is fine)."""

    mean: np.ndarray
    std: np.ndarray
    reasons: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if not self.reasons:
            self.reasons = [None] * len(self.mean)
        if not (len(self.mean) == len(self.std) == len(self.reasons)):
            raise ValueError("mean, std and reasons must have the same length")

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: True where the prediction is a finite number."""
        return np.isfinite(self.mean)


@runtime_checkable
class Oracle(Protocol):
    """Labels formulas. ``name`` identifies it in configs; ``property`` names what it predicts."""

    name: str
    property: str

    def predict(self, formulas: Sequence[str]) -> Prediction:
        """Predict the property of each formula; never raises for one bad formula (NaN + reason)."""
        ...
