"""Random compositions: the base-rate generator of the rediscovery benchmark.

Draws compositions uniformly at random within element and size limits (number of elements
uniform in ``min_elements..max_elements``, the elements uniform without replacement from an element
list, each count uniform in 1..``max_atoms`` with the total at most ``max_atoms``; the formula is
then reduced and canonicalised). With ``smact_valid`` only compositions passing SMACT charge
neutrality / electronegativity balance are kept. A proposal method with no knowledge at all: what
any smarter route has to beat.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from alcore.composition import ELEMENT_LISTS, canonical_formula
from alcore.errors import ConfigError, InvalidFormulaError
from alcore.validity import ValidityRules, check_validity


class RandomCompositions:
    """A :class:`generators.base.CompositionGenerator` of uniformly random compositions (see the module)."""

    name = "random-compositions"

    def __init__(
        self,
        elements: str | Iterable[str] = "matgan85",
        max_atoms: int = 7,
        max_elements: int = 3,
        min_elements: int = 2,
        smact_valid: bool = True,
        exclude: Iterable[str] = (),
    ) -> None:
        self.elements = tuple(ELEMENT_LISTS[elements]) if isinstance(elements, str) else tuple(elements)
        if not 1 <= min_elements <= max_elements <= len(self.elements):
            raise ConfigError(
                f"need 1 <= min_elements ({min_elements}) <= max_elements ({max_elements}) <= "
                f"{len(self.elements)} elements"
            )
        if max_atoms < min_elements:
            raise ConfigError(f"max_atoms {max_atoms} < min_elements {min_elements}: nothing fits")
        self.max_atoms = int(max_atoms)
        self.min_elements = int(min_elements)
        self.max_elements = int(max_elements)
        self.smact_valid = smact_valid
        self.exclude = frozenset(exclude)
        self.rules = ValidityRules(max_elements=max_elements, max_atoms=max_atoms, min_elements=min_elements)

    def _one(self, rng: np.random.Generator) -> str | None:
        k = int(rng.integers(self.min_elements, self.max_elements + 1))
        els = rng.choice(len(self.elements), size=k, replace=False)
        while True:
            counts = rng.integers(1, self.max_atoms + 1, size=k)
            if counts.sum() <= self.max_atoms:
                break
        formula = "".join(f"{self.elements[e]}{c}" for e, c in zip(els.tolist(), counts.tolist(), strict=True))
        try:
            return canonical_formula(formula)
        except InvalidFormulaError:
            return None

    def sample(self, n: int, seed: int) -> list[str]:
        """``n`` draws for ``seed``: canonical formulas of the draws that pass (SMACT validity if
        ``smact_valid``; never a formula of ``exclude``), repeats kept (<= n formulas)."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            f = self._one(rng)
            if f is None or f in self.exclude:
                continue
            if self.smact_valid and not check_validity(f, self.rules).valid:
                continue
            out.append(f)
        return out

    def distinct(self, n: int, seed: int, max_draws: int | None = None) -> list[str]:
        """``n`` distinct accepted formulas in draw order (fewer if ``max_draws``, default 200 n,
        draws run out)."""
        rng = np.random.default_rng(seed)
        seen: dict[str, None] = {}
        limit = max_draws if max_draws is not None else 200 * n
        for _ in range(limit):
            if len(seen) >= n:
                break
            f = self._one(rng)
            if f is None or f in self.exclude or f in seen:
                continue
            if self.smact_valid and not check_validity(f, self.rules).valid:
                continue
            seen[f] = None
        return list(seen)
