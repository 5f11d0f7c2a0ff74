"""Convex hull in formation-energy space over every competing phase of a chemical system the project knows.

Two sources of competing phases (2+ elements, elements a subset of the candidate's system):

* **model phases**: the template library's phases (one structure per reduced formula, every one, no
  cap) evaluated by the judging model and turned into formation energies with the same model's
  elemental references (:class:`oracles.stability.checker.PhaseEnergies`);
* **DFT phases**: Materials Project formation energies (``data/formation/matbench_mp_e_form.csv``,
  matbench v0.1, one row per polymorph; the lowest per reduced formula) for the formulas the
  library has no structure of. These are DFT values on MP's reference scheme, not the model's: the
  hull mixes the two where it must (the alternative, leaving those phases out, makes E_hull a lower
  bound). The verdict document records how many phases of each kind were used.

Elements sit at E_form = 0. :func:`e_above_hull` uses pymatgen's ``PhaseDiagram``.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from pymatgen.core import Composition

from alcore.paths import DATA_DIR

MP_E_FORM_PATH = DATA_DIR / "formation" / "matbench_mp_e_form.csv"
_ELEMENT = re.compile(r"[A-Z][a-z]?")


@dataclass
class HullResult:
    """E_hull (eV/atom, >= 0) of a candidate and what the hull was built from."""

    e_hull: float
    n_model_phases: int
    n_dft_phases: int
    decomposition: list[str] = field(default_factory=list)

    @property
    def n_phases(self) -> int:
        """Competing (2+ element) phases on the diagram, model and DFT together (elements not counted)."""
        return self.n_model_phases + self.n_dft_phases


class MPFormationEnergies:
    """Materials Project DFT formation energies (eV/atom) by chemical system, read once from the CSV;
    ``exclude(formula)`` true leaves a row out (e.g. the hidden formulas of a hold-out split)."""

    def __init__(self, path: Path | str = MP_E_FORM_PATH, exclude: Callable[[str], bool] | None = None) -> None:
        self.path = Path(path)
        self.exclude = exclude  # formulas for which it is true are left out (a hold-out split's hidden ones)
        self._by_system: dict[frozenset[str], list[tuple[str, float]]] | None = None
        self._lock = threading.Lock()

    def _index(self) -> dict[frozenset[str], list[tuple[str, float]]]:
        with self._lock:
            if self._by_system is None:
                by: dict[frozenset[str], list[tuple[str, float]]] = {}
                with open(self.path, newline="") as fh:
                    for row in csv.DictReader(fh):
                        els = frozenset(_ELEMENT.findall(row["formula"]))
                        by.setdefault(els, []).append((row["formula"], float(row["target"])))
                self._by_system = by
            return self._by_system

    def phases(self, elements: Iterable[str]) -> dict[str, float]:
        """``{reduced formula: lowest MP E_form}`` of every 2+ element phase within ``elements``."""
        els = sorted(set(elements))
        index = self._index()
        out: dict[str, float] = {}
        for k in range(2, len(els) + 1):
            for sub in combinations(els, k):
                for formula, e in index.get(frozenset(sub), ()):
                    if self.exclude is not None and self.exclude(formula):
                        continue
                    rf = Composition(formula).reduced_formula
                    if rf not in out or e < out[rf]:
                        out[rf] = e
        return out


def e_above_hull(
    formula: str,
    e_form: float,
    model_phases: Mapping[str, float],
    dft_phases: Mapping[str, float] | None = None,
) -> HullResult:
    """E_hull of a candidate (``formula``, ``e_form`` eV/atom) against competing phases.

    ``model_phases`` and ``dft_phases`` map formulas to formation energies (eV/atom); a DFT phase
    whose reduced formula a model phase has is left out (the model's value is used). Returns a
    :class:`HullResult` with the counts and the decomposition (formulas of the phases below the candidate).
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    comp = Composition(formula)
    model = {Composition(f).reduced_formula: e for f, e in model_phases.items()}
    dft = {
        rf: e
        for rf, e in ((Composition(f).reduced_formula, e) for f, e in (dft_phases or {}).items())
        if rf not in model
    }
    elements = {el.symbol for el in comp.elements}
    for f in (*model, *dft):
        elements |= {el.symbol for el in Composition(f).elements}
    entries = [PDEntry(Composition(el), 0.0) for el in sorted(elements)]
    for phases in (model, dft):
        entries += [PDEntry(Composition(f), e * Composition(f).num_atoms, name=f) for f, e in phases.items()]
    cand = PDEntry(comp, e_form * comp.num_atoms, name="candidate")
    pd = PhaseDiagram([*entries, cand])
    decomp, e_hull = pd.get_decomp_and_e_above_hull(cand, allow_negative=False)
    names = sorted(e.name if e.name != "candidate" else comp.reduced_formula for e in decomp)
    return HullResult(float(e_hull), len(model), len(dft), names)


#: Name prefix of the candidates' own entries in :func:`hull_energies`'s diagrams.
CANDIDATE = "candidate:"


def hull_energies(
    formulas: Iterable[str], phases: MPFormationEnergies, candidates: Mapping[str, float] | None = None
) -> list[float]:
    """Formation energy (eV/atom) of the convex hull of the competing phases (``phases``, elements at
    0) at each formula's composition: a candidate with E_form below it would be on the hull. 0 where
    only the elements are known; NaN for a formula pymatgen cannot parse. With ``candidates``
    (``{formula: predicted E_form}``, e.g. a whole pool), those within each formula's chemical system
    compete too, each formula's own entry left out. One phase diagram per chemical system (and one
    more per formula that is itself a vertex of it)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    by_system: dict[frozenset[str], list[tuple[Composition, float, str]]] = {}
    for f, e in (candidates or {}).items():
        comp = Composition(f)
        by_system.setdefault(frozenset(el.symbol for el in comp.elements), []).append((comp, e, f))

    def entries_of(system: frozenset[str]) -> list[PDEntry]:
        entries = [PDEntry(Composition(el), 0.0) for el in sorted(system)]
        known = [(Composition(f), e) for f, e in phases.phases(system).items()]
        entries += [PDEntry(c, e * c.num_atoms) for c, e in known]
        for k in range(2, len(system) + 1):
            for sub in combinations(sorted(system), k):
                entries += [
                    PDEntry(c, e * c.num_atoms, name=CANDIDATE + f) for c, e, f in by_system.get(frozenset(sub), ())
                ]
        return entries

    diagrams: dict[frozenset[str], tuple[list[PDEntry], PhaseDiagram]] = {}
    out = []
    for formula in formulas:
        try:
            comp = Composition(formula)
        except Exception:  # noqa: BLE001 - pymatgen raises several types for bad strings
            out.append(float("nan"))
            continue
        system = frozenset(el.symbol for el in comp.elements)
        if system not in diagrams:
            entries = entries_of(system)
            diagrams[system] = (entries, PhaseDiagram(entries))
        entries, diagram = diagrams[system]
        own = next((e for e in entries if e.name == CANDIDATE + formula), None)
        if own is not None and own in diagram.stable_entries:
            diagram = PhaseDiagram([e for e in entries if e is not own])  # the hull without itself
        out.append(float(diagram.get_hull_energy_per_atom(comp)))
    return out
