"""CrystalGAN data: the MATLAB cell arrays of asmanouira/CrystalGAN, POSCAR files, and the tensor encoding.

The ``.mat`` files hold one cell array of shape ``(N, 4)`` per binary system: column 0 the 3 x 3
lattice (rows = lattice vectors, Cartesian Å), column 1 the H positions (``n_H x 3``, Cartesian Å),
columns 2 and 3 the metal positions, where one of the two metal columns is an all-zero ``18 x 3``
placeholder (PdH: column 3 empty, NiH: column 2 empty).

The network input is a fixed-length vector per structure (``feature_dim(slots)`` = 9 + 3 x slots x 4):

* ``[0:9]`` the lattice matrix (Å) divided by :data:`LATTICE_SCALE`;
* then three groups of ``slots`` atom rows (H, metal A, metal B), each row
  ``(frac_x, frac_y, frac_z, occupancy)`` with fractional coordinates wrapped into ``[0, 1)`` and
  occupancy 1 for an atom, 0 for an empty slot.

The occupancy column replaces the original zero padding, which could not tell an atom at the origin
from an empty row. A binary AH structure has an empty B group (the paper's placeholder) and vice versa.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io as sio
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Poscar

from alcore.errors import StructureError
from alcore.paths import data_file

#: Maximum atoms per species group (the original data pad every matrix to 18 rows).
SLOTS = 18
#: Lattice entries (Å) are divided by this in the feature vector.
LATTICE_SCALE = 5.0
#: Columns per atom row: fractional x, y, z and occupancy.
ATOM_DIM = 4
#: Groups of atom rows, in order.
GROUPS = ("H", "A", "B")
#: Occupancy above which a generated slot counts as an atom.
OCC_THRESHOLD = 0.5
#: Smallest accepted cell volume per atom (Å^3) when decoding; below it the cell is degenerate.
MIN_VOLUME_PER_ATOM = 1.0


def feature_dim(slots: int = SLOTS) -> int:
    """Length of one encoded structure: 9 lattice entries + 3 groups x ``slots`` x 4 columns."""
    return 9 + len(GROUPS) * slots * ATOM_DIM


def group_slice(group: str, slots: int = SLOTS) -> slice:
    """Slice of the feature vector holding the atom rows of ``group`` ("H", "A" or "B")."""
    k = GROUPS.index(group)
    start = 9 + k * slots * ATOM_DIM
    return slice(start, start + slots * ATOM_DIM)


@dataclass(frozen=True)
class BinaryDomain:
    """One binary M-H training domain: the metal symbol, its structures and where they came from."""

    metal: str
    structures: tuple[Structure, ...]
    source: str

    @property
    def name(self) -> str:
        """Domain name such as ``"PdH"``."""
        return f"{self.metal}H"


# ----------------------------------------------------------------------------- readers
def _metal_from_varname(mat: dict) -> tuple[str, np.ndarray]:
    keys = [k for k in mat if not k.startswith("__")]
    if len(keys) != 1:
        raise StructureError(f"expected one cell array in the .mat file, found {keys}; pass metal= explicitly")
    key = keys[0]
    return key.split("_")[0], mat[key]


def load_mat(path: str | Path, metal: str | None = None) -> BinaryDomain:
    """Read a CrystalGAN ``.mat`` cell array (``N x 4``) into a :class:`BinaryDomain`.

    ``metal`` defaults to the prefix of the variable name (``Pd_POSCAR_data`` -> ``"Pd"``). The metal
    column is the one that is not the all-zero placeholder in every row. Sites are ordered H first,
    then the metal, each in file order. Raises :class:`StructureError` on a malformed file.
    """
    path = Path(path)
    mat = sio.loadmat(str(path))
    name, cells = _metal_from_varname(mat)
    metal = metal or name
    if cells.ndim != 2 or cells.shape[1] != 4:
        raise StructureError(f"{path}: expected an N x 4 cell array, got shape {cells.shape}")
    empty = [all(not np.asarray(cells[i, c], float).any() for i in range(cells.shape[0])) for c in (2, 3)]
    if empty == [True, False]:
        metal_col = 3
    elif empty == [False, True]:
        metal_col = 2
    else:
        raise StructureError(f"{path}: cannot tell the metal column from the placeholder (empty={empty})")
    structures = []
    for i in range(cells.shape[0]):
        lattice = np.asarray(cells[i, 0], float).reshape(3, 3)
        h = np.asarray(cells[i, 1], float).reshape(-1, 3)
        m = np.asarray(cells[i, metal_col], float).reshape(-1, 3)
        species = ["H"] * len(h) + [metal] * len(m)
        structures.append(Structure(Lattice(lattice), species, np.vstack([h, m]), coords_are_cartesian=True))
    return BinaryDomain(metal, tuple(structures), str(path))


def save_mat(path: str | Path, domain: BinaryDomain, metal_column: int = 2, slots: int = SLOTS) -> Path:
    """Write a domain in the original ``N x 4`` cell-array layout (Cartesian Å, zero placeholder).

    ``metal_column`` is 2 for the first domain (A) and 3 for the second (B). Returns the path.
    """
    cells = np.empty((len(domain.structures), 4), dtype=object)
    for i, s in enumerate(domain.structures):
        cells[i, 0] = s.lattice.matrix
        cells[i, 1] = np.array([site.coords for site in s if site.specie.symbol == "H"]).reshape(-1, 3)
        cells[i, metal_column] = np.array([site.coords for site in s if site.specie.symbol == domain.metal]).reshape(
            -1, 3
        )
        cells[i, 5 - metal_column] = np.zeros((slots, 3))
    sio.savemat(str(path), {f"{domain.metal}_POSCAR_data": cells})
    return Path(path)


def load_poscar_dir(path: str | Path) -> BinaryDomain:
    """Read every POSCAR/CONTCAR/``*.vasp`` file in a folder into a :class:`BinaryDomain`.

    All files must be binary M-H structures of the same metal M. Raises :class:`StructureError`
    (naming the file) otherwise.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise StructureError(f"{path}: no POSCAR files found; point --domain-a/--domain-b at a folder of POSCARs")
    structures, metals = [], set()
    for f in files:
        try:
            s = Poscar.from_file(str(f)).structure
        except Exception as exc:  # pymatgen raises many types on bad input
            raise StructureError(f"{f}: not a readable POSCAR ({exc})") from None
        els = {sp.symbol for sp in s.composition.elements}
        if "H" not in els or len(els) != 2:
            raise StructureError(f"{f}: expected a binary metal hydride M-H, found elements {sorted(els)}")
        metals |= els - {"H"}
        structures.append(order_sites(s))
    if len(metals) != 1:
        raise StructureError(f"{path}: files mix several metals {sorted(metals)}; one metal per domain folder")
    return BinaryDomain(metals.pop(), tuple(structures), str(path))


