"""Judge proposed crystal structures against a known one (pymatgen ``StructureMatcher``) and score recovery.

Matching a proposal against a reference structure is a judgement on the proposal, like a stability
verdict, so it lives with the judges (``oracles/``); it is pure (structures in, verdicts out) and
does no I/O. Two structures *match* when pymatgen's ``StructureMatcher`` maps one onto the other
within its tolerances; the defaults are pymatgen's standard ones (:data:`DEFAULT_TOLERANCES`:
fractional length tolerance ``ltol`` 0.2, site tolerance ``stol`` 0.3 (in units of the average
free length per atom), angle tolerance 5 degrees, both reduced to primitive cells, volumes scaled
to each other, no supercell search). Volume scaling means a proposal relaxed by a potential whose
lattice constants differ by a few percent from DFT still matches, while a different prototype does not.

Recovery scores (:func:`recovery_summary`) follow structure-prediction practice: match@k is the
share of compounds for which one of the first k proposals (in a stated order) matches the known
structure; the energy gap is the relaxed energy per atom of the best (lowest-energy) proposal minus
that of the known structure relaxed by the same potential (eV/atom; negative means the potential
prefers the proposal).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

#: pymatgen's standard StructureMatcher tolerances (its defaults), used for every reported figure.
DEFAULT_TOLERANCES: dict[str, Any] = {
    "ltol": 0.2,
    "stol": 0.3,
    "angle_tol": 5.0,
    "primitive_cell": True,
    "scale": True,
    "attempt_supercell": False,
}


def make_matcher(**tolerances: Any) -> StructureMatcher:
    """A ``StructureMatcher`` with :data:`DEFAULT_TOLERANCES` updated by ``tolerances``."""
    return StructureMatcher(**{**DEFAULT_TOLERANCES, **tolerances})


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one proposal against the reference.

    ``match``: True if they match; ``rms``: the matcher's normalised RMS site displacement
    (None when they do not match or there is no proposal); ``reason``: why no comparison was made
    (no structure, different composition, matcher error), else None.
    """

    match: bool
    rms: float | None = None
    reason: str | None = None


def match_structure(
    candidate: Structure | None, reference: Structure, matcher: StructureMatcher | None = None
) -> MatchResult:
    """Match one proposed structure against ``reference``; never raises for a bad structure.

    Structures of different reduced composition never match (reason given).
    """
    if candidate is None:
        return MatchResult(False, None, "no structure")
    if candidate.composition.reduced_composition != reference.composition.reduced_composition:
        return MatchResult(
            False,
            None,
            f"composition {candidate.composition.reduced_formula} != {reference.composition.reduced_formula}",
        )
    matcher = matcher or make_matcher()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rms = matcher.get_rms_dist(candidate, reference)
    except Exception as exc:  # spglib/lattice reduction can fail on degenerate cells
        return MatchResult(False, None, f"matcher failed: {type(exc).__name__}: {exc}")
    if rms is None:
        return MatchResult(False)
    return MatchResult(True, float(rms[0]))


def match_all(
    candidates: Sequence[Structure | None], reference: Structure, matcher: StructureMatcher | None = None
) -> list[MatchResult]:
    """:func:`match_structure` for each proposal, in order (one matcher shared)."""
    matcher = matcher or make_matcher()
    return [match_structure(c, reference, matcher) for c in candidates]


def first_match_rank(matched: Sequence[bool], order: Sequence[int] | None = None) -> int | None:
    """1-based rank of the first matching proposal when proposals are taken in ``order``.

    ``matched[i]`` says whether proposal i matches; ``order`` lists proposal indices best first
    (default: as given). Returns None when none matches.
    """
    order = list(range(len(matched))) if order is None else list(order)
    for rank, i in enumerate(order, start=1):
        if matched[i]:
            return rank
    return None


def energy_order(energies: Sequence[float | None]) -> list[int]:
    """Proposal indices by relaxed energy per atom, lowest first; missing/NaN energies go last (stable)."""

    def key(i: int) -> tuple[int, float]:
        e = energies[i]
        ok = e is not None and math.isfinite(e)
        return (0, float(e)) if ok else (1, 0.0)

    return sorted(range(len(energies)), key=key)


def energy_gap(candidate_energies: Iterable[float | None], reference_energy: float | None) -> float | None:
    """Lowest finite candidate energy minus the reference energy (eV/atom); None if either is missing."""
    finite = [float(e) for e in candidate_energies if e is not None and math.isfinite(e)]
    if not finite or reference_energy is None or not math.isfinite(reference_energy):
        return None
    return min(finite) - float(reference_energy)


@dataclass(frozen=True)
class RecoveryScore:
    """Aggregate recovery over ``n`` compounds: ``match_at`` maps k to the share (0..1) matched within
    the first k proposals; ``energy_gap`` holds ``n``, median, mean, and the shares below 0.0, 0.05
    and 0.1 eV/atom of the compounds that have a gap (eV/atom)."""

    n: int
    match_at: dict[int, float]
    n_matched_at: dict[int, int]
    energy_gap: dict[str, float | int | None]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)


def _gap_stats(gaps: Sequence[float]) -> dict[str, float | int | None]:
    g = np.asarray([x for x in gaps if x is not None and math.isfinite(x)], float)
    if len(g) == 0:
        return {"n": 0, "median": None, "mean": None, "le_0": None, "le_0.05": None, "le_0.1": None}
    return {
        "n": int(len(g)),
        "median": float(np.median(g)),
        "mean": float(g.mean()),
        "le_0": float((g <= 1e-3).mean()),
        "le_0.05": float((g <= 0.05).mean()),
        "le_0.1": float((g <= 0.1).mean()),
    }


def recovery_summary(
    ranks: Sequence[int | None], gaps: Sequence[float | None], ks: Sequence[int] = (1, 3)
) -> RecoveryScore:
    """Score N compounds from their first-match ranks (1-based, None = no match) and energy gaps.

    ``match_at[k] = #(rank <= k) / N``; a compound that failed anywhere counts as unmatched (it stays
    in the denominator). ``le_0`` counts gaps <= 1 meV/atom (proposal as low as the known structure).
    """
    n = len(ranks)
    matched = {int(k): sum(1 for r in ranks if r is not None and r <= k) for k in ks}
    return RecoveryScore(
        n=n,
        match_at={k: (m / n if n else float("nan")) for k, m in matched.items()},
        n_matched_at=matched,
        energy_gap=_gap_stats(list(gaps)),
    )


def breakdown(
    records: Sequence[Mapping[str, Any]], key: str, rank_field: str = "rank_energy", ks: Sequence[int] = (1, 3)
) -> dict[str, dict[str, Any]]:
    """:func:`recovery_summary` per value of ``records[i][key]`` (e.g. number of elements); sorted by key.

    Each record needs ``rank_field`` (first-match rank or None) and ``energy_gap`` (eV/atom or None).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get(key)), []).append(r)
    return {
        g: recovery_summary([r.get(rank_field) for r in rs], [r.get("energy_gap") for r in rs], ks).as_dict()
        for g, rs in sorted(groups.items())
    }
