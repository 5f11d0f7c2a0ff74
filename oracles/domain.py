"""Applicability domain of a composition oracle: is a formula like the ones the model was trained on?

A composition-only model answers for any formula, including ``H999`` or glucose; its answer there
is an extrapolation with no evidence behind it. :class:`Domain` summarises a training set (element
list, largest reduced formula, largest count of each element, element-fraction vectors) plus two
bounds calibrated on the model's held-out split: the distance to the nearest training composition
and the ensemble spread (std) that ``quantile`` of the held-out formulas stay within. :meth:`Domain.check`
returns the reasons a formula is outside (empty: inside). Pure computation: the caller loads the data
(``flows.cli.oracles`` for ``alflow oracles predict``; the campaign loop can do the same for acquired
candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alcore.composition import InvalidFormulaError, parse_amounts, reduced_counts


def _fractions(counts: Sequence[tuple[str, int]]) -> dict[str, float]:
    total = float(sum(c for _, c in counts))
    return {el: c / total for el, c in counts}


@dataclass
class Domain:
    """Training-set summary of one oracle (see the module docstring).

    ``elements`` (E,) sorted symbols; ``max_count`` per element (reduced formula); ``max_atoms`` and
    ``max_elements`` of a reduced training formula; ``max_written`` per element and
    ``max_written_atoms``: the same for formulas as written (``H999`` reduces to ``H`` but is written
    with 999 atoms); ``fractions`` (N, E) float32 element fractions of the distinct training
    compositions; ``distance_bound`` (Euclidean, on element fractions) and
    ``std_bound`` (property unit) are the ``quantile`` of the held-out formulas (None if not
    calibrated).
    """

    elements: list[str]
    max_count: dict[str, int]
    max_atoms: int
    max_elements: int
    fractions: np.ndarray
    distance_bound: float | None = None
    std_bound: float | None = None
    quantile: float = 0.99
    n_train: int = 0
    source: str = ""
    max_written: dict[str, float] = field(default_factory=dict)
    max_written_atoms: float = 0.0
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {el: i for i, el in enumerate(self.elements)}
        self.fractions = np.asarray(self.fractions, dtype=np.float32)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_formulas(cls, formulas: Sequence[str], source: str = "") -> Domain:
        """The domain of the parseable ``formulas`` (unparseable ones are skipped), uncalibrated."""
        parsed = []
        max_written: dict[str, float] = {}
        max_written_atoms = 0.0
        for f in formulas:
            try:
                parsed.append(reduced_counts(f))
                written = parse_amounts(f)
            except InvalidFormulaError:
                continue
            for el, c in written.items():
                max_written[el] = max(max_written.get(el, 0.0), float(c))
            max_written_atoms = max(max_written_atoms, float(sum(written.values())))
        if not parsed:
            raise ValueError("no parseable formula to build a domain from")
        elements = sorted({el for counts in parsed for el, _ in counts})
        max_count: dict[str, int] = {}
        for counts in parsed:
            for el, c in counts:
                max_count[el] = max(max_count.get(el, 0), int(c))
        index = {el: i for i, el in enumerate(elements)}
        keys = sorted({tuple(counts) for counts in parsed})
        frac = np.zeros((len(keys), len(elements)), dtype=np.float32)
        for row, counts in enumerate(keys):
            for el, f in _fractions(counts).items():
                frac[row, index[el]] = f
        return cls(
            elements=elements,
            max_count=max_count,
            max_atoms=max(sum(c for _, c in counts) for counts in parsed),
            max_elements=max(len(counts) for counts in parsed),
            fractions=frac,
            n_train=len(parsed),
            source=source,
            max_written=max_written,
            max_written_atoms=max_written_atoms,
        )

    def calibrate(
        self, held_out: Sequence[str], held_out_std: Sequence[float] | None = None, quantile: float = 0.99
    ) -> Domain:
        """Set ``distance_bound`` (and ``std_bound`` from the ensemble std of the same formulas) to the
        ``quantile`` of the held-out formulas; returns ``self``."""
        d = self.nearest_distance(held_out)
        self.distance_bound = float(np.nanquantile(d, quantile)) if np.isfinite(d).any() else None
        if held_out_std is not None:
            s = np.asarray(held_out_std, dtype=np.float64)
            self.std_bound = float(np.nanquantile(s, quantile)) if np.isfinite(s).any() else None
        self.quantile = quantile
        return self

    # ------------------------------------------------------------------ queries
    def nearest_distance(self, formulas: Sequence[str], chunk: int = 512) -> np.ndarray:
        """Euclidean distance (element fractions) of each formula to its nearest training composition;
        NaN for an unparseable formula. Mass on elements outside the training list counts in full."""
        q = np.zeros((len(formulas), len(self.elements)), dtype=np.float32)
        extra = np.zeros(len(formulas), dtype=np.float64)
        ok = np.ones(len(formulas), dtype=bool)
        for i, f in enumerate(formulas):
            try:
                fr = _fractions(reduced_counts(f))
            except InvalidFormulaError:
                ok[i] = False
                continue
            for el, x in fr.items():
                j = self._index.get(el)
                if j is None:
                    extra[i] += x * x
                else:
                    q[i, j] = x
        t = self.fractions
        t2 = (t.astype(np.float64) ** 2).sum(axis=1)
        out = np.full(len(formulas), np.nan)
        for s in range(0, len(formulas), chunk):
            qq = q[s : s + chunk].astype(np.float64)
            d2 = (qq**2).sum(axis=1)[:, None] + t2[None, :] - 2.0 * qq @ t.T.astype(np.float64)
            out[s : s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0) + extra[s : s + chunk])
        out[~ok] = np.nan
        return out

    def check(self, formula: str, std: float | None = None, distance: float | None = None) -> list[str]:
        """Reasons ``formula`` (with its predicted ensemble ``std``) is outside the domain; empty if inside.

        ``distance`` may be passed when already computed (:meth:`nearest_distance`)."""
        try:
            counts = reduced_counts(formula)
        except InvalidFormulaError as exc:
            return [exc.reason]
        reasons: list[str] = []
        unseen = [el for el, _ in counts if el not in self._index]
        if unseen:
            reasons.append(f"element(s) {', '.join(unseen)} not in the training data")
        over = [f"{el}{c} (max {self.max_count[el]})" for el, c in counts if c > self.max_count.get(el, c)]
        written = parse_amounts(formula)
        over += [
            f"{el}{c:g} as written (max {self.max_written[el]:g})"
            for el, c in written.items()
            if self.max_written and c > self.max_written.get(el, c)
        ]
        if over:
            reasons.append(f"count above the training range: {', '.join(over)}")
        n_written = float(sum(written.values()))
        if self.max_written_atoms and n_written > self.max_written_atoms:
            reasons.append(f"{n_written:g} atoms as written, training max {self.max_written_atoms:g}")
        n_atoms = sum(c for _, c in counts)
        if n_atoms > self.max_atoms:
            reasons.append(f"{n_atoms} atoms in the reduced formula, training max {self.max_atoms}")
        if len(counts) > self.max_elements:
            reasons.append(f"{len(counts)} elements, training max {self.max_elements}")
        if self.distance_bound is not None:
            d = self.nearest_distance([formula])[0] if distance is None else distance
            if np.isfinite(d) and d > self.distance_bound:
                reasons.append(
                    f"composition far from the training data (distance {d:.2f} > {self.distance_bound:.2f}, "
                    f"the {self.quantile:.0%} bound of held-out formulas)"
                )
        if self.std_bound is not None and std is not None and np.isfinite(std) and std > self.std_bound:
            reasons.append(f"ensemble std {std:.2f} above {self.std_bound:.2f} ({self.quantile:.0%} of held-out)")
        return reasons

    def check_many(self, formulas: Sequence[str], std: Sequence[float] | None = None) -> list[list[str]]:
        """:meth:`check` for many formulas (one distance computation for all)."""
        dist = self.nearest_distance(formulas) if self.distance_bound is not None else [None] * len(formulas)
        stds = list(std) if std is not None else [None] * len(formulas)
        return [
            self.check(f, s, None if d is None or not np.isfinite(d) else float(d))
            for f, s, d in zip(formulas, stds, dist, strict=True)
        ]

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez_compressed`` (see :meth:`from_arrays`)."""
        return {
            "elements": np.array(self.elements),
            "max_count": np.array([self.max_count[el] for el in self.elements], dtype=np.int64),
            "scalars": np.array(
                [
                    self.max_atoms,
                    self.max_elements,
                    np.nan if self.distance_bound is None else self.distance_bound,
                    np.nan if self.std_bound is None else self.std_bound,
                    self.quantile,
                    self.n_train,
                ],
                dtype=np.float64,
            ),
            "fractions": self.fractions,
            "source": np.array(self.source),
            "max_written": np.array([self.max_written.get(el, np.nan) for el in self.elements], dtype=np.float64),
            "max_written_atoms": np.array(self.max_written_atoms, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Domain:
        """Inverse of :meth:`to_arrays`."""
        elements = [str(x) for x in a["elements"]]
        sc = a["scalars"]
        return cls(
            elements=elements,
            max_count={el: int(c) for el, c in zip(elements, a["max_count"], strict=True)},
            max_atoms=int(sc[0]),
            max_elements=int(sc[1]),
            fractions=a["fractions"],
            distance_bound=None if np.isnan(sc[2]) else float(sc[2]),
            std_bound=None if np.isnan(sc[3]) else float(sc[3]),
            quantile=float(sc[4]),
            n_train=int(sc[5]),
            source=str(a["source"]),
            max_written={
                el: float(c) for el, c in zip(elements, a.get("max_written", []), strict=False) if np.isfinite(c)
            },
            max_written_atoms=float(a.get("max_written_atoms", 0.0)),
        )
