"""Fixed-length composition descriptors for the descriptor-based oracles.

A formula becomes one float32 vector made of

* fraction-weighted statistics (mean, standard deviation, min, max, range) of 19 element properties
  taken from pymatgen's element data (a "Magpie-lite" set: Z, mass, row, group, Mendeleev number,
  Pauling electronegativity, atomic radius, covalent-like calculated radius, melting point, molar
  volume, first ionisation energy, electron affinity, s/p/d/f/total valence electrons, metal flag,
  average ionic radius); missing property values are filled with the property's median over the
  table (documented imputation, never NaN);
* the fraction-weighted mean of the 200-d matscholar element embedding that ``aviary-models`` ships
  as package data (``aviary/embeddings/element/matscholar200.json``);
* stoichiometry attributes: number of elements and the 2, 3, 5, 10-norms and maximum of the fractions.

That is the ``base`` descriptor (:class:`Featuriser`, 301 floats). The ``ext`` descriptor
(:class:`ExtendedFeaturiser`, 413 floats; issue 21, docs/oracles.md) appends

* the 103-d atomic-fraction vector (matminer's ElementFraction);
* the band edges of pymatgen's :class:`~pymatgen.core.molecular_orbitals.MolecularOrbitals`
  (HOMO and LUMO energies in Hartree, their difference, the "metal" flag; matminer's AtomicOrbitals),
  computed from the formula's integer counts;
* fraction-weighted statistics (mean, std, min, max, range) of each element's highest occupied
  atomic-orbital energy (Hartree).

Each weights file records the version string of the descriptor it was trained on
(:attr:`Featuriser.version`); :func:`featuriser_for_version` returns the matching featuriser.

Elements H..Lr (Z = 1..103) are supported. A formula that cannot be parsed, or that contains an
element without data (e.g. Og), gets an all-NaN row and a reason; the other rows are unaffected.
Featurisation is vectorised over a batch (gather + weighted reductions in numpy) and cached per
formula string.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from alcore.composition import parse_amounts
from alcore.errors import InvalidFormulaError

#: Descriptor layout versions: bump when a feature definition changes (stored with weights).
DESCRIPTOR_VERSION = "magpie19-stats5+matscholar200-mean+stoich6/v1"
EXT_DESCRIPTOR_VERSION = "magpie19-stats5+matscholar200-mean+stoich6+fractions103+ao-band-edges4+homo-stats5/v1"

PROPERTY_NAMES: tuple[str, ...] = (
    "Z",
    "atomic_mass",
    "row",
    "group",
    "mendeleev_no",
    "X",
    "atomic_radius",
    "atomic_radius_calculated",
    "melting_point",
    "molar_volume",
    "ionization_energy",
    "electron_affinity",
    "Ns_valence",
    "Np_valence",
    "Nd_valence",
    "Nf_valence",
    "N_valence",
    "is_metal",
    "average_ionic_radius",
)
STAT_NAMES: tuple[str, ...] = ("mean", "std", "min", "max", "range")
EMBEDDING_FILE = "matscholar200.json"
MAX_Z = 103


def _float(value: object) -> float:
    """pymatgen values are floats, FloatWithUnit or None; return a float or NaN."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return out if np.isfinite(out) else float("nan")


def _valence(symbol: str) -> tuple[float, float, float, float]:
    """s, p, d, f electrons outside the noble-gas core (pymatgen ``electronic_structure``)."""
    from pymatgen.core import Element

    es = Element(symbol).electronic_structure  # e.g. "[Ar].3d6.4s2"
    out = {"s": 0.0, "p": 0.0, "d": 0.0, "f": 0.0}
    for _n, orb, occ in re.findall(r"(\d)([spdf])(\d+)", es.split("]")[-1]):
        out[orb] += float(occ)
    return out["s"], out["p"], out["d"], out["f"]


