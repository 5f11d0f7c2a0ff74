"""CHGNet helpers for the crystal GAN: bounded relaxation and E_hull in Mg-Mn-O.

Relaxations use the shared model and per-thread optimizer of :mod:`oracles.stability.checker`, so
references and candidates see the same model, which is what E_hull needs.

Energies are CHGNet 0.4.2 total energies (eV; the model is trained on MP-compatible energies), so
E_hull is measured against references relaxed by the same model, never mixed with DFT numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

from alcore.errors import StructureError
from oracles.stability.checker import fire_relax, get_model

log = logging.getLogger(__name__)

FMAX = 0.1  # eV/Å
MAX_STEPS = 150


@dataclass(frozen=True)
class Relaxed:
    """Result of one relaxation: the relaxed structure, total energy (eV), energy per atom, steps."""

    structure: Structure
    energy: float
    energy_per_atom: float
    steps: int
    converged: bool


def relax(structure: Structure, steps: int = MAX_STEPS, fmax: float = FMAX) -> Relaxed:
    """Relax positions and cell with CHGNet (FIRE) for at most ``steps`` steps to ``fmax`` eV/Å.

    Raises :class:`StructureError` if the energy is not finite or the cell collapses/explodes.
    """
    out = fire_relax(structure.copy(), get_model(threads=1), fmax, steps)  # the shared CHGNet of the checker
    final: Structure = out["final_structure"]
    traj = out["trajectory"]
    energy = float(traj.energies[-1])
    n_steps = len(traj.energies)
    forces = traj.forces[-1]
    fmax_final = float(max((sum(f * f for f in row) ** 0.5 for row in forces), default=0.0))
    if not math.isfinite(energy):
        raise StructureError("CHGNet energy is not finite; the structure is unphysical")
    vpa = final.volume / len(final)
    if not 3.0 < vpa < 60.0:
        raise StructureError(f"relaxation diverged (volume {vpa:.1f} Å^3/atom)")
    return Relaxed(final, energy, energy / len(final), n_steps, fmax_final <= fmax + 1e-6)


def phase_diagram(references: Iterable[Mapping]) -> PhaseDiagram:
    """Phase diagram from reference records ``{"formula", "energy"}`` (energy: total eV of that formula).

    The references must include the elements Mg, Mn and O.
    """
    entries = [PDEntry(Composition(r["formula"]), float(r["energy"]), name=r.get("name")) for r in references]
    return PhaseDiagram(entries)


def e_hull(pd: PhaseDiagram, structure: Structure, energy: float) -> float:
    """Energy above the hull (eV/atom) of ``structure`` with total energy ``energy`` (eV); >= 0 unless
    it is below the references (then negative: a new ground state)."""
    entry = PDEntry(structure.composition, energy)
    return float(pd.get_e_above_hull(entry, allow_negative=True))
