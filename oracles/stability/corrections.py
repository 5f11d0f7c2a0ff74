"""Materials Project 2020 energy corrections for potentials trained on raw (uncorrected) MPtrj energies.

MP's formation energies (and so the DFT numbers the project compares with) include the
MaterialsProject2020Compatibility corrections: fitted anion corrections (oxide, peroxide,
superoxide, fluoride, chloride, nitride, hydride, sulfide, ...) and the GGA/GGA+U mixing correction for
oxides and fluorides of Co, Cr, Fe, Mn, Mo, Ni, V, W. CHGNet 0.4.2 was trained on corrected energies and
needs none; SevenNet (MPtrj ``uncorrected_total_energy``) does, as Matbench Discovery applies them.

:func:`mp2020_correction` gives the correction in eV/atom for a composition (and, where given, its
structure, which decides the oxide type); elements get none. Uses pymatgen's
``MaterialsProject2020Compatibility`` with MP's U values (GGA+U exactly where MP used it).
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache

from pymatgen.core import Composition, Structure

#: MP's Hubbard U values (eV), applied to oxides and fluorides of these elements
MP_U = {"Co": 3.32, "Cr": 3.7, "Fe": 5.3, "Mn": 3.9, "Mo": 4.38, "Ni": 6.2, "V": 3.25, "W": 6.2}
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _compat():
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def mp2020_correction(composition: Composition | str, structure: Structure | None = None) -> float:
    """MP2020 correction (eV/atom, usually <= 0) of a phase; 0 for elements or if pymatgen rejects it."""
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    comp = Composition(composition) if isinstance(composition, str) else composition
    els = {e.symbol for e in comp.elements}
    if len(els) < 2:
        return 0.0
    plus_u = bool(els & {"O", "F"}) and bool(els & set(MP_U))
    params = {
        "run_type": "GGA+U" if plus_u else "GGA",
        "is_hubbard": plus_u,
        "hubbards": {e: MP_U[e] for e in els if e in MP_U} if plus_u else {},
        "potcar_spec": [],
    }
    n = comp.num_atoms
    if structure is not None:
        entry = ComputedStructureEntry(structure, 0.0, parameters=params)
        n = len(structure)
    else:
        entry = ComputedEntry(comp, 0.0, parameters=params)
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _compat().process_entry(entry, clean=True)
    return 0.0 if out is None else float(out.correction) / n