def _element_row(symbol: str) -> list[float]:
    """The 19 raw property values of one element (NaN where pymatgen has none)."""
    from pymatgen.core import Element

    el = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ie = el.ionization_energies
        try:
            ea = el.electron_affinity
        except Exception:  # pymatgen raises for elements without a tabulated value
            ea = None
        s, p, d, f = _valence(symbol)
        return [
            float(el.Z),
            _float(el.atomic_mass),
            float(el.row),
            float(el.group),
            _float(el.mendeleev_no),
            _float(el.X),
            _float(el.atomic_radius),
            _float(el.atomic_radius_calculated),
            _float(el.melting_point),
            _float(el.molar_volume),
            _float(ie[0] if ie else None),
            _float(ea),
            s,
            p,
            d,
            f,
            s + p + d + f,
            float(el.is_metal),
            _float(el.average_ionic_radius),
        ]


@dataclass(frozen=True)
class ElementTable:
    """Per-element data: ``symbols`` (E,), ``properties`` (E, 19) float64 (imputed), ``embedding`` (E, 200)."""

    symbols: tuple[str, ...]
    index: dict[str, int]
    properties: np.ndarray
    embedding: np.ndarray


def _embedding_path() -> Path:
    """Location of aviary's matscholar embedding JSON (package data of ``aviary-models``)."""
    import importlib.util

    spec = importlib.util.find_spec("aviary")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("aviary-models is not installed; pip install aviary-models==1.2.1")
    return Path(spec.origin).parent / "embeddings" / "element" / EMBEDDING_FILE


@lru_cache(maxsize=1)
def element_table() -> ElementTable:
    """Build (once per process) the element property table and embedding for H..Lr.

    Returns an :class:`ElementTable`; property NaNs are replaced by the column median.
    """
    from pymatgen.core import Element

    emb = json.loads(_embedding_path().read_text())
    symbols = tuple(Element.from_Z(z).symbol for z in range(1, MAX_Z + 1))
    symbols = tuple(s for s in symbols if s in emb)
    props = np.array([_element_row(s) for s in symbols], dtype=np.float64)
    med = np.nanmedian(props, axis=0)
    props = np.where(np.isfinite(props), props, med[None, :])
    embedding = np.array([emb[s] for s in symbols], dtype=np.float64)
    return ElementTable(symbols, {s: i for i, s in enumerate(symbols)}, props, embedding)


def feature_names() -> list[str]:
    """Names of the descriptor columns, in order (length :func:`n_features`)."""
    names = [f"{s}_{p}" for p in PROPERTY_NAMES for s in STAT_NAMES]
    names += [f"matscholar_{i}" for i in range(200)]
    names += ["n_elements", "frac_norm2", "frac_norm3", "frac_norm5", "frac_norm10", "frac_max"]
    return names


def n_features() -> int:
    """Length of one descriptor vector."""
    return len(PROPERTY_NAMES) * len(STAT_NAMES) + 200 + 6


def _fractions(formula: str, table: ElementTable) -> tuple[list[int], list[float]]:
    """Element indices and atomic fractions of one formula; raises InvalidFormulaError."""
    amounts = parse_amounts(formula)
    missing = [s for s in amounts if s not in table.index]
    if missing:
        raise InvalidFormulaError(
            formula, f"element(s) {', '.join(missing)} have no descriptor data (supported: H..Lr)"
        )
    total = sum(amounts.values())
    return [table.index[s] for s in amounts], [a / total for a in amounts.values()]


def _featurise_parsed(idx: np.ndarray, frac: np.ndarray, table: ElementTable) -> np.ndarray:
    """Vectorised descriptors for padded element indices ``idx`` (N, K) and fractions ``frac`` (N, K).

    Padding has fraction 0 and index 0. Returns (N, n_features) float64.
    """
    mask = frac > 0
    p = table.properties[idx]  # (N, K, P)
    w = frac[:, :, None]
    mean = (w * p).sum(1)
    var = (w * (p - mean[:, None, :]) ** 2).sum(1)
    big = np.where(mask[:, :, None], p, np.inf)
    mn = big.min(1)
    mx = np.where(mask[:, :, None], p, -np.inf).max(1)
    stats = np.stack([mean, np.sqrt(np.maximum(var, 0.0)), mn, mx, mx - mn], axis=2)  # (N, P, 5)
    emb = np.einsum("nk,nkd->nd", frac, table.embedding[idx])
    n_el = mask.sum(1).astype(np.float64)
    norms = [(frac**q).sum(1) ** (1.0 / q) for q in (2, 3, 5, 10)]
    stoich = np.stack([n_el, *norms, frac.max(1)], axis=1)
    return np.concatenate([stats.reshape(len(idx), -1), emb, stoich], axis=1)