def load_domain(spec: str | Path) -> BinaryDomain:
    """A domain from a ``.mat`` file, a folder of POSCARs, or a bundled name (``"PdH"``, ``"NiH"``)."""
    spec_s = str(spec)
    if spec_s in ("PdH", "NiH"):
        return load_mat(data_file("crystalgan", f"{spec_s}_dataset.mat"))
    p = Path(spec_s)
    if p.is_dir():
        return load_poscar_dir(p)
    if p.suffix == ".mat" and p.exists():
        return load_mat(p)
    raise StructureError(f"domain {spec_s!r}: give PdH, NiH, a .mat file or a folder of POSCAR files")


def data_hash(domains: Sequence[BinaryDomain]) -> str:
    """sha256 (hex) over the encoded structures of the domains (identifies the training data)."""
    h = hashlib.sha256()
    for d in domains:
        h.update(d.metal.encode())
        for s in d.structures:
            h.update(np.round(s.lattice.matrix, 8).tobytes())
            h.update(np.round(s.frac_coords, 8).tobytes())
            h.update(",".join(sp.symbol for sp in s.species).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- POSCAR
def order_sites(structure: Structure) -> Structure:
    """The structure with sites sorted by species group (H first, then metals in first-seen order)."""
    order = sorted(range(len(structure)), key=lambda i: (structure[i].specie.symbol != "H", 0))
    return Structure.from_sites([structure[i] for i in order])


def to_poscar(structure: Structure, comment: str | None = None) -> str:
    """POSCAR text (VASP 5, direct coordinates) of a structure."""
    return Poscar(structure, comment=comment or structure.composition.reduced_formula).get_str()


def from_poscar(text: str) -> Structure:
    """A structure from POSCAR text (raises :class:`StructureError` on malformed text)."""
    try:
        return Poscar.from_str(text).structure
    except Exception as exc:
        raise StructureError(f"not a readable POSCAR ({exc})") from None


# ----------------------------------------------------------------------------- tensor encoding
def encode_structure(structure: Structure, metal_a: str, metal_b: str, slots: int = SLOTS) -> np.ndarray:
    """Encode one structure (elements among H, ``metal_a``, ``metal_b``) as a ``(feature_dim,)`` float32 vector.

    Raises :class:`StructureError` for another element or more than ``slots`` atoms of one species.
    """
    vec = np.zeros(feature_dim(slots), dtype=np.float32)
    vec[:9] = (structure.lattice.matrix / LATTICE_SCALE).ravel()
    symbol_group = {"H": "H", metal_a: "A", metal_b: "B"}
    rows: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    for site in structure:
        sym = site.specie.symbol
        if sym not in symbol_group:
            raise StructureError(f"{structure.composition.reduced_formula}: element {sym} is not H/{metal_a}/{metal_b}")
        rows[symbol_group[sym]].append(np.mod(site.frac_coords, 1.0))
    for g, coords in rows.items():
        if len(coords) > slots:
            raise StructureError(
                f"{structure.composition.reduced_formula}: {len(coords)} {g} atoms exceed the {slots} slots; "
                "raise slots"
            )
        block = np.zeros((slots, ATOM_DIM), dtype=np.float32)
        if coords:
            block[: len(coords), :3] = np.array(coords)
            block[: len(coords), 3] = 1.0
        vec[group_slice(g, slots)] = block.ravel()
    return vec


def encode_domain(domain: BinaryDomain, metal_a: str, metal_b: str, slots: int = SLOTS) -> np.ndarray:
    """Encode all structures of a domain: returns ``(N, feature_dim)`` float32."""
    return np.stack([encode_structure(s, metal_a, metal_b, slots) for s in domain.structures])


def decode_vector(
    vec: np.ndarray, metal_a: str, metal_b: str, slots: int = SLOTS, occ_threshold: float = OCC_THRESHOLD
) -> Structure:
    """Decode one feature vector into a pymatgen :class:`Structure`.

    Slots with occupancy > ``occ_threshold`` become atoms (fractional coordinates wrapped into
    [0, 1)); sites are ordered H, A, B. Raises :class:`StructureError` for no atoms, non-finite values
    or a degenerate/left-handed cell (volume per atom < :data:`MIN_VOLUME_PER_ATOM` Å^3).
    """
    vec = np.asarray(vec, dtype=np.float64)
    if vec.shape != (feature_dim(slots),) or not np.all(np.isfinite(vec)):
        raise StructureError(f"feature vector of shape {vec.shape} is not finite/of length {feature_dim(slots)}")
    lattice = vec[:9].reshape(3, 3) * LATTICE_SCALE
    species, coords = [], []
    for g, sym in zip(GROUPS, ("H", metal_a, metal_b), strict=True):
        block = vec[group_slice(g, slots)].reshape(slots, ATOM_DIM)
        for row in block:
            if row[3] > occ_threshold:
                species.append(sym)
                coords.append(np.mod(row[:3], 1.0))
    if not species:
        raise StructureError("decoded structure has no atoms (all occupancies below threshold)")
    volume = float(np.linalg.det(lattice))
    if volume < MIN_VOLUME_PER_ATOM * len(species):
        raise StructureError(f"degenerate cell: volume {volume:.3g} Å^3 for {len(species)} atoms")
    return Structure(Lattice(lattice), species, np.array(coords))


def try_decode(vec: np.ndarray, metal_a: str, metal_b: str, slots: int = SLOTS) -> Structure | None:
    """:func:`decode_vector`, returning None instead of raising for an undecodable vector."""
    try:
        return decode_vector(vec, metal_a, metal_b, slots)
    except (StructureError, ValueError):
        return None
