"""The 30 x 3 image of a Mg-Mn-O crystal (Kim et al. 2020) and exact decoders to/from pymatgen.

Layout of one image (float, shape ``(30, 3)``):

* row 0: cell lengths a, b, c divided by :data:`LENGTH_SCALE` (30 Å);
* row 1: cell angles alpha, beta, gamma divided by :data:`ANGLE_SCALE` (180 degrees);
* rows 2-9: up to 8 Mg, rows 10-17: up to 8 Mn, rows 18-29: up to 12 O fractional coordinates,
  each rescaled by ``P' = 2/3 (P - 0.5) + 0.5`` so a real atom lies in [1/6, 5/6) and a zero row
  is padding (the reference code puts the fractional positions in a 10 Å box centred in a 15 Å box,
  which is the same map). Atoms of one element fill their block from the top.

The scalings were read off the committed data (all angles of the cubic perovskite rows are exactly
0.5 -> 90 degrees; MgMnO3 perovskite rows decode to a = 3.87 Å; the Mg6MnO8 rows, mp-19239, decode
to the rhombohedral primitive cell a = 5.99 Å, 60 degrees, i.e. the cubic a = 8.48 Å of MP) and
checked against the reference implementation (kaist-amsg/Composition-Conditioned-Crystal-GAN,
``make_representation.py``: ``lengths/30``, ``angles/180``, 10 Å box in a 15 Å box).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from alcore.errors import InvalidFormulaError, StructureError

ELEMENTS: tuple[str, str, str] = ("Mg", "Mn", "O")
MAX_COUNTS: tuple[int, int, int] = (8, 8, 12)
ROW_START: tuple[int, int, int] = (2, 10, 18)
N_ROWS = 30
N_COORD_ROWS = 28
LENGTH_SCALE = 30.0  # Å
ANGLE_SCALE = 180.0  # degrees
#: A coordinate row whose mean exceeds this is an atom (real atoms have every value >= 1/6).
OCCUPANCY_THRESHOLD = 1.0 / 12.0

Counts = tuple[int, int, int]


def scale_frac(frac: np.ndarray) -> np.ndarray:
    """Map fractional coordinates in [0, 1) (any shape) to the image range [1/6, 5/6)."""
    return 2.0 / 3.0 * (np.asarray(frac, dtype=float) - 0.5) + 0.5


def unscale_frac(scaled: np.ndarray) -> np.ndarray:
    """Inverse of :func:`scale_frac`, wrapped into [0, 1) (any shape)."""
    frac = 1.5 * (np.asarray(scaled, dtype=float) - 0.5) + 0.5
    return np.mod(frac, 1.0)


def parse_counts(composition: str | Sequence[int] | Composition) -> Counts:
    """Atom counts ``(n_Mg, n_Mn, n_O)`` of one cell, from ``"Mg2Mn4O8"``, ``(2, 4, 8)`` or a Composition.

    The formula is read literally (not reduced): ``"MgMn2O4"`` is a 7-atom cell. Raises
    :class:`InvalidFormulaError` for other elements, a missing element, or counts beyond 8/8/12.
    """
    if isinstance(composition, str | Composition):
        try:
            comp = Composition(composition) if isinstance(composition, str) else composition
        except Exception as exc:  # pymatgen raises several types for bad strings
            raise InvalidFormulaError(composition, f"cannot parse ({exc})") from None
        other = sorted(str(e) for e in comp.elements if str(e) not in ELEMENTS)
        if other:
            raise InvalidFormulaError(composition, f"only Mg, Mn and O are modelled, got {other}")
        raw = [comp[e] for e in ELEMENTS]
        if any(abs(x - round(x)) > 1e-6 for x in raw):
            raise InvalidFormulaError(composition, "atom counts must be integers")
        counts = tuple(int(round(x)) for x in raw)
    else:
        counts = tuple(int(x) for x in composition)
        if len(counts) != 3:
            raise InvalidFormulaError(composition, "give three counts (Mg, Mn, O)")
    for el, n, mx in zip(ELEMENTS, counts, MAX_COUNTS, strict=True):
        if not 1 <= n <= mx:
            raise InvalidFormulaError(
                composition, f"{el} count {n} is outside 1..{mx} (the 30 x 3 image holds 8 Mg, 8 Mn, 12 O)"
            )
    return counts  # type: ignore[return-value]


def counts_formula(counts: Sequence[int]) -> str:
    """Cell formula string such as ``"Mg2Mn4O8"`` for counts ``(2, 4, 8)`` (counts of 1 written out)."""
    return "".join(f"{el}{int(n)}" for el, n in zip(ELEMENTS, counts, strict=True) if n)


def reduced_formula(counts: Sequence[int]) -> str:
    """pymatgen reduced formula of the counts, e.g. ``"MgMn2O4"``."""
    return Composition(dict(zip(ELEMENTS, map(int, counts), strict=True))).reduced_formula


def structure_to_image(structure: Structure) -> np.ndarray:
    """Encode an ordered Mg-Mn-O structure as a ``(30, 3)`` float64 image.

    Sites keep their order within each element. Raises :class:`StructureError` if the structure
    is disordered, holds other elements, or has more than 8 Mg / 8 Mn / 12 O atoms.
    """
    if not structure.is_ordered:
        raise StructureError("the image encodes ordered structures only; order the structure first")
    image = np.zeros((N_ROWS, 3))
    lat = structure.lattice
    image[0] = np.array(lat.abc) / LENGTH_SCALE
    image[1] = np.array(lat.angles) / ANGLE_SCALE
    species = [site.specie.symbol for site in structure]
    other = sorted(set(species) - set(ELEMENTS))
    if other:
        raise StructureError(f"structure holds {other}; only Mg, Mn, O can be encoded")
    frac = np.mod(structure.frac_coords, 1.0)
    frac[frac >= 1.0 - 1e-12] = 0.0
    for el, start, mx in zip(ELEMENTS, ROW_START, MAX_COUNTS, strict=True):
        idx = [i for i, s in enumerate(species) if s == el]
        if len(idx) > mx:
            raise StructureError(f"{len(idx)} {el} atoms exceed the image's {mx} rows; use a smaller cell")
        image[start : start + len(idx)] = scale_frac(frac[idx])
    return image


def occupancy(image: np.ndarray, threshold: float = OCCUPANCY_THRESHOLD) -> np.ndarray:
    """Boolean ``(..., 28)`` mask of coordinate rows that hold an atom (row mean above ``threshold``).

    ``image`` has shape ``(..., 30, 3)``.
    """
    return np.asarray(image)[..., 2:, :].mean(-1) > threshold


def image_counts(image: np.ndarray, threshold: float = OCCUPANCY_THRESHOLD) -> np.ndarray:
    """Atom counts ``(..., 3)`` (Mg, Mn, O) read from images of shape ``(..., 30, 3)``."""
    occ = occupancy(image, threshold)
    out = []
    for start, mx in zip(ROW_START, MAX_COUNTS, strict=True):
        out.append(occ[..., start - 2 : start - 2 + mx].sum(-1))
    return np.stack(out, -1).astype(int)


def image_to_lattice(image: np.ndarray) -> Lattice:
    """The lattice of one image; raises :class:`StructureError` if the six parameters form no cell."""
    abc = np.asarray(image[0], dtype=float) * LENGTH_SCALE
    angles = np.asarray(image[1], dtype=float) * ANGLE_SCALE
    if not (np.all(np.isfinite(abc)) and np.all(abc > 0.5)):
        raise StructureError(f"cell lengths {abc.round(3).tolist()} Å are not usable")
    ca, cb, cg = np.cos(np.radians(angles))
    vol_factor = 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg
    if not (np.all(np.isfinite(angles)) and vol_factor > 1e-4):
        raise StructureError(f"cell angles {angles.round(2).tolist()} degrees form no valid cell")
    return Lattice.from_parameters(*abc, *angles)


def image_to_structure(image: np.ndarray, threshold: float = OCCUPANCY_THRESHOLD) -> Structure:
    """Decode one ``(30, 3)`` image to a pymatgen Structure (rows above ``threshold`` are atoms).

    Raises :class:`StructureError` when the cell is invalid or no atom of some element remains.
    """
    image = np.asarray(image, dtype=float).reshape(N_ROWS, 3)
    lattice = image_to_lattice(image)
    occ = occupancy(image, threshold)
    species: list[str] = []
    coords: list[np.ndarray] = []
    for el, start, mx in zip(ELEMENTS, ROW_START, MAX_COUNTS, strict=True):
        for r in range(start, start + mx):
            if occ[r - 2]:
                species.append(el)
                coords.append(unscale_frac(image[r]))
    if not species:
        raise StructureError("the image holds no atoms")
    return Structure(lattice, species, np.array(coords))


def min_distance(structure: Structure) -> float:
    """Smallest periodic interatomic distance in Å (``inf`` for a single atom in a large cell)."""
    if len(structure) < 2:
        if len(structure) == 0:
            return math.inf
        return float(np.linalg.norm(structure.lattice.lll_matrix, axis=1).min())
    dm = structure.distance_matrix
    np.fill_diagonal(dm, np.inf)
    d = float(dm.min())
    # self-images across the cell (an atom and its own periodic copy): shortest LLL vector
    return min(d, float(np.linalg.norm(structure.lattice.lll_matrix, axis=1).min()))


def name_material_id(name: str) -> str:
    """The Materials Project id at the start of a data-set row name (``"mp-19239_pox_mg_mg.vasp"``)."""
    m = re.match(r"(mp-\d+)", name)
    return m.group(1) if m else name