class Featuriser:
    """Composition -> ``base`` descriptor vector, cached per formula string.

    ``cache_size`` bounds the number of cached formulas (the cache is cleared when full).
    """

    #: the layout this featuriser computes (stored with weights trained on it)
    version = DESCRIPTOR_VERSION

    def __init__(self, cache_size: int = 1_000_000, chunk: int = 8192) -> None:
        self.table = element_table()
        self.cache_size = cache_size
        self.chunk = chunk
        self._cache: dict[str, np.ndarray] = {}
        self._bad: dict[str, str] = {}

    @property
    def n_features(self) -> int:
        """Descriptor length."""
        return n_features()

    def transform(self, formulas: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
        """Descriptors of N formulas.

        Returns ``(X, reasons)``: X is (N, n_features) float32 with an all-NaN row for a formula that
        could not be featurised, and ``reasons[i]`` says why (None where the row is fine).
        """
        todo = [f for f in dict.fromkeys(formulas) if f not in self._cache and f not in self._bad]
        if todo:
            self._compute(todo)
        n = len(formulas)
        out = np.full((n, self.n_features), np.nan, dtype=np.float32)
        reasons: list[str | None] = [None] * n
        for i, f in enumerate(formulas):
            row = self._cache.get(f)
            if row is None:
                reasons[i] = self._bad.get(f, "not featurised")
            else:
                out[i] = row
        return out, reasons

    def _compute(self, formulas: list[str]) -> None:
        """Featurise uncached formulas in chunks and store rows / reasons in the cache."""
        if len(self._cache) + len(formulas) > self.cache_size:
            self._cache.clear()
        for start in range(0, len(formulas), self.chunk):
            part = formulas[start : start + self.chunk]
            good: list[str] = []
            parsed: list[tuple[list[int], list[float]]] = []
            for f in part:
                try:
                    parsed.append(_fractions(f, self.table))
                    good.append(f)
                except InvalidFormulaError as exc:
                    self._bad[f] = exc.reason
                except Exception as exc:  # a non-string or anything else odd: reason, not crash
                    self._bad[str(f)] = f"cannot featurise: {exc}"
            if not good:
                continue
            idx, frac = pad_parsed(parsed)
            feats = self._rows(good, idx, frac).astype(np.float32)
            for f, row in zip(good, feats, strict=True):
                self._cache[f] = row

    def _rows(self, formulas: list[str], idx: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Descriptor rows (N, n_features) of N parsed formulas (padded ``idx``/``frac`` (N, K))."""
        return _featurise_parsed(idx, frac, self.table)


#: Neutral band-edge values (Hartree; "metal") for a formula pymatgen's MolecularOrbitals cannot
#: handle (fractional counts, an element without orbital data).
_NEUTRAL_EDGES = (-0.25, -0.1, 0.0, 1.0)


def _homo_energy(symbol: str) -> float:
    """Highest occupied atomic-orbital energy (Hartree) of an element; NaN without data."""
    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orbitals = Element(symbol).atomic_orbitals
    return max(orbitals.values()) if orbitals else float("nan")


def band_edge_features(formula: str) -> tuple[float, float, float, float]:
    """``(HOMO, LUMO, LUMO - HOMO, metal)`` of pymatgen's MolecularOrbitals for one formula (Hartree).

    Neutral values (:data:`_NEUTRAL_EDGES`) where MolecularOrbitals cannot handle the formula.
    """
    from pymatgen.core.molecular_orbitals import MolecularOrbitals

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edges = MolecularOrbitals(formula).band_edges
        homo, lumo = edges["HOMO"][2], edges["LUMO"][2]
        return (homo, lumo, lumo - homo, float(edges["metal"]))
    except Exception:  # fractional counts, no orbital data, no LUMO: neutral values
        return _NEUTRAL_EDGES


@lru_cache(maxsize=1)
def _homo_table() -> np.ndarray:
    """HOMO energy (Hartree) per element of :func:`element_table` (E,); missing -> median."""
    homo = np.array([_homo_energy(s) for s in element_table().symbols])
    return np.where(np.isfinite(homo), homo, np.nanmedian(homo))


class ExtendedFeaturiser(Featuriser):
    """Composition -> ``ext`` descriptor: ``base`` + atomic fractions + atomic-orbital band edges + HOMO statistics."""

    version = EXT_DESCRIPTOR_VERSION

    @property
    def n_features(self) -> int:
        """Descriptor length: base + one fraction per element + 4 band-edge + 5 HOMO statistics."""
        return n_features() + len(self.table.symbols) + 4 + 5

    def _rows(self, formulas: list[str], idx: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Base rows with fractions (N, E), band edges (N, 4) and HOMO statistics (N, 5) appended."""
        base = super()._rows(formulas, idx, frac)
        fractions = np.zeros((len(formulas), len(self.table.symbols)))
        np.add.at(fractions, (np.arange(len(formulas))[:, None], idx), frac)  # padding adds 0 at index 0
        edges = np.array([band_edge_features(f) for f in formulas], dtype=np.float64).reshape(-1, 4)
        h = _homo_table()[idx]
        mask = frac > 0
        mean = (frac * h).sum(1)
        std = np.sqrt(np.maximum((frac * (h - mean[:, None]) ** 2).sum(1), 0.0))
        mn = np.where(mask, h, np.inf).min(1)
        mx = np.where(mask, h, -np.inf).max(1)
        homo = np.stack([mean, std, mn, mx, mx - mn], axis=1)
        return np.concatenate([base, fractions, edges, homo], axis=1)


def pad_parsed(
    parsed: Sequence[tuple[Sequence[int], Sequence[float]]], index_dtype: type = np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Pack N parsed formulas ``(element indices, atomic fractions)`` (as :func:`_fractions` returns)
    into zero-padded arrays: indices (N, K) ``index_dtype`` and fractions (N, K) float64, K the most
    elements of one formula. Padding has fraction 0, so it adds nothing to the weighted descriptors."""
    k = max(len(ix) for ix, _ in parsed)
    idx = np.zeros((len(parsed), k), dtype=index_dtype)
    frac = np.zeros((len(parsed), k), dtype=np.float64)
    for r, (ix, fr) in enumerate(parsed):
        idx[r, : len(ix)] = ix
        frac[r, : len(fr)] = fr
    return idx, frac


#: The featuriser of each descriptor version (see :func:`featuriser_for_version`).
FEATURISERS: dict[str, type[Featuriser]] = {cls.version: cls for cls in (Featuriser, ExtendedFeaturiser)}


def default_featuriser() -> Featuriser:
    """The process-wide shared :class:`Featuriser` (one cache for all oracles)."""
    return featuriser_for_version(DESCRIPTOR_VERSION)


@cache
def featuriser_for_version(version: str) -> Featuriser:
    """The process-wide shared featuriser computing descriptor layout ``version``.

    Raises ``KeyError`` (message names the known versions) for a layout this code does not compute.
    """
    if version not in FEATURISERS:
        raise KeyError(f"descriptor {version!r} is not computed by this code (known: {', '.join(FEATURISERS)})")
    return FEATURISERS[version]()


def featurise(formulas: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
    """Descriptors of N formulas with the shared featuriser: ``(X (N, n_features) float32, reasons)``."""
    return default_featuriser().transform(list(formulas))
